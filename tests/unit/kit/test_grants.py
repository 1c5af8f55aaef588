"""The store policy wired into the reconcile (fanout -> grants -> Credentials), on the in-memory kit: every
external target is decided before its store is connected, and refused targets make no store request at all."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kit.world import World
from vaultbundle import stores
from vaultbundle.digest import Digester
from vaultbundle.errors import PolicyDeniedError, SpecError
from vaultbundle.targets import KINDS, aws_secrets_manager, grants, parse_spec, parse_target
from vaultbundle.targets.base import Owner, Plan, TargetContext

# one target per external kind that asks for the operator's ambient identity (no tenant credentials)
AMBIENT: list[tuple[str, dict[str, Any]]] = [
    ("awsSecretsManager", {"region": "us-east-1"}),
    (
        "awsSecretsManager",
        {"region": "us-east-1", "endpoint": "https://tenant.example", "roleArn": "arn:aws:iam::123456789012:role/x"},
    ),
    ("gcpSecretManager", {"project": "acme-prod", "endpoint": "tenant.example:443"}),
    ("azureKeyVault", {"vaultURL": "https://tenant.vault.azure.net"}),
    (
        "azureKeyVault",
        {
            "vaultURL": "https://v.vault.azure.net",
            "auth": {"managedIdentityClientID": "00000000-0000-0000-0000-000000000000"},
        },
    ),
]


@pytest.fixture
def no_store_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to build a store client is a test failure: the policy must refuse first."""

    def forbidden(*_: Any, **__: Any) -> Any:
        raise AssertionError("a store client was built for a refused target")

    monkeypatch.setattr("vaultbundle.targets.aws_identity.client", forbidden)  # every AWS client (target, KMS)
    for kind in ("gcp_secret_manager", "azure_key_vault"):
        monkeypatch.setattr(f"vaultbundle.targets.{kind}._client", forbidden)


@pytest.mark.parametrize(("kind", "body"), AMBIENT)
async def test_ambient_identity_is_refused_for_tenants_before_any_io(
    kind: str, body: dict[str, Any], no_store_clients: None
) -> None:
    world = World()
    world.push(b"A=1\n")
    world.edit_spec(targets=[{"name": "ext", kind: body}])
    await world.cycle()
    entry = world.target("ext")
    assert (entry["state"], entry["reason"]) == ("Failed", "PolicyDenied")
    assert "ClusterTargetStore" in entry["message"]
    assert "get_cluster_target_store" not in world.kube.calls and "get_namespace" not in world.kube.calls


async def test_a_missing_store_and_an_unadmitted_namespace_read_the_same(no_store_clients: None) -> None:
    world = World()
    world.push(b"A=1\n")
    world.edit_spec(targets=[{"name": "ext", "awsSecretsManager": {"storeRef": {"name": "nope"}}}])
    await world.cycle()
    missing = world.target("ext")
    world.kube.stores["nope"] = {
        "metadata": {"name": "nope"},
        "spec": {
            "awsSecretsManager": {"region": "us-east-1", "identity": {"ambient": {}}},
            "conditions": {"namespaces": ["someone-else"]},
            "scope": {"namePrefix": "{namespace}/"},
        },
    }
    world.force("again")
    await world.cycle()
    unadmitted = world.target("ext")
    assert missing["reason"] == unadmitted["reason"] == "PolicyDenied"
    assert missing["message"] == unadmitted["message"]  # a tenant learns nothing about other stores
    assert world.kube.calls.count("get_cluster_target_store") == 2


@pytest.mark.parametrize("kind", sorted(stores.KINDS))
def test_a_malformed_store_ref_is_a_spec_error_on_every_store_kind(kind: str) -> None:
    ref = {"storeRef": {"name": "v", "namespace": "x"}}
    with pytest.raises(SpecError, match=r"storeRef must be \{name: <ClusterTargetStore>\}"):
        if kind == stores.KMS:  # not a target: the KMS key of a dotsec source
            source = {"dotsec": {"configMapRef": {"name": "c"}, "kms": ref}}
            parse_spec({"source": source, "targets": [{"name": "t", "kubernetesSecret": {"name": "s"}}]})
        else:
            parse_target({"name": "t", kind: ref}, "spec.targets[0]")


class Recording:
    """A connected store that records the names it is asked to plan and apply."""

    def __init__(self) -> None:
        self.planned: list[str] = []

    def describe(self) -> str:
        return "recording"

    async def plan(self, desired: Any) -> Plan[Any]:
        self.planned = sorted(desired)
        return Plan(create=sorted(desired), delete=["tenants/ns/web/OLD", "tenants/other/X"])

    async def apply(self, plan: Plan[Any], desired: Any) -> None:
        pass

    def status_extra(self) -> dict[str, Any]:
        return {}


def _grant(**allow: bool) -> stores.Grant:
    store = stores.parse_store(
        {
            "metadata": {"name": "shared"},
            "spec": {
                "awsSecretsManager": {"region": "us-east-1", "identity": {"ambient": {}}},
                "conditions": {"namespaces": ["ns"]},
                "scope": {"namePrefix": "tenants/{namespace}/{name}/"},
                "allow": allow,
            },
        }
    )
    return stores.authorize("awsSecretsManager", {"storeRef": {"name": "shared"}}, store, "ns", {}, "web")


async def test_the_scope_prefixes_every_name_and_refuses_a_delete_outside_it() -> None:
    inner = Recording()
    scoped = grants.scoped(inner, _grant())
    with pytest.raises(PolicyDeniedError, match="outside the scope"):
        await scoped.plan({"A": b"1"})  # the store proposed deleting tenants/other/X: refused before any write
    assert inner.planned == ["tenants/ns/web/A"]


def test_prune_is_capped_by_the_store() -> None:
    spec = aws_secrets_manager.KIND.parse({"storeRef": {"name": "shared"}, "prune": True}, "t")
    assert grants.capped(spec, _grant()).prune is True
    assert grants.capped(spec, _grant(prune=False)).prune is False
    assert grants.capped(spec, None) is spec


async def test_kubernetes_secret_targets_need_no_grant() -> None:
    assert await grants.authorize_target(World().kube, Owner("ns", "web", "u"), "kubernetesSecret", {}) is None


# --- GCP and Azure build their clients from the ClusterTargetStore only ----------------------------------------------
STORES: dict[str, dict[str, Any]] = {
    "gcpSecretManager": {"project": "acme-shared", "endpoint": "secretmanager.googleapis.com:443"},
    "azureKeyVault": {"vaultURL": "https://shared.vault.azure.net", "authorityHost": "https://login.example.com"},
}
SECRET_IDENTITY: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "gcpSecretManager": ({"name": "gcp-key"}, {"credentials.json": '{"type": "service_account"}'}),
    "azureKeyVault": ({"name": "sp"}, {"tenant-id": "t", "client-id": "c", "client-secret": "s"}),
}


def _store_world(kind: str, identity: dict[str, Any]) -> World:
    world = World()
    prefix = "{namespace}_" if kind == "gcpSecretManager" else "{namespace}-"
    world.kube.stores["shared"] = {
        "metadata": {"name": "shared"},
        "spec": {
            kind: {**STORES[kind], "identity": identity},
            "conditions": {"namespaces": ["ns"]},
            "scope": {"namePrefix": prefix},
        },
    }
    world.kube.namespaces["ns"] = {"metadata": {"name": "ns"}}
    return world


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The arguments every GCP / Azure client was built with (no client is really built)."""
    calls: list[tuple[Any, ...]] = []
    for module in ("gcp_secret_manager", "azure_key_vault"):
        monkeypatch.setattr(f"vaultbundle.targets.{module}._client", lambda *args: calls.append(args) or object())
    return calls


@pytest.mark.parametrize("kind", ["gcpSecretManager", "azureKeyVault"])
async def test_store_connection_and_ambient_identity(kind: str, built: list[tuple[Any, ...]]) -> None:
    world = _store_world(kind, {"ambient": {}})
    grant = await grants.authorize_target(world.kube, Owner("ns", "web", "u"), kind, {"storeRef": {"name": "shared"}})
    target_kind = KINDS[kind]
    context = TargetContext(world.kube, Owner("ns", "web", "u"), Digester(b"k" * 32), {}, _no_tenant_secret, grant)
    target = grants.scoped(
        await target_kind.connect(target_kind.parse({"storeRef": {"name": "shared"}}, "t"), context), grant
    )
    ((spec, principal, *_),) = built
    if kind == "gcpSecretManager":
        assert (spec.project, spec.endpoint, spec.insecure, principal) == (
            "acme-shared",
            "secretmanager.googleapis.com:443",
            False,
            None,
        )
    else:
        assert (spec.vault_url, spec.authority_host, principal) == (
            "https://shared.vault.azure.net",
            "https://login.example.com",
            None,
        )
    assert isinstance(target, grants.ScopedTarget) and "ClusterTargetStore shared" in target.describe()


@pytest.mark.parametrize("kind", ["gcpSecretManager", "azureKeyVault"])
async def test_store_identity_secret_comes_from_the_operator_namespace(
    kind: str, built: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "vaultbundle-system")
    ref, data = SECRET_IDENTITY[kind]
    world = _store_world(kind, {"secretRef": ref})
    world.kube.put_secret("vaultbundle-system", ref["name"], data)
    world.kube.put_secret("ns", ref["name"], {key: "tenant-" + value for key, value in data.items()})  # never read
    grant = await grants.authorize_target(world.kube, Owner("ns", "web", "u"), kind, {"storeRef": {"name": "shared"}})
    target_kind = KINDS[kind]
    context = TargetContext(world.kube, Owner("ns", "web", "u"), Digester(b"k" * 32), {}, _no_tenant_secret, grant)
    await target_kind.connect(target_kind.parse({"storeRef": {"name": "shared"}}, "t"), context)
    ((_, principal, *_),) = built
    expected = {"type": "service_account"} if kind == "gcpSecretManager" else ("t", "c", "s")
    assert principal == expected


async def _no_tenant_secret(name: str, key: str) -> str:
    raise AssertionError(f"a tenant Secret ({name}) was read on the store path")
