"""ClusterTargetStore policy (operator/vaultbundle/stores/), without a cluster: parsing, LabelSelector semantics,
placeholder expansion (hostile inputs included), scope checks, the authorize matrix, AWS session identity and the
per-namespace key derivation."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import hmac
import itertools
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultbundle import stores
from vaultbundle.errors import PolicyDeniedError, Reason, SpecError, StoreInvalidError, TargetError

AMBIENT = {"ambient": {}}


def cts(kind: str, connection: dict[str, Any], scope: dict[str, Any], **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {kind: connection, "scope": scope, "conditions": {"namespaces": ["team"]}}
    spec.update(extra)
    return {
        "apiVersion": "vaultbundle.io/v1alpha1",
        "kind": "ClusterTargetStore",
        "metadata": {"name": "s"},
        "spec": spec,
    }


AWS_STORE = cts(
    "awsSecretsManager", {"region": "eu-west-1", "identity": AMBIENT}, {"namePrefix": "tenants/{namespace}/"}
)
GCP_STORE = cts("gcpSecretManager", {"project": "acme-prod", "identity": AMBIENT}, {"namePrefix": "{namespace}_"})
AZURE_STORE = cts(
    "azureKeyVault", {"vaultURL": "https://v.vault.azure.net", "identity": AMBIENT}, {"namePrefix": "{namespace}-"}
)
VAULT_STORE = cts(
    "hashicorpVault",
    {"address": "https://vault:8200", "auth": {"kubernetes": {"role": "vb", "serviceAccountName": "vb"}}},
    {"mount": "secret", "pathPrefix": "tenants/{namespace}"},
)
GITHUB_STORE = cts(
    "githubActions",
    {"auth": {"tokenSecretRef": {"name": "gh"}}},
    {"repositories": ["acme/{namespace}-*", "acme/shared"], "organization": "acme"},
)
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
KMS_STORE = cts(
    "awsKms",
    {"region": "eu-west-1", "identity": AMBIENT},
    {"keys": [KMS_KEY, "arn:aws:kms:eu-west-1:123456789012:alias/tenants/{namespace}"]},
)
STORES = {
    "awsKms": KMS_STORE,
    "awsSecretsManager": AWS_STORE,
    "gcpSecretManager": GCP_STORE,
    "azureKeyVault": AZURE_STORE,
    "hashicorpVault": VAULT_STORE,
    "githubActions": GITHUB_STORE,
}


def parsed(body: dict[str, Any], **conditions: Any) -> stores.ClusterTargetStore:
    body = copy.deepcopy(body)
    if conditions:
        body["spec"]["conditions"] = conditions
    return stores.parse_store(body)


# --- parsing ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(STORES))
def test_every_kind_parses(kind: str) -> None:
    store = stores.parse_store(STORES[kind])
    assert store.kind == kind and store.name == "s"
    assert store.allow == stores.Allow(adopt=False, prune=True, force_delete_without_recovery=False)
    assert store.conditions.namespaces == frozenset({"team"})


def test_connection_and_identity_are_typed() -> None:
    aws = stores.parse_store(
        cts(
            "awsSecretsManager",
            {
                "region": "us-east-1",
                "roleArn": "arn:aws:iam::123456789012:role/vb",
                "externalId": "vaultbundle-prod",
                "identity": {"secretRef": {"name": "aws-creds", "sessionTokenKey": "token"}},
            },
            {"namePrefix": "t/{namespace}/"},
        )
    )
    assert isinstance(aws.connection, stores.AwsConnection)
    assert aws.connection.external_id == "vaultbundle-prod"
    ref = aws.connection.identity.secret_ref
    assert ref is not None and ref.name == "aws-creds" and not aws.connection.identity.ambient
    assert ref.key("accessKeyIdKey") == "access-key-id" and ref.key("sessionTokenKey") == "token"
    azure = stores.parse_store(
        cts(
            "azureKeyVault",
            {
                "vaultURL": "https://v.vault.azure.net",
                "identity": {"ambient": {"managedIdentityClientID": "00000000-0000-0000-0000-000000000001"}},
            },
            {"namePrefix": "x{namespace}-"},
        )
    )
    assert isinstance(azure.connection, stores.AzureConnection)
    assert azure.connection.identity.managed_identity_client_id.endswith("01")
    vault = stores.parse_store(VAULT_STORE)
    assert isinstance(vault.connection, stores.VaultConnection)
    assert vault.connection.auth.method == "kubernetes" and vault.connection.auth.mount == "kubernetes"
    github = stores.parse_store(GITHUB_STORE)
    assert isinstance(github.connection, stores.GitHubConnection)
    assert github.connection.api_url == "https://api.github.com" and github.connection.auth.method == "token"


def _mutate(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DROP:
        node.pop(last, None)
    else:
        node[last] = value
    return out


_DROP = object()

BROKEN_STORES = [
    (AWS_STORE, "spec.gcpSecretManager", {"project": "x"}, "exactly one store kind"),
    (AWS_STORE, "spec.awsSecretsManager", _DROP, "exactly one store kind"),
    (AWS_STORE, "spec.awsSecretsManager.region", _DROP, "spec.awsSecretsManager.region is required"),
    (
        AWS_STORE,
        "spec.awsSecretsManager.region",
        "Europe",
        "spec.awsSecretsManager.region must be an AWS region, e.g. eu-west-1",
    ),
    (AWS_STORE, "spec.awsSecretsManager.endpoint", "http://169.254.169.254/", "spec.awsSecretsManager.endpoint"),
    (AWS_STORE, "spec.awsSecretsManager.externalId", "abc", "externalId is only used with roleArn"),
    (AWS_STORE, "spec.awsSecretsManager.identity", {}, "exactly one of ambient or secretRef"),
    (AWS_STORE, "spec.awsSecretsManager.identity", {"ambient": {}, "secretRef": {"name": "x"}}, "exactly one of"),
    (
        AWS_STORE,
        "spec.awsSecretsManager.identity",
        {"secretRef": {"name": "x", "namespace": "o"}},
        "namespace is refused",
    ),
    (AWS_STORE, "spec.awsSecretsManager.identity", {"secretRef": {"name": "Bad_Name"}}, "identity.secretRef.name"),
    (AWS_STORE, "spec.awsSecretsManager.identity", {"ambient": {"x": 1}}, "ambient takes no fields"),
    (AWS_STORE, "spec.scope.namePrefix", _DROP, "spec.scope.namePrefix is required"),
    (AWS_STORE, "spec.scope.namePrefix", "t/{tenant}/", "'{tenant}' is not a placeholder"),
    (AWS_STORE, "spec.scope.namePrefix", "t/{namespace/", "is not a placeholder"),
    (AWS_STORE, "spec.scope.namePrefix", "t/{namespace}{name}/", "must be separated by a literal"),
    (AWS_STORE, "spec.scope.namePrefix", "{namespace}/{namespace}/", "at most once"),
    (AWS_STORE, "spec.scope.namePrefix", "t/../{namespace}/", "'..' segment"),
    (AWS_STORE, "spec.scope.namePrefix", "t//{namespace}/", "empty path segment"),
    (AWS_STORE, "spec.scope.namePrefix", "t {namespace}/", "whitespace"),
    (AWS_STORE, "spec.scope.pathPrefix", "x", "do not apply to awsSecretsManager"),
    (GCP_STORE, "spec.scope.namePrefix", "t/{namespace}/", "characters gcpSecretManager does not allow"),
    (AZURE_STORE, "spec.scope.namePrefix", "t_{namespace}-", "characters azureKeyVault does not allow"),
    (AZURE_STORE, "spec.azureKeyVault.vaultURL", "http://v.vault.azure.net", "https:// URL"),
    (
        AZURE_STORE,
        "spec.azureKeyVault.identity",
        {"ambient": {"managedIdentityClientID": "x"}},
        "managedIdentityClientID",
    ),
    (VAULT_STORE, "spec.scope.mount", _DROP, "mount and pathPrefix are required"),
    (VAULT_STORE, "spec.hashicorpVault.address", "http://vault:8200", "address must be an https:// URL"),
    (VAULT_STORE, "spec.hashicorpVault.auth", {}, "exactly one of tokenSecretRef, kubernetes, appRole"),
    (GITHUB_STORE, "spec.scope", {}, "set repositories or organization"),
    (GITHUB_STORE, "spec.scope.repositories", ["acme/*-*"], "at most once"),
    (GITHUB_STORE, "spec.githubActions.auth", {"app": {"appID": 1, "installationID": 0}}, "installationID"),
    (AWS_STORE, "spec.conditions.namespaces", ["Team"], "spec.conditions.namespaces[0] is not a namespace name"),
    (AWS_STORE, "spec.conditions.namespaceSelector", {"matchLabels": {"-bad": "x"}}, "not a valid label key"),
    (AWS_STORE, "spec.conditions.namespaceSelector", {"matchLabels": {"a": "x y"}}, "matchLabels[a]"),
    (
        AWS_STORE,
        "spec.conditions.namespaceSelector",
        {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
        "matchExpressions[0].operator must be one of In, NotIn, Exists, DoesNotExist",
    ),
    (
        AWS_STORE,
        "spec.conditions.namespaceSelector",
        {"matchExpressions": [{"key": "a", "operator": "In"}]},
        "values must be non-empty for operator In",
    ),
    (
        AWS_STORE,
        "spec.conditions.namespaceSelector",
        {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        "values must be empty for operator Exists",
    ),
    (AWS_STORE, "spec.allow", {"adopt": "yes"}, "spec.allow.adopt must be true or false"),
]


@pytest.mark.parametrize(("body", "path", "value", "expected"), BROKEN_STORES, ids=lambda v: str(v)[:40])
def test_broken_store_is_refused_with_its_path(body: dict[str, Any], path: str, value: Any, expected: str) -> None:
    with pytest.raises(StoreInvalidError) as caught:
        stores.parse_store(_mutate(body, path, value))
    assert expected in str(caught.value)
    assert str(caught.value).startswith("ClusterTargetStore s: ")
    assert caught.value.reason is Reason.STORE_INVALID and not caught.value.transient


# --- LabelSelector semantics -----------------------------------------------------------------------------------------
def req(key: str, operator: str, *values: str) -> dict[str, Any]:
    body: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        body["values"] = list(values)
    return body


SELECTOR_TABLE: list[tuple[dict[str, Any], dict[str, str], bool]] = [
    ({}, {}, True),  # an empty selector selects everything
    ({}, {"any": "thing"}, True),
    ({"matchLabels": {"tier": "tenant"}}, {"tier": "tenant"}, True),
    ({"matchLabels": {"tier": "tenant"}}, {"tier": "tenant", "x": "y"}, True),
    ({"matchLabels": {"tier": "tenant"}}, {"tier": "Tenant"}, False),
    ({"matchLabels": {"tier": "tenant"}}, {}, False),
    ({"matchLabels": {"tier": "tenant", "env": "prod"}}, {"tier": "tenant"}, False),
    ({"matchLabels": {"tier": ""}}, {"tier": ""}, True),
    ({"matchLabels": {"tier": ""}}, {}, False),
    ({"matchExpressions": [req("env", "In", "prod", "stage")]}, {"env": "prod"}, True),
    ({"matchExpressions": [req("env", "In", "prod", "stage")]}, {"env": "dev"}, False),
    ({"matchExpressions": [req("env", "In", "prod")]}, {}, False),
    ({"matchExpressions": [req("env", "NotIn", "prod")]}, {"env": "dev"}, True),
    ({"matchExpressions": [req("env", "NotIn", "prod")]}, {"env": "prod"}, False),
    ({"matchExpressions": [req("env", "NotIn", "prod")]}, {}, True),  # absent label: NotIn holds
    ({"matchExpressions": [req("pci", "Exists")]}, {"pci": ""}, True),
    ({"matchExpressions": [req("pci", "Exists")]}, {}, False),
    ({"matchExpressions": [req("pci", "DoesNotExist")]}, {}, True),
    ({"matchExpressions": [req("pci", "DoesNotExist")]}, {"pci": "no"}, False),
    # matchLabels AND every expression
    (
        {"matchLabels": {"tier": "tenant"}, "matchExpressions": [req("env", "In", "prod"), req("pci", "DoesNotExist")]},
        {"tier": "tenant", "env": "prod"},
        True,
    ),
    (
        {"matchLabels": {"tier": "tenant"}, "matchExpressions": [req("env", "In", "prod"), req("pci", "DoesNotExist")]},
        {"tier": "tenant", "env": "prod", "pci": "yes"},
        False,
    ),
    (
        {"matchLabels": {"tier": "tenant"}, "matchExpressions": [req("env", "In", "prod")]},
        {"env": "prod"},
        False,
    ),
    ({"matchExpressions": [req("example.com/team", "In", "a")]}, {"example.com/team": "a"}, True),
]


@pytest.mark.parametrize(("selector", "labels", "expected"), SELECTOR_TABLE)
def test_label_selector_semantics(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    store = parsed(AWS_STORE, namespaceSelector=selector)
    assert stores.admits(store, "some-ns", labels) is expected


def test_no_condition_admits_no_namespace() -> None:
    body = copy.deepcopy(AWS_STORE)
    del body["spec"]["conditions"]
    store = stores.parse_store(body)
    assert not stores.admits(store, "team", {"kubernetes.io/metadata.name": "team"})
    assert not stores.admits(parsed(AWS_STORE, namespaces=[]), "team", {})


def test_namespaces_or_selector() -> None:
    store = parsed(AWS_STORE, namespaces=["team-a"], namespaceSelector={"matchLabels": {"tier": "tenant"}})
    assert stores.admits(store, "team-a", {})
    assert stores.admits(store, "team-b", {"tier": "tenant"})
    assert not stores.admits(store, "team-b", {})
    assert not stores.admits(store, "team-a-x", {})  # names are exact, never prefixes


# --- placeholders ----------------------------------------------------------------------------------------------------
def test_expand() -> None:
    assert stores.expand("tenants/{namespace}/{name}/", "team-a", "web.v2") == "tenants/team-a/web.v2/"
    assert stores.expand("fixed-", "team", "x") == "fixed-"


@pytest.mark.parametrize(
    ("template", "namespace", "name", "expected"),
    [
        ("t/{namespace}/", "../x", "web", "not a Kubernetes namespace name"),
        ("t/{namespace}/", "..", "web", "not a Kubernetes namespace name"),
        ("t/{name}/", "team", "a/b", "not a Kubernetes object name"),
        ("t/{name}/", "team", "..", "not a Kubernetes object name"),
        ("t/{name}/", "team", "a..b", "not a Kubernetes object name"),
        ("t/{namespace}/", "tëam", "web", "not a Kubernetes namespace name"),
        ("t/{namespace}/", "team\n", "web", "not a Kubernetes namespace name"),
        ("t/{namespace}/", "", "web", "not a Kubernetes namespace name"),
        ("t/{namespace}/", "a" * 64, "web", "not a Kubernetes namespace name"),
        ("t/{name}/", "team", "a" * 254, "not a Kubernetes object name"),
        ("t/{name}/", "team", "Web", "not a Kubernetes object name"),
        ("t/{tenant}/", "team", "web", "'{tenant}' is not a placeholder"),
        ("t/{}/", "team", "web", "'{}' is not a placeholder"),
        ("t/{namespace/", "team", "web", "'{' is not a placeholder"),
        ("t/namespace}/", "team", "web", "'}' is not a placeholder"),
        ("t/{{namespace}}/", "team", "web", "is not a placeholder"),
        ("t/{NAMESPACE}/", "team", "web", "is not a placeholder"),
        ("../{namespace}/", "team", "web", "'..' segment"),
        ("t/./{namespace}/", "team", "web", "'..' segment"),
        ("/{namespace}/", "team", "web", "empty path segment"),
        ("t//{namespace}", "team", "web", "empty path segment"),
    ],
)
def test_expand_refuses(template: str, namespace: str, name: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        stores.expand(template, namespace, name)
    assert expected in str(caught.value)


def test_expand_accepts_the_longest_legal_values() -> None:
    namespace, name = "a" * 63, ".".join(["b" * 63] * 3) + "." + "c" * 61
    assert len(name) == 253
    assert stores.expand("{namespace}/{name}", namespace, name) == f"{namespace}/{name}"


def test_scoped_name() -> None:
    assert stores.scoped_name("tenants/team/", "db") == "tenants/team/db"
    with pytest.raises(SpecError):
        stores.scoped_name("tenants/team/", "")


# --- scope checks ----------------------------------------------------------------------------------------------------
def scope_for(body: dict[str, Any], namespace: str = "team", name: str = "web") -> stores.BoundScope:
    store = stores.parse_store(body)
    return stores.BoundScope(store.name, store.kind, namespace, name, store.scope)


def denied(call: Any, *args: Any) -> str:
    with pytest.raises(PolicyDeniedError) as caught:
        call(*args)
    assert caught.value.reason is Reason.POLICY_DENIED and not caught.value.transient
    assert isinstance(caught.value, TargetError)
    return str(caught.value)


def invalid(call: Any, *args: Any) -> str:
    """A name the store itself would refuse: the store's own rule (InvalidSelection), not policy."""
    with pytest.raises(TargetError) as caught:
        call(*args)
    assert caught.value.reason is Reason.INVALID_SELECTION
    return str(caught.value)


def test_aws_names() -> None:
    scope = scope_for(AWS_STORE)
    assert scope.prefix == "tenants/team/"
    assert scope.scoped_name("db/password") == "tenants/team/db/password"
    scope.check_name("tenants/team/x")
    for name in (
        "tenants/team-a/x",  # another namespace's scope
        "tenants/team",  # the parent, not inside
        "tenants/team/",  # the prefix itself is no secret
        "tenants/team/../team-a/x",  # traversal
        "tenants/team//x",  # empty segment
        "prod/payments/db-password",  # outside any tenant scope
    ):
        message = denied(scope.check_name, name)
        assert "team-a" not in message.replace(name, "")
    for bad in ("tenants/team/a b", "tenants/team/" + "x" * 500, "tenants/team/ü"):
        assert "not a valid awsSecretsManager name" in invalid(scope.check_name, bad)
    assert "outside the scope" in denied(scope.scoped_name, "../team-a/x")


def test_gcp_names_use_an_underscore_separator() -> None:
    team_a = scope_for(GCP_STORE, "team-a")
    assert team_a.scoped_name("DB_PASSWORD") == "team-a_DB_PASSWORD"
    denied(scope_for(GCP_STORE, "team").check_name, "team-a_DB_PASSWORD")
    # `{name}` in a GCP prefix: a VaultBundle name with a dot cannot form a GCP secret ID
    dotted = scope_for(_mutate(GCP_STORE, "spec.scope.namePrefix", "{namespace}_{name}_"), "team", "web.v2")
    assert "not a valid gcpSecretManager name" in invalid(dotted.scoped_name, "X")


def test_ambiguous_prefix_is_refused_for_everyone_it_could_belong_to() -> None:
    """Azure names have no separator that namespace names lack: with `{namespace}-`, `team-a-x` could be namespace
    team's (prefix `team-`) or team-a's (prefix `team-a-`). It is refused for both; case does not matter."""
    team, team_a = scope_for(AZURE_STORE, "team"), scope_for(AZURE_STORE, "team-a")
    assert team.scoped_name("db") == "team-db"
    denied(team.check_name, "team-a-x")
    denied(team_a.check_name, "team-a-x")
    denied(team.check_name, "TEAM-A-X")
    denied(team.check_name, "other-db")
    assert team.scoped_name("DB") == "team-DB"
    team.check_name("TEAM-db")  # Key Vault names are case-insensitive: still namespace team's


def test_name_placeholder_scopes_one_vaultbundle() -> None:
    body = _mutate(AWS_STORE, "spec.scope.namePrefix", "tenants/{namespace}/{name}/")
    web = scope_for(body, "team", "web")
    assert web.scoped_name("k") == "tenants/team/web/k"
    denied(web.check_name, "tenants/team/api/k")


def test_vault_paths() -> None:
    scope = scope_for(VAULT_STORE)
    scope.check_path("secret", "tenants/team")
    scope.check_path("secret", "tenants/team/app")
    scope.check_path("/secret/", "tenants/team/app/db")
    assert "Vault mount" in denied(scope.check_path, "other", "tenants/team/app")
    for path in ("tenants/team-a/app", "tenants/teamx", "tenants", "tenants/team/../team-a", "/tenants/team", ""):
        denied(scope.check_path, "secret", path)
    named = scope_for(_mutate(VAULT_STORE, "spec.scope.pathPrefix", "apps/{namespace}-{name}"), "team", "web")
    named.check_path("secret", "apps/team-web/x")
    denied(named.check_path, "secret", "apps/team-web-x")  # could be namespace team-web / name x... or others
    denied(
        scope_for(_mutate(VAULT_STORE, "spec.scope.pathPrefix", "apps/{namespace}-{name}"), "team-a", "x").check_path,
        "secret",
        "apps/team-a-x",
    )


def test_github_repositories_and_organization() -> None:
    scope = scope_for(GITHUB_STORE, "web")
    scope.check_repository("acme/web-api")
    scope.check_repository("ACME/Web-API")  # GitHub names are case-insensitive
    scope.check_repository("acme/shared")  # a pattern without placeholders is open to every admitted namespace
    for repository in ("acme/api-web", "acme/web", "other/web-api", "acme/web-api/x", "acme/shared2"):
        denied(scope.check_repository, repository)
    assert "not an owner/repo name" in denied(scope.check_repository, "acme")
    denied(scope_for(GITHUB_STORE, "team").check_repository, "acme/team-a-x")  # team-a's too
    scope.check_organization("acme")
    scope.check_organization("ACME")
    denied(scope.check_organization, "other")
    no_org = scope_for(_mutate(GITHUB_STORE, "spec.scope.organization", _DROP), "web")
    denied(no_org.check_organization, "acme")


# --- authorize -------------------------------------------------------------------------------------------------------
def authorize(
    kind: str,
    body: dict[str, Any],
    store: dict[str, Any] | None = None,
    namespace: str = "team",
    labels: dict[str, str] | None = None,
) -> stores.Grant:
    parsed_store = stores.parse_store(store) if store is not None else None
    return stores.authorize(kind, body, parsed_store, namespace, labels or {}, "web")


TENANT_CREDS = {
    "awsKms": {"region": "eu-west-1", "credentialsSecretRef": {"name": "aws"}},
    "awsSecretsManager": {"credentialsSecretRef": {"name": "aws"}},
    "gcpSecretManager": {"project": "p-12345", "credentialsSecretRef": {"name": "gcp"}},
    "azureKeyVault": {"vaultURL": "https://v.vault.azure.net", "auth": {"clientSecretRef": {"name": "az"}}},
    "hashicorpVault": {"address": "https://vault:8200", "path": "a", "auth": {"tokenSecretRef": {"name": "t"}}},
    "githubActions": {"repository": "acme/web", "auth": {"tokenSecretRef": {"name": "gh"}}},
}
NO_CREDS = {
    "awsKms": {"region": "eu-west-1"},
    "awsSecretsManager": {"region": "eu-west-1"},
    "gcpSecretManager": {"project": "p-12345"},
    "azureKeyVault": {"vaultURL": "https://v.vault.azure.net"},
    "hashicorpVault": {"address": "https://vault:8200", "path": "a"},
    "githubActions": {"repository": "acme/web"},
}


@pytest.mark.parametrize("kind", list(stores.KINDS))
def test_default_without_credentials_is_policy_denied(kind: str) -> None:
    message = denied(authorize, kind, NO_CREDS[kind])
    assert "no ambient identity for tenants" in message
    assert "ask your cluster admin for a ClusterTargetStore" in message and "supply credentials" in message


@pytest.mark.parametrize("kind", list(stores.KINDS))
def test_tenant_credentials_use_the_targets_own_fields(kind: str) -> None:
    grant = authorize(kind, TENANT_CREDS[kind] | {"adopt": True, "prune": True})
    assert grant.store is None and grant.connection is None and grant.scope is None and grant.identity is None
    # the tenant's own credentials: the cloud decides (adopt still needs the remote object's own opt-in)
    assert grant.allow_adopt and grant.allow_prune and grant.allow_force_delete_without_recovery


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("awsSecretsManager", {"endpoint": "https://attacker.example"}, "endpoint"),
        ("awsSecretsManager", {"stsEndpoint": "https://attacker.example"}, "stsEndpoint"),
        ("awsKms", {"region": "eu-west-1", "endpoint": "https://attacker.example"}, "endpoint"),
        ("gcpSecretManager", {"project": "p-12345", "endpoint": "attacker.example:443"}, "endpoint"),
        ("azureKeyVault", {"vaultURL": "https://attacker.example"}, "vaultURL"),
        (
            "azureKeyVault",
            {"vaultURL": "https://v.vault.azure.net", "auth": {"authorityHost": "https://a.example"}},
            "auth.authorityHost",
        ),
    ],
)
def test_tenant_endpoint_needs_tenant_credentials(kind: str, body: dict[str, Any], field: str) -> None:
    """C2: a tenant-chosen URL never receives the operator's identity; with the tenant's own credentials it may."""
    assert field in denied(authorize, kind, body)
    creds = TENANT_CREDS[kind]
    with_creds = copy.deepcopy(creds)
    for key, value in body.items():
        with_creds[key] = value | creds[key] if isinstance(value, dict) and key in creds else value
    assert authorize(kind, with_creds).store is None


def test_gcp_loopback_emulator_without_credentials_is_allowed() -> None:
    grant = authorize("gcpSecretManager", {"project": "p-12345", "endpoint": "127.0.0.1:8085", "insecure": True})
    assert grant.store is None


def test_tenant_external_id_and_managed_identity_are_refused() -> None:
    """M3 / L5: the ExternalId and the choice of a managed identity belong to the cluster admin."""
    aws = TENANT_CREDS["awsSecretsManager"] | {"roleArn": "arn:aws:iam::123456789012:role/x", "externalId": "e"}
    assert "externalId comes only from a ClusterTargetStore" in denied(authorize, "awsSecretsManager", aws)
    azure = {
        "vaultURL": "https://v.vault.azure.net",
        "auth": {"managedIdentityClientID": "0" * 8 + "-0000-0000-0000-" + "0" * 12},
    }
    assert "no ambient identity" in denied(authorize, "azureKeyVault", azure)


REF = {"storeRef": {"name": "s"}}
TENANT_WITH_REF = {
    "awsKms": REF,
    "awsSecretsManager": REF,
    "gcpSecretManager": REF,
    "azureKeyVault": REF,
    "hashicorpVault": REF | {"path": "tenants/team/app", "namespace": ""},
    "githubActions": REF | {"repository": "acme/team-web", "apiURL": "https://api.github.com"},
}


@pytest.mark.parametrize("kind", list(stores.KINDS))
def test_store_ref_grants_the_admins_connection_and_scope(kind: str) -> None:
    grant = authorize(kind, TENANT_WITH_REF[kind], STORES[kind])
    store = stores.parse_store(STORES[kind])
    assert grant.store == "s" and grant.connection == store.connection
    assert grant.scope is not None and grant.scope.namespace == "team" and grant.scope.name == "web"
    if kind in ("hashicorpVault", "githubActions"):
        assert grant.identity is None
    else:
        assert grant.identity == stores.Identity(ambient=True)


@pytest.mark.parametrize("kind", list(stores.KINDS))
def test_store_ref_with_connection_fields_is_a_spec_error(kind: str) -> None:
    for field_name in stores.CONNECTION_FIELDS[kind]:
        body = TENANT_WITH_REF[kind] | {field_name: "x"}
        with pytest.raises(SpecError) as caught:
            authorize(kind, body, STORES[kind])
        assert field_name in str(caught.value) and "storeRef" in str(caught.value)


def test_not_admitted_missing_and_wrong_kind_read_the_same() -> None:
    """A tenant learns nothing about which stores exist or whom they admit; no other tenant is ever named."""
    store = _mutate(AWS_STORE, "spec.conditions", {"namespaces": ["secret-project-x"]})
    messages = {
        denied(authorize, "awsSecretsManager", REF, store),
        denied(authorize, "awsSecretsManager", REF, None),
        denied(authorize, "gcpSecretManager", REF, store),
        denied(authorize, "awsSecretsManager", {"storeRef": {"name": "s"}}, _mutate(store, "metadata.name", "other")),
    }
    assert len(messages) == 1
    (message,) = messages
    assert "secret-project-x" not in message
    assert "ClusterTargetStore s" in message and "namespace team" in message and "spec.conditions" in message


def test_admission_by_selector_uses_the_namespaces_labels() -> None:
    store = _mutate(AWS_STORE, "spec.conditions", {"namespaceSelector": {"matchLabels": {"tier": "tenant"}}})
    assert authorize("awsSecretsManager", REF, store, labels={"tier": "tenant"}).store == "s"
    denied(authorize, "awsSecretsManager", REF, store, "team", {"tier": "infra"})


@pytest.mark.parametrize(
    ("allow", "request_", "outcome"),
    [
        ({}, {}, {"adopt": False, "prune": True, "force": False}),
        ({}, {"prune": True}, {"adopt": False, "prune": True, "force": False}),
        ({"prune": False}, {"prune": True}, {"adopt": False, "prune": False, "force": False}),  # quietly capped
        ({"prune": False}, {}, {"adopt": False, "prune": False, "force": False}),
        ({}, {"adopt": True}, "spec.allow.adopt"),
        ({"adopt": True}, {"adopt": True}, {"adopt": True, "prune": True, "force": False}),
        ({}, {"forceDeleteWithoutRecovery": True}, "spec.allow.forceDeleteWithoutRecovery"),
        ({"adopt": True}, {"forceDeleteWithoutRecovery": True}, "spec.allow.forceDeleteWithoutRecovery"),
        ({"adopt": True}, {"adopt": True, "forceDeleteWithoutRecovery": True}, "spec.allow.forceDeleteWithoutRecovery"),
        (
            {"forceDeleteWithoutRecovery": True},
            {"forceDeleteWithoutRecovery": True, "prune": True},
            {"adopt": False, "prune": True, "force": True},
        ),
        ({"adopt": True, "forceDeleteWithoutRecovery": True}, {}, {"adopt": True, "prune": True, "force": True}),
    ],
)
def test_allow_matrix(allow: dict[str, bool], request_: dict[str, bool], outcome: dict[str, bool] | str) -> None:
    store = _mutate(AWS_STORE, "spec.allow", allow)
    body = REF | request_
    if isinstance(outcome, str):
        assert outcome in denied(authorize, "awsSecretsManager", body, store)
        return
    grant = authorize("awsSecretsManager", body, store)
    assert (grant.allow_adopt, grant.allow_prune, grant.allow_force_delete_without_recovery) == (
        outcome["adopt"],
        outcome["prune"],
        outcome["force"],
    )


def test_authorize_refuses_unknown_kinds_and_bad_refs() -> None:
    with pytest.raises(SpecError):
        authorize("kubernetesSecret", {"name": "x"})
    with pytest.raises(SpecError):
        authorize("awsSecretsManager", {"storeRef": {"name": "Bad_Name"}}, AWS_STORE)
    with pytest.raises(SpecError):
        authorize("awsSecretsManager", {"storeRef": {"name": "s", "namespace": "x"}}, AWS_STORE)


# --- AWS identity ----------------------------------------------------------------------------------------------------
def test_session_name_is_injective_on_the_reviews_example() -> None:
    first, second = stores.role_session_name("team", "a-x"), stores.role_session_name("team-a", "x")
    assert first != second
    for name in (first, second):
        assert len(name) <= 64 and name.startswith("vb-")
    assert first.endswith("-team.a-x") and second.endswith("-team-a.x")


def test_session_names_are_distinct_valid_and_stable() -> None:
    parts = ["a", "a-b", "b", "a-b-c", "b-c", "x" * 63, "x" * 62]
    pairs = list(itertools.product(parts, [*parts, "a.b", "c" * 253]))
    names = {stores.role_session_name(ns, name) for ns, name in pairs}
    assert len(names) == len(pairs)
    assert all(len(n) <= 64 and all(c.isalnum() or c in "+=,.@-_" for c in n) for n in names)
    assert stores.role_session_name("team", "a-x") == stores.role_session_name("team", "a-x")
    digest = hashlib.sha256(b"team\0a-x").digest()
    assert stores.role_session_name("team", "a-x")[3:29] == base64.b32encode(digest).decode().lower()[:26]


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?", fullmatch=True),
)
def test_session_name_collides_only_for_the_same_bundle(ns1: str, n1: str, ns2: str, n2: str) -> None:
    if ".." in n1 or ".." in n2 or "-." in n1 + n2 or ".-" in n1 + n2:
        return  # not DNS subdomains
    same = (ns1, n1) == (ns2, n2)
    assert (stores.role_session_name(ns1, n1) == stores.role_session_name(ns2, n2)) is same


def test_assume_role_inputs() -> None:
    uid = "0b6c7e52-6a4a-4f5e-9d2c-3c7f3f5f0a11"
    inputs = stores.assume_role_inputs("team", "web", uid)
    assert inputs["RoleSessionName"] == stores.role_session_name("team", "web")
    assert inputs["Tags"] == [
        {"Key": "vaultbundle-namespace", "Value": "team"},
        {"Key": "vaultbundle-name", "Value": "web"},
        {"Key": "vaultbundle-uid", "Value": uid},
    ]
    assert inputs["TransitiveTagKeys"] == ["vaultbundle-namespace", "vaultbundle-name", "vaultbundle-uid"]
    assert "ExternalId" not in inputs
    assert stores.assume_role_inputs("team", "web", uid, external_id="from-the-store")["ExternalId"] == "from-the-store"
    with pytest.raises(SpecError):
        stores.assume_role_inputs("team", "web", "not a uid!")
    with pytest.raises(SpecError):
        stores.assume_role_inputs("team/x", "web", uid)


# --- per-namespace keys ----------------------------------------------------------------------------------------------
def rfc5869(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 written out from RFC 5869, to check the module against an independent implementation."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def test_rfc5869_helper_matches_the_rfcs_test_case_1() -> None:
    okm = rfc5869(bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def test_namespace_key_vector_is_stable() -> None:
    key = bytes(range(32))
    derived = stores.namespace_key(key, "team-a", "digest")
    assert derived == rfc5869(key, b"vaultbundle.io/namespace-key/v1", b"digest\0team-a", 32)
    # the published vector: a change here breaks every stored digest, so it must be deliberate
    assert derived.hex() == NAMESPACE_KEY_VECTOR


NAMESPACE_KEY_VECTOR = "4f835dff6ba4c8c9c23dfdd2ea24481575744b85084a588137543fa4e4a1b3bc"


def test_namespace_keys_differ_by_namespace_purpose_and_key() -> None:
    key = b"k" * 32
    derived = {
        stores.namespace_key(key, "team", "digest"),
        stores.namespace_key(key, "team-a", "digest"),
        stores.namespace_key(key, "team", "digest-a"),
        stores.namespace_key(b"j" * 32, "team", "digest"),
    }
    assert len(derived) == 4 and all(len(k) == 32 for k in derived)


@pytest.mark.parametrize(
    ("key", "namespace", "purpose"),
    [
        (b"short", "team", "digest"),
        (b"k" * 32, "team\0x", "digest"),
        (b"k" * 32, "team", "di\0gest"),
        (b"k" * 32, "team", ""),
        (b"k" * 32, "Team", "digest"),
    ],
)
def test_namespace_key_refuses_bad_input(key: bytes, namespace: str, purpose: str) -> None:
    with pytest.raises(SpecError):
        stores.namespace_key(key, namespace, purpose)


# --- the security property: no name is ever inside two tenants' scopes -----------------------------------------------
# Each test compares the module with a brute-force oracle: every owner's placeholder values are substrings of the
# name, so trying all substrings finds every (namespace, name) whose scope holds it. A name must be accepted exactly
# when that set is this VaultBundle alone.
_LABEL = st.from_regex(r"[ab]([-ab]{0,2}[ab])?", fullmatch=True)  # a tiny alphabet: many near-collisions
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _substrings(text: str) -> set[str]:
    return {text[i:j] for i in range(len(text)) for j in range(i + 1, len(text) + 1)}


def oracle_owners(template: str, text: str, holds: Callable[[str], bool]) -> set[tuple[str | None, str | None]]:
    subs = _substrings(text)
    namespaces = [v for v in subs if _DNS_LABEL.fullmatch(v)] if "{namespace}" in template else [None]
    names = [v for v in subs if _DNS_SUBDOMAIN.fullmatch(v)] if "{name}" in template else [None]
    return {
        (ns, nm)
        for ns in namespaces
        for nm in names
        if holds(template.replace("{namespace}", ns or "").replace("{name}", nm or ""))
    }


PREFIX_STORES = {
    "aws-slash": _mutate(AWS_STORE, "spec.scope.namePrefix", "t/{namespace}/"),
    "aws-name": _mutate(AWS_STORE, "spec.scope.namePrefix", "t/{namespace}-{name}/"),
    "aws-dash": _mutate(AWS_STORE, "spec.scope.namePrefix", "{namespace}-"),
    "gcp": GCP_STORE,
    "gcp-name": _mutate(GCP_STORE, "spec.scope.namePrefix", "{name}-{namespace}_"),
    "azure": AZURE_STORE,
}


@settings(max_examples=250, deadline=None)
@given(st.sampled_from(sorted(PREFIX_STORES)), _LABEL, _LABEL, st.text(alphabet="ab-_/.", min_size=1, max_size=6))
def test_a_name_is_accepted_exactly_when_it_is_in_this_scope_alone(store: str, ns: str, nm: str, suffix: str) -> None:
    scope = scope_for(PREFIX_STORES[store], ns, nm)
    template, fold = scope.templates.name_prefix, store == "azure"
    full = scope.prefix + suffix
    subject = full.lower() if fold else full
    owners = oracle_owners(template, subject, lambda prefix: subject.startswith(prefix.lower() if fold else prefix))
    ours = (ns if "{namespace}" in template else None, nm if "{name}" in template else None)
    legal = stores.NAME_RULES[scope.kind].chars.fullmatch(full) is not None and "//" not in full
    legal = legal and not any(seg in (".", "..") for seg in full.split("/"))
    try:
        scope.check_name(full)
        accepted = True
    except TargetError:
        accepted = False
    assert accepted == (legal and owners == {ours}), (full, owners)


@settings(max_examples=250, deadline=None)
@given(_LABEL, _LABEL, st.text(alphabet="ab-/", min_size=0, max_size=6))
def test_a_vault_path_is_accepted_exactly_when_it_is_in_this_scope_alone(ns: str, nm: str, tail: str) -> None:
    """A '/' boundary makes a placeholder in its own segment unambiguous; two in one segment are not."""
    template = "apps/{namespace}-{name}"
    scope = scope_for(_mutate(VAULT_STORE, "spec.scope.pathPrefix", template), ns, nm)
    path = f"apps/{ns}-{nm}{tail}"
    owners = oracle_owners(template, path, lambda p: path == p or path.startswith(p + "/"))
    legal = "//" not in path and not path.endswith("/")
    try:
        scope.check_path("secret", path)
        accepted = True
    except TargetError:
        accepted = False
    assert accepted == (legal and owners == {(ns, nm)}), (path, owners)


@settings(max_examples=250, deadline=None)
@given(_LABEL, st.text(alphabet="ab-.", min_size=0, max_size=6))
def test_a_repository_is_accepted_exactly_when_it_is_in_this_scope_alone(ns: str, tail: str) -> None:
    scope = scope_for(_mutate(GITHUB_STORE, "spec.scope.repositories", ["acme/{namespace}-*"]), ns)
    repository = f"acme/{ns}-{tail}"
    owners = oracle_owners(
        "acme/{namespace}-*", repository, lambda p: re.fullmatch(re.escape(p[:-1]) + r"[a-z0-9._-]*", repository)
    )
    try:
        scope.check_repository(repository)
        accepted = True
    except TargetError:
        accepted = False
    assert accepted == (owners == {(ns, None)}), (repository, owners)


def test_authorize_checks_what_the_spec_fixes() -> None:
    """Vault mount + path and the GitHub repository / organization are checked before any client exists."""
    assert "Vault path" in denied(authorize, "hashicorpVault", REF | {"path": "tenants/team-a/app"}, VAULT_STORE)
    assert "Vault mount" in denied(
        authorize, "hashicorpVault", REF | {"path": "tenants/team/app", "mount": "kv"}, VAULT_STORE
    )
    assert authorize("hashicorpVault", REF | {"path": "tenants/team/app"}, VAULT_STORE).store == "s"  # mount default
    assert "repository" in denied(authorize, "githubActions", REF | {"repository": "acme/other-web"}, GITHUB_STORE)
    assert "organization" in denied(authorize, "githubActions", REF | {"organization": "other"}, GITHUB_STORE)
    org = REF | {"organization": "acme"}
    assert authorize("githubActions", org | {"visibility": "selected"}, GITHUB_STORE).store == "s"
    assert "visibility private" in denied(authorize, "githubActions", org, GITHUB_STORE)  # every private repo


def test_worst_case_scope_check_is_fast() -> None:
    """The ambiguity search is bounded: placeholders are separated by literals and stop at the first character they
    cannot contain. A 512-character AWS name made of nothing but placeholder characters and separators."""
    body = _mutate(AWS_STORE, "spec.scope.namePrefix", "t/{namespace}-{name}/")
    scope = scope_for(body, "a" * 63, "a" * 253)
    started = time.perf_counter()
    for name in ("a-" * 223 + "a", "a" * 446 + "/x", ("a-a." * 120)[:446]):
        with contextlib.suppress(TargetError):
            scope.check_name(scope.prefix + name[: 512 - len(scope.prefix)])
    assert time.perf_counter() - started < 1.0
