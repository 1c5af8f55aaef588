"""githubActions / gcpSecretManager spec parsing: every error names its field path; no SDK is imported."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import REPO
from vaultbundle.errors import CrossNamespaceError, SpecError
from vaultbundle.targets import parse_spec as parse
from vaultbundle.targets.gcp_secret_manager import GcpSecretManagerSpec
from vaultbundle.targets.github_actions import DEFAULT_API_URL, GitHubActionsSpec

GH = "spec.targets[0].githubActions"
GCP = "spec.targets[0].gcpSecretManager"
TOKEN = {"tokenSecretRef": {"name": "gh"}}


def vaultbundle(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": {"configSecretRef": {"name": "cfg"}, "passphraseSecretRef": {"name": "pass"}},
        "targets": [{"name": "ext", kind: body}],
    }


def github(**body: Any) -> GitHubActionsSpec:
    parsed: GitHubActionsSpec = parse(vaultbundle("githubActions", body)).targets[0].body
    return parsed


def gcp(**body: Any) -> GcpSecretManagerSpec:
    parsed: GcpSecretManagerSpec = parse(vaultbundle("gcpSecretManager", body)).targets[0].body
    return parsed


def test_github_defaults() -> None:
    spec = github(repository="acme/web", auth=TOKEN)
    assert (spec.repository, spec.organization, spec.environment) == ("acme/web", "", "")
    assert spec.api_url == DEFAULT_API_URL and spec.token_ref is not None and spec.token_ref.key == "token"
    assert not spec.adopt and not spec.prune and not spec.encode_files_base64  # external stores: no prune
    assert spec.scope == "repository acme/web"
    org = github(organization="acme", auth=TOKEN)
    assert org.visibility == "private" and org.scope == "organization acme"
    app = github(
        repository="acme/web",
        auth={"app": {"appID": 12, "installationID": 34, "privateKeySecretRef": {"name": "app"}}},
        apiURL="http://127.0.0.1:8080/",
    )
    assert app.app is not None and (app.app.app_id, app.app.installation_id) == ("12", 34)
    assert app.app.private_key_ref.key == "private-key.pem" and app.api_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"auth": TOKEN}, f"{GH} must set exactly one of repository or organization"),
        ({"repository": "a/b", "organization": "a", "auth": TOKEN}, f"{GH} must set exactly one of repository"),
        ({"repository": "acme", "auth": TOKEN}, f"{GH}.repository must look like owner/name"),
        ({"organization": "a/b", "auth": TOKEN}, f"{GH}.organization must be"),
        ({"organization": "acme", "environment": "prod", "auth": TOKEN}, f"{GH}.environment is only allowed"),
        ({"repository": "a/b", "visibility": "all", "auth": TOKEN}, f"{GH}.visibility is only allowed"),
        ({"organization": "acme", "visibility": "public", "auth": TOKEN}, f"{GH}.visibility must be one of"),
        ({"organization": "acme", "selectedRepositoryIds": [1], "auth": TOKEN}, f"{GH}.selectedRepositoryIds is only"),
        (
            {"organization": "acme", "visibility": "selected", "selectedRepositoryIds": [1, True], "auth": TOKEN},
            f"{GH}.selectedRepositoryIds[1] must be a positive integer",
        ),
        ({"repository": "a/b"}, f"{GH}.auth must set exactly one of tokenSecretRef or app"),
        ({"repository": "a/b", "auth": {**TOKEN, "app": {}}}, f"{GH}.auth must set exactly one"),
        ({"repository": "a/b", "auth": {"tokenSecretRef": {}}}, f"{GH}.auth.tokenSecretRef.name is required"),
        (
            {"repository": "a/b", "auth": {"app": {"appID": 1, "privateKeySecretRef": {"name": "k"}}}},
            f"{GH}.auth.app.installationID must be a positive integer",
        ),
        (
            {"repository": "a/b", "auth": {"app": {"installationID": 1, "privateKeySecretRef": {"name": "k"}}}},
            f"{GH}.auth.app.appID is required",
        ),
        ({"repository": "a/b", "auth": TOKEN, "apiURL": "http://github.example"}, f"{GH}.apiURL: plain http"),
        ({"repository": "a/b", "auth": TOKEN, "apiURL": "ftp://x"}, f"{GH}.apiURL must be an http(s) URL"),
        ({"repository": "a/b", "auth": TOKEN, "naming": {"case": "Title"}}, f"{GH}.naming.case must be one of"),
        ({"repository": "a/b", "auth": TOKEN, "adopt": "yes"}, f"{GH}.adopt must be true or false"),
        ({"repository": "a/b", "auth": TOKEN, "keys": {"include": "A"}}, f"{GH}.keys.include must be a list"),
    ],
)
def test_github_errors_name_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(vaultbundle("githubActions", body))
    assert message in str(caught.value)


def test_github_credentials_only_from_own_namespace() -> None:
    with pytest.raises(CrossNamespaceError) as caught:
        github(repository="a/b", auth={"tokenSecretRef": {"name": "gh", "namespace": "other"}})
    assert caught.value.reason == "CrossNamespaceReference" and f"{GH}.auth.tokenSecretRef.namespace" in str(
        caught.value
    )


def test_gcp_defaults() -> None:
    spec = gcp(project="acme-prod")
    assert (spec.endpoint, spec.insecure, spec.credentials_ref, spec.locations) == ("", False, None, ())
    assert not spec.adopt and not spec.prune and spec.parent == "projects/acme-prod"
    with_key = gcp(project="123456", credentialsSecretRef={"name": "sa"}, labels={"team": "web"})
    assert with_key.credentials_ref is not None and with_key.credentials_ref.key == "credentials.json"
    regional = gcp(project="acme-prod", replication={"userManaged": {"locations": ["europe-west1"]}})
    assert regional.locations == ("europe-west1",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, f"{GCP}.project is required"),
        ({"project": "Acme"}, f"{GCP}.project must be a GCP project ID"),
        ({"project": "acme-prod", "endpoint": "nohost"}, f"{GCP}.endpoint must be host:port"),
        ({"project": "acme-prod", "insecure": True}, f"{GCP}.insecure (plaintext gRPC) is only allowed"),
        ({"project": "acme-prod", "insecure": True, "endpoint": "sm.example:443"}, f"{GCP}.insecure"),
        (
            {
                "project": "acme-prod",
                "insecure": True,
                "endpoint": "127.0.0.1:1",
                "credentialsSecretRef": {"name": "s"},
            },
            f"{GCP}: insecure sends no credentials",
        ),
        ({"project": "acme-prod", "credentialsSecretRef": {}}, f"{GCP}.credentialsSecretRef.name is required"),
        ({"project": "acme-prod", "labels": {"managed-by": "me"}}, f"{GCP}.labels.managed-by is reserved"),
        ({"project": "acme-prod", "labels": {"Team": "web"}}, f"{GCP}.labels: key 'Team'"),
        ({"project": "acme-prod", "labels": {"team": "Web"}}, f"{GCP}.labels.team: value must match"),
        ({"project": "acme-prod", "labels": {"team": 1}}, f"{GCP}.labels must map strings to strings"),
        (
            {"project": "acme-prod", "replication": {"automatic": {}, "userManaged": {"locations": ["x1"]}}},
            f"{GCP}.replication must set only one of automatic or userManaged",
        ),
        (
            {"project": "acme-prod", "replication": {"userManaged": {}}},
            f"{GCP}.replication.userManaged.locations needs at least one location",
        ),
        (
            {"project": "acme-prod", "replication": {"userManaged": {"locations": ["Europe West"]}}},
            f"{GCP}.replication.userManaged.locations[0] must be a GCP location",
        ),
        (
            {"project": "acme-prod", "naming": {"underscoresToDashes": True, "dashesToUnderscores": True}},
            f"{GCP}.naming",
        ),
        ({"project": "acme-prod", "prune": 1}, f"{GCP}.prune must be true or false"),
    ],
)
def test_gcp_errors_name_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(vaultbundle("gcpSecretManager", body))
    assert message in str(caught.value)


def test_parsing_imports_no_sdk() -> None:
    """Spec parsing (and desired) must work without the github/gcp extras installed."""
    code = (
        "import sys\n"
        "from vaultbundle.targets import parse_spec as parse\n"
        "src = {'configSecretRef': {'name': 'c'}, 'passphraseSecretRef': {'name': 'p'}}\n"
        "parse({'source': src, 'targets': [\n"
        "  {'name': 'a', 'githubActions': {'repository': 'a/b', 'auth': {'tokenSecretRef': {'name': 't'}}}},\n"
        "  {'name': 'b', 'gcpSecretManager': {'project': 'acme-prod'}}]})\n"
        "loaded = [m for m in ('github', 'nacl', 'google.cloud.secretmanager_v1', 'grpc') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)
