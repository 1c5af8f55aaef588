"""`storeRef` on hashicorpVault and githubActions (issue #13): the connection and identity come from the admin's
ClusterTargetStore alone (Secrets and ServiceAccount of the OPERATOR's namespace), and the store's scope is checked
before every call the target makes: login, plan (reads) and apply (writes, adopts, deletes, prunes).

No server here: the SDK clients are replaced by recorders or by objects that fail the test when touched; the real
servers (OpenBao, the GitHub fake) are in tests/integration/test_store_github_actions.py and
tests/e2e/test_store_policy_vault_github.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from tests.kit.world import World
from vaultbundle import stores
from vaultbundle.digest import Digester
from vaultbundle.errors import PolicyDeniedError, Reason, SpecError, StoreInvalidError, TargetError
from vaultbundle.fields import SecretRef
from vaultbundle.kube import KubeError
from vaultbundle.targets import KINDS, grants, parse_target
from vaultbundle.targets.base import Owner, Plan, TargetContext
from vaultbundle.targets.credentials import credentials_for
from vaultbundle.targets.github_actions import GitHubActionsTarget
from vaultbundle.targets.hashicorp_vault import HashicorpVaultTarget, Login
from vaultbundle.targets.tokens import AUDIENCES_ANNOTATION

OPERATOR_NS = "vaultbundle-system"
OWNER = Owner("team", "web", "uid-1")
REF = {"storeRef": {"name": "shared"}}


def store(kind: str, connection: dict[str, Any], scope: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "shared"},
        "spec": {kind: connection, "conditions": {"namespaces": ["team"]}, "scope": scope, **spec},
    }


VAULT_SCOPE = {"mount": "secret", "pathPrefix": "tenants/{namespace}"}
VAULT_TOKEN_STORE = store(
    "hashicorpVault",
    {
        "address": "https://vault.internal:8200/",
        "namespace": "tenants",
        "caBundleSecretRef": {"name": "vault-ca"},
        "auth": {"tokenSecretRef": {"name": "vault-token"}},
    },
    VAULT_SCOPE,
)
VAULT_K8S_STORE = store(
    "hashicorpVault",
    {
        "address": "https://vault.internal:8200",
        "auth": {"kubernetes": {"role": "tenants", "serviceAccountName": "vb-vault", "mount": "k8s"}},
    },
    VAULT_SCOPE,
)
VAULT_APPROLE_STORE = store(
    "hashicorpVault",
    {
        "address": "https://vault.internal:8200",
        "auth": {
            "appRole": {"roleIdSecretRef": {"name": "vault-role"}, "secretIdSecretRef": {"name": "vault-secret-id"}}
        },
    },
    VAULT_SCOPE,
)
GITHUB_SCOPE = {"repositories": ["acme/{namespace}-*"], "organization": "acme", "environments": ["{namespace}-*"]}
GITHUB_STORE = store(
    "githubActions",
    {"apiURL": "https://ghe.internal/api/v3", "auth": {"tokenSecretRef": {"name": "gh-token"}}},
    GITHUB_SCOPE,
)


class Never:
    """An SDK client (or any part of one) that fails the test when it is used at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was called ({name}) for a target outside its scope")


class NeverVault(Never):
    """An hvac client whose pooled connections may be closed (no request), and nothing else."""

    class adapter:  # hvac's attribute name
        @staticmethod
        def close() -> None:
            pass


async def no_tenant_secret(name: str, key: str) -> str:
    raise AssertionError(f"a tenant Secret ({name}) was read on the store path")


def world_with(body: dict[str, Any], operator_secrets: Mapping[str, Mapping[str, str]] = {}) -> World:
    world = World("team")
    world.kube.stores["shared"] = body
    world.kube.namespaces["team"] = {"metadata": {"name": "team"}}
    for name, data in operator_secrets.items():
        world.kube.put_secret(OPERATOR_NS, name, dict(data))
        world.kube.put_secret("team", name, {k: "TENANT-" + v for k, v in data.items()})  # never read
    return world


async def context_for(world: World, kind: str, raw: Mapping[str, Any]) -> TargetContext:
    grant = await grants.authorize_target(world.kube, OWNER, kind, raw)
    return TargetContext(world.kube, OWNER, Digester(b"k" * 32), {}, no_tenant_secret, grant)


@pytest.fixture(autouse=True)
def operator_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", OPERATOR_NS)


# --- parsing ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        {"hashicorpVault": REF | {"path": "tenants/team/app"}},
        {"githubActions": REF | {"repository": "acme/team-web"}},
        {"githubActions": REF | {"organization": "acme"}},
    ],
)
def test_store_ref_needs_no_connection_fields(target: dict[str, Any]) -> None:
    parsed = parse_target({"name": "t", **target}, "spec.targets[0]")
    body = parsed.body
    assert getattr(body, "auth", None) is None and getattr(body, "token_ref", None) is None


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ({"hashicorpVault": {"path": "tenants/team/app"}}, "address"),
        ({"hashicorpVault": {"path": "a", "address": "https://v:8200"}}, "auth"),
        ({"githubActions": {"repository": "acme/web"}}, "auth"),
    ],
)
def test_without_store_ref_the_connection_is_still_required(target: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        parse_target({"name": "t", **target}, "spec.targets[0]")


@pytest.mark.parametrize(
    ("kind", "extra", "field"),
    [
        ("hashicorpVault", {"address": "https://tenant.example:8200"}, "address"),
        ("hashicorpVault", {"auth": {"tokenSecretRef": {"name": "mine"}}}, "auth"),
        ("hashicorpVault", {"namespace": "other"}, "namespace"),
        ("hashicorpVault", {"caBundleSecretRef": {"name": "ca"}}, "caBundleSecretRef"),
        ("githubActions", {"apiURL": "https://tenant.example/api/v3"}, "apiURL"),
        ("githubActions", {"auth": {"tokenSecretRef": {"name": "mine"}}}, "auth"),
    ],
)
async def test_store_ref_with_a_connection_field_is_a_spec_error_naming_it(
    kind: str, extra: dict[str, Any], field: str
) -> None:
    body = VAULT_TOKEN_STORE if kind == "hashicorpVault" else GITHUB_STORE
    where = {"path": "tenants/team/app"} if kind == "hashicorpVault" else {"repository": "acme/team-web"}
    raw = REF | where | extra
    KINDS[kind].parse(raw, "t")  # the spec itself is well-formed ...
    with pytest.raises(SpecError) as caught:  # ... but not together with storeRef
        await grants.authorize_target(world_with(body).kube, OWNER, kind, raw)
    assert f"remove {field}" in str(caught.value)


# --- Vault: connection and identity from the store only --------------------------------------------------------------
@pytest.fixture
def logins(monkeypatch: pytest.MonkeyPatch) -> list[tuple[HashicorpVaultTarget, Login, str | None]]:
    """Every Vault login connect() makes, with the target and the CA it pinned (nothing is sent anywhere)."""
    made: list[tuple[HashicorpVaultTarget, Login, str | None]] = []
    pinned: list[str | None] = []
    import requests

    monkeypatch.setattr(
        "vaultbundle.targets.hashicorp_vault._session", lambda ca: pinned.append(ca) or requests.Session()
    )

    async def login(self: HashicorpVaultTarget, login: Login, server: tuple[str, ...] = ()) -> None:
        made.append((self, login, pinned[-1]))

    monkeypatch.setattr(HashicorpVaultTarget, "login", login)
    return made


async def connect_vault(world: World, path: str = "tenants/team/app") -> HashicorpVaultTarget:
    kind = KINDS["hashicorpVault"]
    raw = REF | {"path": path}
    target = await kind.connect(kind.parse(raw, "t"), await context_for(world, kind.name, raw))
    assert isinstance(target, HashicorpVaultTarget)
    return target


async def test_vault_token_ca_address_and_namespace_come_from_the_store(logins: list[Any]) -> None:
    secrets = {"vault-token": {"token": "s.operator"}, "vault-ca": {"ca.crt": "-----BEGIN CERTIFICATE-----"}}
    target = await connect_vault(world_with(VAULT_TOKEN_STORE, secrets))
    ((connected, login, ca),) = logins
    assert connected is target
    assert (target.spec.address, target.spec.namespace, target.spec.mount) == (
        "https://vault.internal:8200",
        "tenants",
        "secret",
    )
    assert (login.method, login.secret, ca) == ("token", "s.operator", "-----BEGIN CERTIFICATE-----")
    assert "s.operator" not in repr(login)
    # the tenant is told which store, not the admin's address
    assert target.describe() == "Vault KV v2 secret ClusterTargetStore shared secret/tenants/team/app"


async def test_vault_app_role_comes_from_the_operator_namespace(logins: list[Any]) -> None:
    secrets = {"vault-role": {"role-id": "r-1"}, "vault-secret-id": {"secret-id": "s-1"}}
    await connect_vault(world_with(VAULT_APPROLE_STORE, secrets))
    ((_, login, ca),) = logins
    assert (login.method, login.mount, login.role_id, login.secret, ca) == ("appRole", "approle", "r-1", "s-1", None)


async def test_vault_kubernetes_auth_uses_the_stores_service_account_in_the_operator_namespace(
    logins: list[Any],
) -> None:
    world = world_with(VAULT_K8S_STORE)
    world.kube.service_accounts[(OPERATOR_NS, "vb-vault")] = {
        "metadata": {"annotations": {AUDIENCES_ANNOTATION: "vault"}}
    }
    world.kube.service_accounts[("team", "vb-vault")] = {"metadata": {"annotations": {AUDIENCES_ANNOTATION: "vault"}}}
    await connect_vault(world)
    ((_, login, _),) = logins
    assert (login.method, login.mount, login.role) == ("kubernetes", "k8s", "tenants")
    assert login.identity == (OPERATOR_NS, "vb-vault", "vault")  # never the tenant's namesake
    assert "create_token" not in world.kube.calls  # the JWT is requested only when the login has to be made
    assert login.jwt is not None and await login.jwt() == f"token-for-{OPERATOR_NS}-vb-vault"


async def test_vault_store_service_account_must_opt_in(logins: list[Any]) -> None:
    world = world_with(VAULT_K8S_STORE)
    world.kube.service_accounts[(OPERATOR_NS, "vb-vault")] = {"metadata": {}}
    with pytest.raises(TargetError) as caught:
        await connect_vault(world)
    assert caught.value.reason == Reason.FORBIDDEN and AUDIENCES_ANNOTATION in str(caught.value)
    assert "create_token" not in world.kube.calls and logins == []


async def test_vault_store_secret_missing_is_store_invalid(logins: list[Any]) -> None:
    with pytest.raises(StoreInvalidError, match="vault-token"):
        await connect_vault(world_with(VAULT_TOKEN_STORE, {"vault-ca": {"ca.crt": "pem"}}))
    assert logins == []


@pytest.mark.parametrize(("status", "raised"), [(403, StoreInvalidError), (500, KubeError)])
async def test_a_store_secret_the_operator_may_not_read_names_the_chart_value(
    logins: list[Any], status: int, raised: type[Exception]
) -> None:
    """A namespaced install that does not watch its own namespace cannot read the store's Secrets unless the chart
    lists them (rbac.storeSecrets): a 403 says so; any other API failure stays a Kubernetes API error."""
    world = world_with(VAULT_TOKEN_STORE, {"vault-token": {"token": "s.operator"}, "vault-ca": {"ca.crt": "x"}})
    world.kube.failing["get_secret"] = status
    with pytest.raises(raised) as caught:
        await connect_vault(world)
    if status == 403:
        assert "rbac.storeSecrets" in str(
            caught.value
        ) and f"Secret vault-ca in its own namespace {OPERATOR_NS}" in str(caught.value)
    assert "s.operator" not in str(caught.value) and logins == []


async def test_vault_path_outside_the_scope_never_connects(logins: list[Any]) -> None:
    world = world_with(VAULT_TOKEN_STORE, {"vault-token": {"token": "t"}, "vault-ca": {"ca.crt": "x"}})
    for path in ("tenants/team-a/app", "tenants/team/../team-a", "tenants/team//x", "tenants/team%2F..%2Fx"):
        with pytest.raises((PolicyDeniedError, SpecError)):
            await connect_vault(world, path)
    assert logins == [] and "get_secret" not in world.kube.calls  # refused before any credential was read


# --- Credentials: a store grant admits exactly the store's Secrets and ServiceAccount --------------------------------
async def test_store_grant_admits_only_the_stores_own_secrets_and_account() -> None:
    world = world_with(VAULT_K8S_STORE)
    context = await context_for(world, "hashicorpVault", REF | {"path": "tenants/team/app"})
    credentials = credentials_for(context, "hashicorpVault")
    assert credentials.store_service_account("vb-vault") == OPERATOR_NS
    with pytest.raises(PolicyDeniedError):
        credentials.store_service_account("vaultbundle")  # the operator's own account: not what the store names
    with pytest.raises(PolicyDeniedError):
        credentials.service_account("vb-vault")  # a tenant ServiceAccount
    with pytest.raises(PolicyDeniedError):
        await credentials.secret(SecretRef("vault-token", "token"))  # a tenant Secret
    with pytest.raises(PolicyDeniedError):
        await credentials.store_secret(stores.SecretRef("digest-key", (("key", "key"),)), "key")


async def test_tenant_grant_admits_no_store_secret_or_account() -> None:
    raw = {"address": "https://v:8200", "path": "a", "auth": {"tokenSecretRef": {"name": "t"}}}
    context = await context_for(World("team"), "hashicorpVault", raw)
    credentials = credentials_for(context, "hashicorpVault", "https://v:8200")
    with pytest.raises(PolicyDeniedError):
        credentials.store_service_account("vb-vault")
    with pytest.raises(PolicyDeniedError):
        await credentials.store_secret(stores.SecretRef("vault-token", (("key", "token"),)), "key")


def test_grant_lists_every_operator_secret_of_the_store() -> None:
    def grant(body: dict[str, Any], raw: dict[str, Any]) -> stores.Grant:
        parsed = stores.parse_store(body)
        return stores.authorize(parsed.kind, raw, parsed, "team", {}, "web")

    vault = REF | {"path": "tenants/team/app"}
    assert grant(VAULT_TOKEN_STORE, vault).operator_secrets == {"vault-token", "vault-ca"}
    assert grant(VAULT_APPROLE_STORE, vault).operator_secrets == {"vault-role", "vault-secret-id"}
    assert grant(VAULT_K8S_STORE, vault).operator_secrets == frozenset()
    assert grant(VAULT_K8S_STORE, vault).operator_service_account == "vb-vault"
    assert grant(VAULT_TOKEN_STORE, vault).operator_service_account == ""
    assert grant(GITHUB_STORE, REF | {"repository": "acme/team-web"}).operator_secrets == {"gh-token"}


# --- Vault: the scope is checked before every call -------------------------------------------------------------------
def vault_target(path: str, mount: str = "secret") -> HashicorpVaultTarget:
    grant = stores.authorize(
        "hashicorpVault", REF | {"path": "tenants/team/app"}, stores.parse_store(VAULT_TOKEN_STORE), "team", {}, "web"
    )
    spec = KINDS["hashicorpVault"].parse(REF | {"path": path, "mount": mount}, "t")
    return HashicorpVaultTarget(NeverVault(), spec, OWNER, {}, scope=grant.scope)


@pytest.mark.parametrize(("path", "mount"), [("tenants/other/app", "secret"), ("tenants/team/app", "kv")])
async def test_vault_target_checks_its_scope_before_login_plan_and_apply(path: str, mount: str) -> None:
    target = vault_target(path, mount)
    with pytest.raises(PolicyDeniedError, match="outside the scope"):
        await target.login(Login("token", "token lookup-self", secret="t"))
    with pytest.raises(PolicyDeniedError, match="outside the scope"):
        await target.plan({"A": b"1"})
    with pytest.raises(PolicyDeniedError, match="outside the scope"):
        await target.apply(Plan(create=["A"], delete=["B"]), {"A": b"1"})


async def test_fanout_refuses_a_vault_path_outside_the_scope_before_any_store_io(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("hvac.Client", Never)
    world = world_with(VAULT_TOKEN_STORE, {"vault-token": {"token": "t"}})
    world.push(b"A=1\n")
    world.edit_spec(targets=[{"name": "v", "hashicorpVault": REF | {"path": "tenants/other/app"}}])
    await world.cycle()
    entry = world.target("v")
    assert (entry["state"], entry["reason"]) == ("Failed", "PolicyDenied")
    assert "outside the scope" in entry["message"] and "other" not in entry["message"].replace("tenants/other", "")
    assert world.kube.calls.count("get_secret") == 2  # the VaultBundle's source Secrets; no store Secret


async def test_store_prune_false_keeps_vault_keys() -> None:
    no_prune = dataclasses.replace(stores.parse_store(VAULT_TOKEN_STORE), allow=stores.Allow(adopt=False, prune=False))
    grant = stores.authorize("hashicorpVault", REF | {"path": "tenants/team/app"}, no_prune, "team", {}, "web")
    spec = KINDS["hashicorpVault"].parse(REF | {"path": "tenants/team/app"}, "t")
    assert spec.prune is True and grants.capped(spec, grant).prune is False


# --- GitHub: connection and identity from the store; scope before every call ----------------------------------------
class Recorder:
    """Stands in for `github.Github`: records how the client was built."""

    built: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        Recorder.built.append(kwargs)


async def test_github_api_url_and_token_come_from_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    Recorder.built = []
    monkeypatch.setattr("github.Github", Recorder)
    world = world_with(GITHUB_STORE, {"gh-token": {"token": "ghp_operator"}})
    kind = KINDS["githubActions"]
    raw = REF | {"repository": "acme/team-web"}
    target = await kind.connect(kind.parse(raw, "t"), await context_for(world, kind.name, raw))
    ((built,),) = [Recorder.built]
    assert built["base_url"] == "https://ghe.internal/api/v3" and built["auth"].token == "ghp_operator"
    assert isinstance(target, GitHubActionsTarget) and target.scope is not None


async def test_github_app_key_from_the_store_must_be_a_private_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("github.Github", Recorder)
    app = {"appID": 12, "installationID": 34, "privateKeySecretRef": {"name": "gh-app"}}
    body = store("githubActions", {"auth": {"app": app}}, GITHUB_SCOPE)
    world = world_with(body, {"gh-app": {"private-key.pem": "not a key"}})
    kind = KINDS["githubActions"]
    raw = REF | {"repository": "acme/team-web"}
    with pytest.raises(TargetError) as caught:
        await kind.connect(kind.parse(raw, "t"), await context_for(world, kind.name, raw))
    assert caught.value.reason == Reason.AUTH_FAILED and "ClusterTargetStore's Secret 'gh-app'" in str(caught.value)


def github_target(**where: str) -> GitHubActionsTarget:
    grant = stores.authorize(
        "githubActions", REF | {"repository": "acme/team-web"}, stores.parse_store(GITHUB_STORE), "team", {}, "web"
    )
    spec = KINDS["githubActions"].parse(REF | where, "t")
    context = TargetContext(None, OWNER, Digester(b"k" * 32), {}, no_tenant_secret)  # type: ignore[arg-type]
    return GitHubActionsTarget(Never(), spec, context, scope=grant.scope)


@pytest.mark.parametrize(
    "where",
    [
        {"repository": "acme/other-web"},
        {"repository": "acme/team-a-web"},  # ambiguous: team's (wildcard a-web) and team-a's
        {"repository": "other/team-web"},
        {"repository": "acme/team-web", "environment": "production"},
        {"repository": "acme/team-web", "environment": "other-prod"},
        {"organization": "other"},
        {"organization": "acme"},  # visibility private: every private repository of acme would get it
        {"organization": "acme", "visibility": "all"},
    ],
)
async def test_github_target_checks_its_scope_before_plan_and_apply(where: dict[str, str]) -> None:
    target = github_target(**where)
    with pytest.raises(PolicyDeniedError, match="outside the scope"):
        await target.plan({"A": b"1"})
    with pytest.raises(PolicyDeniedError, match="outside the scope"):
        await target.apply(Plan(create=["A"], delete=["B"]), {"A": b"1"})


# --- the scope's GitHub environments ---------------------------------------------------------------------------------
def github_scope(namespace: str = "team", **scope: Any) -> stores.BoundScope:
    parsed = stores.parse_store(store("githubActions", GITHUB_STORE["spec"]["githubActions"], GITHUB_SCOPE | scope))
    return stores.BoundScope("shared", "githubActions", namespace, "web", parsed.scope)


def test_environments_are_scoped_like_repositories() -> None:
    scope = github_scope()
    scope.check_environment("team-prod")
    scope.check_environment("TEAM-Staging")  # GitHub compares environment names case-insensitively
    scope.check_github("acme/team-web", "team-prod", "")
    for environment in ("prod", "other-prod", "team", "team-a-prod"):  # team-a-prod: team-a's too
        with pytest.raises(PolicyDeniedError):
            scope.check_environment(environment)
    with pytest.raises(PolicyDeniedError):
        github_scope(environments=[]).check_environment("team-prod")
    open_scope = github_scope(environments=["staging", "*"])
    open_scope.check_environment("anything at all")
    without = stores.BoundScope("shared", "githubActions", "team", "web", stores.Scope(repositories=("acme/x",)))
    with pytest.raises(PolicyDeniedError, match="environment"):
        without.check_github("acme/x", "prod", "")  # no environments in the scope: no environment secrets


def test_escapes_are_refused_as_outside_the_scope() -> None:
    """Dot segments, empty segments, encoded separators and look-alikes never match a scope (PolicyDenied); the CRD
    and the spec parser refuse most of them even earlier (InvalidSpec)."""
    vault = stores.BoundScope("shared", "hashicorpVault", "team", "web", stores.parse_store(VAULT_TOKEN_STORE).scope)
    vault.check_path("secret", "tenants/team/app")
    for path in (
        "tenants/team/../other/app",
        "tenants/team/./app",
        "tenants/team//app",
        "tenants/team/app/",
        "tenants/team%2F..%2Fother",
        "tenants/team%2fapp",
        "tenants/team\u2215app",  # DIVISION SLASH
        "tenants/team\uff0fapp",  # FULLWIDTH SOLIDUS
        "tenants/team\napp",
        "tenants/team",
    ):
        if path == "tenants/team":
            vault.check_path("secret", path)  # the prefix itself is this VaultBundle's
            continue
        with pytest.raises(PolicyDeniedError, match="outside the scope"):
            vault.check_path("secret", path)
    github = github_scope(environments=["*"])
    for environment in ("..", ".", "team_x%2F..", "a/b", "x\ty"):
        with pytest.raises(PolicyDeniedError, match="outside the scope"):
            github.check_environment(environment)
    for repository in ("acme%2Fteam-web", "acme/team-web/../x", "acme//team-web"):
        with pytest.raises(PolicyDeniedError):
            github.check_repository(repository)


def test_environments_need_repositories_and_valid_templates() -> None:
    with pytest.raises(StoreInvalidError, match=r"spec\.scope\.environments"):
        stores.parse_store(
            store(
                "githubActions",
                {"auth": {"tokenSecretRef": {"name": "g"}}},
                {"organization": "acme", "environments": ["x"]},
            )
        )
    with pytest.raises(StoreInvalidError, match=r"spec.scope.environments\[0\]"):
        stores.parse_store(
            store(
                "githubActions",
                {"auth": {"tokenSecretRef": {"name": "g"}}},
                {"repositories": ["acme/x"], "environments": ["{namespace}{name}"]},
            )
        )
    with pytest.raises(StoreInvalidError, match="do not apply"):
        stores.parse_store(
            store("hashicorpVault", VAULT_TOKEN_STORE["spec"]["hashicorpVault"], VAULT_SCOPE | {"environments": ["x"]})
        )


def test_authorize_checks_the_environment_on_the_spec() -> None:
    parsed = stores.parse_store(GITHUB_STORE)
    ok = stores.authorize(
        "githubActions", REF | {"repository": "acme/team-web", "environment": "team-prod"}, parsed, "team", {}, "web"
    )
    assert ok.store == "shared"
    with pytest.raises(PolicyDeniedError, match="environment"):
        stores.authorize(
            "githubActions", REF | {"repository": "acme/team-web", "environment": "prod"}, parsed, "team", {}, "web"
        )
