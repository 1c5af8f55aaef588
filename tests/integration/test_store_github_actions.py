"""githubActions with `storeRef` (issue #13) against the in-process GitHub fake over HTTPS, the whole way a
reconcile drives it: `grants.authorize_target` → parse → connect → plan → apply.

The fake opens every sealed box with its private key (so `held` is what GitHub would hold) and records every
request: a target outside the ClusterTargetStore's scope must leave that record empty. The store's token / App key
live in the operator's namespace; the tenant's namesake Secrets hold other values and are never read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from e2e.fakes.github_actions import FakeGitHubServer, start_in_process
from e2e.testbed.pki import create_pki

from tests.kit.kube import MemoryKube
from vaultbundle.digest import Digester
from vaultbundle.errors import PolicyDeniedError
from vaultbundle.spec import parse_selection
from vaultbundle.targets import grants, load
from vaultbundle.targets.base import Owner, Plan, TargetContext
from vaultbundle.vault import Vault

OPERATOR_NS = "vaultbundle-system"
OWNER = Owner("team", "web", "uid-1")
VAULT = Vault(kv={"DB_URL": "postgres://db/app", "API_KEY": "k-1"})
PATH = "spec.targets[0].githubActions"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeGitHubServer, Path]]:
    pki = create_pki(tmp_path_factory.mktemp("pki"))
    running = start_in_process(tls=(str(pki.keyvault.cert), str(pki.keyvault.key)))  # a 127.0.0.1 server cert
    yield running, pki.ca.cert
    running.stop()


@pytest.fixture
def fake(server: tuple[FakeGitHubServer, Path], monkeypatch: pytest.MonkeyPatch) -> FakeGitHubServer:
    running, ca = server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))  # as an operator image that trusts the GHES CA
    monkeypatch.setenv("POD_NAMESPACE", OPERATOR_NS)
    running.state.reset()
    return running


def held(server: FakeGitHubServer, **where: str) -> dict[str, str]:
    return {s["name"]: s["value"] for s in server.state.dump() if all(s.get(k) == v for k, v in where.items())}


def requests(server: FakeGitHubServer) -> list[tuple[str, str]]:
    with server.state.lock:
        return list(server.state.requests)


def _app_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


def kube_with(fake: FakeGitHubServer, auth: dict[str, Any], **spec: Any) -> MemoryKube:
    kube = MemoryKube()
    scope = {"repositories": ["acme/{namespace}-*"], "organization": "acme", "environments": ["{namespace}-*"]}
    kube.stores["gh"] = {
        "metadata": {"name": "gh"},
        "spec": {
            "githubActions": {"apiURL": fake.base_url, "auth": auth},
            "conditions": {"namespaces": ["team"]},
            "scope": scope,
            **spec,
        },
    }
    kube.namespaces["team"] = {"metadata": {"name": "team"}}
    kube.put_secret(OPERATOR_NS, "gh-token", {"token": "testbed-token"})
    kube.put_secret("team", "gh-token", {"token": "tenant-token"})  # a namesake in the tenant's namespace
    return kube


async def no_tenant_secret(name: str, key: str) -> str:
    raise AssertionError(f"a tenant Secret ({name}) was read on the store path")


async def sync(kube: MemoryKube, raw: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One reconcile of this target the way fanout drives it: the policy first, then the store."""
    kind = load("githubActions")
    grant = await grants.authorize_target(kube, OWNER, kind.name, raw)
    spec = grants.capped(kind.parse(raw, PATH), grant)
    desired = kind.desired(VAULT, parse_selection(raw, PATH), spec)
    context = TargetContext(kube, OWNER, Digester(b"k" * 32), previous or {}, no_tenant_secret, grant)
    target = grants.scoped(await kind.connect(spec, context), grant)
    plan: Plan[Any] = await target.plan(desired)
    if plan.changed:
        await target.apply(plan, desired)
    return target.status_extra()


TOKEN = {"tokenSecretRef": {"name": "gh-token"}}
REF = {"storeRef": {"name": "gh"}}


async def test_the_stores_token_writes_inside_the_scope(fake: FakeGitHubServer) -> None:
    status = await sync(kube_with(fake, TOKEN), REF | {"repository": "acme/team-web"})
    assert held(fake, scope="repo", owner="acme", repo="team-web") == {"API_KEY": "k-1", "DB_URL": "postgres://db/app"}
    assert status["remoteScope"] == "repository acme/team-web"
    assert {path.split("/actions")[0] for _, path in requests(fake)} == {"/repos/acme/team-web"}


@pytest.mark.parametrize(
    "where",
    [
        {"repository": "acme/other-web"},
        {"repository": "other/team-web"},
        {"repository": "acme/team-web", "environment": "production"},
        {"organization": "other"},
    ],
)
async def test_outside_the_scope_nothing_reaches_github(fake: FakeGitHubServer, where: dict[str, str]) -> None:
    with pytest.raises(PolicyDeniedError, match="outside the scope"):
        await sync(kube_with(fake, TOKEN), REF | where)
    assert requests(fake) == [] and held(fake) == {}


async def test_a_namespace_the_store_does_not_admit_sends_nothing(fake: FakeGitHubServer) -> None:
    kube = kube_with(fake, TOKEN)
    kube.stores["gh"]["spec"]["conditions"] = {"namespaceSelector": {"matchLabels": {"tenant": "yes"}}}
    with pytest.raises(PolicyDeniedError, match="does not admit namespace team"):
        await sync(kube, REF | {"repository": "acme/team-web"})
    assert requests(fake) == []
    kube.namespaces["team"] = {"metadata": {"name": "team", "labels": {"tenant": "yes"}}}
    await sync(kube, REF | {"repository": "acme/team-web"})
    assert set(held(fake)) == {"API_KEY", "DB_URL"}


async def test_environment_and_organization_secrets_as_the_store_allows(fake: FakeGitHubServer) -> None:
    kube = kube_with(fake, TOKEN)
    await sync(kube, REF | {"repository": "acme/team-web", "environment": "team-prod"})
    assert held(fake, scope="environment", environment="team-prod") == {"API_KEY": "k-1", "DB_URL": "postgres://db/app"}
    ours = fake.state.repo_id("acme/team-web")
    await sync(kube, REF | {"organization": "acme", "visibility": "selected", "selectedRepositoryIds": [ours]})
    assert held(fake, scope="org", org="acme") == {"API_KEY": "k-1", "DB_URL": "postgres://db/app"}


@pytest.mark.parametrize("visibility", ["private", "all"])
async def test_organization_secrets_for_every_repository_are_refused(fake: FakeGitHubServer, visibility: str) -> None:
    with pytest.raises(PolicyDeniedError, match=f"visibility {visibility} would reach repositories outside"):
        await sync(kube_with(fake, TOKEN), REF | {"organization": "acme", "visibility": visibility})
    assert requests(fake) == []


async def test_an_organization_secret_shared_with_a_repository_outside_the_scope(fake: FakeGitHubServer) -> None:
    ids = [fake.state.repo_id("acme/team-web"), fake.state.repo_id("acme/other-web")]
    raw = REF | {"organization": "acme", "visibility": "selected", "selectedRepositoryIds": ids}
    with pytest.raises(PolicyDeniedError, match="repository acme/other-web is outside the scope"):
        await sync(kube_with(fake, TOKEN), raw)
    assert all(method == "GET" for method, _ in requests(fake)) and held(fake) == {}  # read the ids, wrote nothing


async def test_the_stores_github_app(fake: FakeGitHubServer) -> None:
    kube = kube_with(fake, {"app": {"appID": 42, "installationID": 7, "privateKeySecretRef": {"name": "gh-app"}}})
    kube.put_secret(OPERATOR_NS, "gh-app", {"private-key.pem": _app_key()})
    await sync(kube, REF | {"repository": "acme/team-web"})
    assert ("POST", "/app/installations/7/access_tokens") in requests(fake)
    assert held(fake, scope="repo") == {"API_KEY": "k-1", "DB_URL": "postgres://db/app"}


async def test_prune_and_adopt_follow_the_stores_allowances(fake: FakeGitHubServer) -> None:
    kube = kube_with(fake, TOKEN, allow={"prune": False})
    raw = REF | {"repository": "acme/team-web", "prune": True, "keys": {"include": ["API_KEY"]}}
    first = await sync(kube, REF | {"repository": "acme/team-web"})
    await sync(kube, raw, first)  # DB_URL left the selection; prune asked for, but the store forbids it
    assert set(held(fake)) == {"API_KEY", "DB_URL"}
    with pytest.raises(PolicyDeniedError, match=r"spec\.allow\.adopt"):
        await sync(kube, REF | {"repository": "acme/team-web", "adopt": True})
