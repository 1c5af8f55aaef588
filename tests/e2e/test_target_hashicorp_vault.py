"""hashicorpVault target against the test bed's real OpenBao (Vault API): parse → desired → connect → plan → apply.

Every test writes under its own random path with a least-privilege token (or an AppRole / Kubernetes login),
reads the result back with the root token, and checks versions, custom_metadata and data exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest
from tests.kit.policy import with_grant

from vaultbundle import metrics
from vaultbundle.backoff import Backoff, Retry
from vaultbundle.digest import Digester
from vaultbundle.egress import EgressPolicy
from vaultbundle.errors import SpecError, TargetError
from vaultbundle.spec import parse_selection
from vaultbundle.targets import hashicorp_vault
from vaultbundle.targets.base import Owner, Plan, TargetContext
from vaultbundle.targets.ownership import ADOPT_KEY
from vaultbundle.vault import Vault

pytestmark = pytest.mark.testbed

hvac = pytest.importorskip("hvac")

CANARY = "canary-value-7f3e1"  # must never show up in a message
POLICY = """
path "secret/data/vbtest/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/vbtest/*" { capabilities = ["create", "read", "update"] }
path "kv1-vbtest/vbtest/*" { capabilities = ["create", "read", "update"] }
"""


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def root(testbed: dict[str, str]) -> Any:
    client = hvac.Client(url=testbed["VAULT_ADDR"], token=testbed["VAULT_TOKEN"])
    client.sys.create_or_update_policy("vbtest", POLICY)
    if "kv1-vbtest/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("kv", path="kv1-vbtest", options={"version": "1"})
    return client


@pytest.fixture(scope="module")
def token(root: Any) -> str:
    """A least-privilege token: exactly the policy docs/targets/hashicorpVault.md asks for."""
    return str(root.auth.token.create(policies=["vbtest"], ttl="30m")["auth"]["client_token"])


class Secrets:
    """The VaultBundle namespace's Secrets, as `context.read_secret` sees them."""

    def __init__(self, values: Mapping[tuple[str, str], str]) -> None:
        self.values = dict(values)

    async def read(self, name: str, key: str) -> str:
        return self.values[(name, key)]


def _context(secrets: Secrets, *, previous: Mapping[str, Any] | None = None, kube: Any = None, ns: str = "web") -> Any:
    return TargetContext(
        kube,
        Owner(ns, "web", "uid"),
        Digester(b"k" * 32),
        previous or {},
        secrets.read,
        egress=EgressPolicy(allow_local=True),  # the test bed's OpenBao listens on loopback
    )


def _raw(testbed: dict[str, str], path: str, **extra: Any) -> dict[str, Any]:
    return {
        "address": testbed["VAULT_ADDR"],
        "path": path,
        "auth": {"tokenSecretRef": {"name": "vault-token"}},
        **extra,
    }


async def _sync(
    raw: Mapping[str, Any], kv: Mapping[str, str], context: Any, files: Mapping[str, bytes] | None = None
) -> tuple[Plan, Any]:
    kind = hashicorp_vault.KIND
    spec = kind.parse(raw, "spec.targets[0].hashicorpVault")
    desired = kind.desired(Vault(kv=kv, files=files or {}), parse_selection(raw, "x"), spec)
    target = await kind.connect(spec, with_grant(context, kind.name, raw))
    plan = await target.plan(desired)
    if plan.changed:
        await target.apply(plan, desired)
    return plan, target


def _meta(root: Any, path: str, mount: str = "secret") -> dict[str, Any]:
    return dict(root.secrets.kv.v2.read_secret_metadata(path, mount_point=mount)["data"])


def _data(root: Any, path: str, mount: str = "secret") -> dict[str, Any]:
    return dict(
        root.secrets.kv.v2.read_secret_version(path, mount_point=mount, raise_on_deleted_version=True)["data"]["data"]
    )


@pytest.fixture
def secrets(token: str) -> Secrets:
    return Secrets({("vault-token", "token"): token})


MARKER = {"managed-by": "vaultbundle", "vaultbundle-owner": "web/web"}


async def test_create_then_idle_then_one_new_version_per_change(
    testbed: dict[str, str], root: Any, secrets: Secrets
) -> None:
    path = _unique("vbtest/app")
    raw = _raw(testbed, path, files={"include": ["conf/*"]})
    kv = {"DB_PASSWORD": CANARY, "API_KEY": "k1"}
    files = {"conf/app.json": b'{"a": 1}'}

    plan, target = await _sync(raw, kv, _context(secrets), files)
    assert sorted(plan.create) == ["API_KEY", "DB_PASSWORD", "conf_app.json"] and not plan.update and not plan.delete
    meta = _meta(root, path)
    assert meta["current_version"] == 1
    assert meta["custom_metadata"] == MARKER
    assert _data(root, path) == {"DB_PASSWORD": CANARY, "API_KEY": "k1", "conf_app.json": '{"a": 1}'}
    assert target.status_extra() == {}  # KV v2 keeps ownership in Vault, not in status
    assert CANARY not in target.describe()

    plan, _ = await _sync(raw, kv, _context(secrets), files)  # nothing changed: no write, no new version
    assert not plan.changed and plan.unchanged == 3
    assert _meta(root, path)["current_version"] == 1

    plan, _ = await _sync(raw, {**kv, "API_KEY": "k2"}, _context(secrets), files)
    assert plan.update == ["API_KEY"] and not plan.create and not plan.delete
    meta = _meta(root, path)
    assert meta["current_version"] == 2 and meta["custom_metadata"] == MARKER
    assert _data(root, path) == {"DB_PASSWORD": CANARY, "API_KEY": "k2", "conf_app.json": '{"a": 1}'}


async def test_prune_removes_keys_that_left_and_prune_false_keeps_them(
    testbed: dict[str, str], root: Any, secrets: Secrets
) -> None:
    path = _unique("vbtest/prune")
    await _sync(_raw(testbed, path), {"A": "1", "B": "2", "C": "3"}, _context(secrets))

    plan, _ = await _sync(_raw(testbed, path, prune=False), {"A": "1", "B": "2"}, _context(secrets))
    assert not plan.changed  # C is kept: nothing to write
    assert _data(root, path) == {"A": "1", "B": "2", "C": "3"}

    plan, _ = await _sync(_raw(testbed, path, prune=False), {"A": "x"}, _context(secrets))
    assert plan.update == ["A"] and not plan.delete
    assert _data(root, path) == {"A": "x", "B": "2", "C": "3"}

    plan, _ = await _sync(_raw(testbed, path), {"A": "x"}, _context(secrets))
    assert sorted(plan.delete) == ["B", "C"] and plan.unchanged == 1
    assert _data(root, path) == {"A": "x"}
    assert _meta(root, path)["current_version"] == 3


async def test_unmarked_secret_is_refused_unless_adopt(testbed: dict[str, str], root: Any, secrets: Secrets) -> None:
    path = _unique("vbtest/foreign")
    root.secrets.kv.v2.create_or_update_secret(path, {"OLD": "o", "A": "1"}, mount_point="secret")
    root.secrets.kv.v2.update_metadata(path, custom_metadata={"team": "payments"}, mount_point="secret")

    with pytest.raises(TargetError) as refused:
        await _sync(_raw(testbed, path), {"A": "1"}, _context(secrets))
    assert refused.value.reason == "SecretNotOwned" and "adopt" in str(refused.value)
    assert _meta(root, path)["current_version"] == 1  # untouched

    # adopt: true alone is not enough: the secret's owner opts in with custom_metadata naming this VaultBundle
    with pytest.raises(TargetError, match=r"does not opt in.*custom_metadata vaultbundle-adopt=web\.web"):
        await _sync(_raw(testbed, path, adopt=True), {"A": "1"}, _context(secrets))
    assert _meta(root, path)["current_version"] == 1
    consent = {"team": "payments", ADOPT_KEY: "web.web"}
    root.secrets.kv.v2.update_metadata(path, custom_metadata=consent, mount_point="secret")

    # adopting never reads the data (no equality oracle, no key names of a secret not ours): every key is written
    plan, _ = await _sync(_raw(testbed, path, adopt=True), {"A": "1"}, _context(secrets))
    assert plan.metadata and plan.update == ["A"] and plan.delete == [] and plan.unchanged == 0
    meta = _meta(root, path)
    assert meta["custom_metadata"] == {**consent, **MARKER}  # others' custom_metadata stays
    assert meta["current_version"] == 2 and _data(root, path) == {"A": "1"}  # prune: OLD is gone

    # once marked, adopt is no longer needed; another VaultBundle is refused even with adopt
    plan, _ = await _sync(_raw(testbed, path), {"A": "1"}, _context(secrets))
    assert not plan.changed
    with pytest.raises(TargetError) as other:
        await _sync(_raw(testbed, path, adopt=True), {"A": "1"}, _context(secrets, ns="other"))
    assert other.value.reason == "SecretNotOwned" and "managed by another VaultBundle" in str(other.value)
    assert "web/web" not in str(other.value)  # the other tenant's VaultBundle is not named (security review L2)


async def test_adopting_never_compares_values(testbed: dict[str, str], root: Any, secrets: Secrets) -> None:
    """Behaviour changed on purpose (issue #13 C1 oracle): identical content is no longer detected while adopting,
    because that comparison told a dry run whether a guess equals a secret the VaultBundle does not own. With
    prune: false the data is read only to keep the other keys, and still not compared."""
    path = _unique("vbtest/same")
    root.secrets.kv.v2.create_or_update_secret(path, {"A": "1", "KEEP": "k"}, mount_point="secret")
    root.secrets.kv.v2.update_metadata(path, custom_metadata={ADOPT_KEY: "web.web"}, mount_point="secret")
    plan, _ = await _sync(_raw(testbed, path, adopt=True, prune=False), {"A": "1"}, _context(secrets))
    assert plan.metadata and plan.update == ["A"] and plan.unchanged == 0 and not plan.delete
    meta = _meta(root, path)
    assert meta["current_version"] == 2 and meta["custom_metadata"] == {ADOPT_KEY: "web.web", **MARKER}
    assert _data(root, path) == {"A": "1", "KEEP": "k"}


async def test_deleted_current_version_counts_as_empty(testbed: dict[str, str], root: Any, secrets: Secrets) -> None:
    path = _unique("vbtest/deleted")
    await _sync(_raw(testbed, path), {"A": "1"}, _context(secrets))
    root.secrets.kv.v2.delete_latest_version_of_secret(path, mount_point="secret")
    plan, _ = await _sync(_raw(testbed, path), {"A": "1"}, _context(secrets))
    assert plan.create == ["A"]
    assert _meta(root, path)["current_version"] == 2 and _data(root, path) == {"A": "1"}


async def test_concurrent_write_between_plan_and_apply_is_a_conflict(
    testbed: dict[str, str], root: Any, secrets: Secrets
) -> None:
    path = _unique("vbtest/cas")
    raw = _raw(testbed, path)
    await _sync(raw, {"A": "1"}, _context(secrets))
    kind = hashicorp_vault.KIND
    spec = kind.parse(raw, "t")
    desired = {"A": b"2"}
    target = await kind.connect(spec, with_grant(_context(secrets), kind.name, raw))
    plan = await target.plan(desired)
    root.secrets.kv.v2.create_or_update_secret(path, {"A": "someone-else"}, mount_point="secret")  # version 2
    with pytest.raises(TargetError) as conflict:
        await target.apply(plan, desired)
    assert conflict.value.reason == "Conflict" and conflict.value.transient
    assert Retry(Backoff(base=1.0, cap=1.0)).next_delay(conflict.value.reason, 3600.0) <= 1.0  # retried soon
    assert _data(root, path) == {"A": "someone-else"} and _meta(root, path)["current_version"] == 2

    # a create races too: cas=0 fails when someone else created the secret meanwhile
    path2 = _unique("vbtest/cas-create")
    target = await kind.connect(replace(spec, path=path2), with_grant(_context(secrets), kind.name, raw))
    plan = await target.plan(desired)
    root.secrets.kv.v2.create_or_update_secret(path2, {"A": "first"}, mount_point="secret")
    with pytest.raises(TargetError) as raced:
        await target.apply(plan, desired)
    assert raced.value.reason == "Conflict" and _data(root, path2) == {"A": "first"}


async def test_wrong_token_is_auth_failed_and_never_echoes_it(testbed: dict[str, str]) -> None:
    secrets = Secrets({("vault-token", "token"): CANARY})
    with pytest.raises(TargetError) as failed:
        await _sync(_raw(testbed, _unique("vbtest/x")), {"A": "1"}, _context(secrets))
    assert failed.value.reason == "AuthFailed" and CANARY not in str(failed.value)


async def test_missing_mount_and_wrong_kv_version(testbed: dict[str, str], root: Any, secrets: Secrets) -> None:
    with pytest.raises(TargetError) as missing:
        await _sync(_raw(testbed, "vbtest/x", mount="no-such-mount"), {"A": "1"}, _context(secrets))
    assert missing.value.reason == "NotFound"
    with pytest.raises(TargetError) as mismatch:
        await _sync(_raw(testbed, "vbtest/x", mount="kv1-vbtest"), {"A": "1"}, _context(secrets))
    assert mismatch.value.reason == "KVVersionMismatch" and not mismatch.value.transient
    assert Retry(Backoff(base=1.0, cap=1.0)).next_delay(mismatch.value.reason, 3600.0) == 3600.0  # at refresh


async def test_policy_without_rights_is_forbidden(testbed: dict[str, str], secrets: Secrets) -> None:
    with pytest.raises(TargetError) as denied:  # the policy covers vbtest/* only
        await _sync(_raw(testbed, _unique("elsewhere/app")), {"A": CANARY}, _context(secrets))
    assert denied.value.reason == "Forbidden" and CANARY not in str(denied.value)


async def test_kv_v1_ownership_lives_in_status(testbed: dict[str, str], root: Any, secrets: Secrets) -> None:
    path = _unique("vbtest/v1")
    raw = _raw(testbed, path, mount="kv1-vbtest", kvVersion=1)
    plan, target = await _sync(raw, {"A": "1", "B": "2"}, _context(secrets))
    assert sorted(plan.create) == ["A", "B"]
    assert root.secrets.kv.v1.read_secret(path, mount_point="kv1-vbtest")["data"] == {"A": "1", "B": "2"}
    status = target.status_extra()
    assert status["remoteOwned"] is True and status["remote"].endswith(f"kv1-vbtest/{path}")

    plan, target = await _sync(raw, {"A": "1", "B": "2"}, _context(secrets, previous=status))
    assert not plan.changed and target.status_extra() == status

    plan, _ = await _sync(raw, {"A": "9"}, _context(secrets, previous=status))
    assert plan.update == ["A"] and plan.delete == ["B"]
    assert root.secrets.kv.v1.read_secret(path, mount_point="kv1-vbtest")["data"] == {"A": "9"}

    with pytest.raises(TargetError) as refused:  # no status record: not ours
        await _sync(raw, {"A": "9"}, _context(secrets))
    assert refused.value.reason == "SecretNotOwned"
    plan, target = await _sync({**raw, "adopt": True}, {"A": "9"}, _context(secrets))
    assert plan.metadata and not plan.create and target.status_extra()["remoteOwned"] is True


async def test_approle_login(testbed: dict[str, str], root: Any) -> None:
    mount = _unique("approle")
    root.sys.enable_auth_method("approle", path=mount)
    root.auth.approle.create_or_update_approle("web", token_policies=["vbtest"], token_ttl="5m", mount_point=mount)
    role_id = root.auth.approle.read_role_id("web", mount_point=mount)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("web", mount_point=mount)["data"]["secret_id"]
    secrets = Secrets({("approle", "role-id"): role_id, ("approle", "secret-id"): secret_id})
    auth = {
        "appRole": {"mount": mount, "roleIdSecretRef": {"name": "approle"}, "secretIdSecretRef": {"name": "approle"}}
    }
    path = _unique("vbtest/approle")
    plan, _ = await _sync(_raw(testbed, path, auth=auth), {"A": "1"}, _context(secrets))
    assert plan.create == ["A"] and _data(root, path) == {"A": "1"}

    bad = Secrets({("approle", "role-id"): role_id, ("approle", "secret-id"): CANARY})
    with pytest.raises(TargetError) as failed:
        await _sync(_raw(testbed, path, auth=auth), {"A": "1"}, _context(bad))
    assert failed.value.reason == "AuthFailed" and CANARY not in str(failed.value)


@pytest.fixture
def kube_namespace(testbed: dict[str, str]) -> Iterator[tuple[Any, str]]:
    from kubernetes import client

    from vaultbundle.kube import Kube, load_api_client

    api_client = load_api_client(testbed["KUBECONFIG"])
    kube = Kube(api_client)
    name = _unique("vb-vault")
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield kube, name
    finally:
        kube.core.delete_namespace(name)
        api_client.close()


async def test_kubernetes_login_with_token_request(
    testbed: dict[str, str], root: Any, kube_namespace: tuple[Any, str]
) -> None:
    from kubernetes import client

    kube, namespace = kube_namespace
    core = kube.core
    for sa, notes in (("vault-writer", {"vaultbundle.io/token-audiences": "vault"}), ("not-opted-in", None)):
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa, annotations=notes))
        )
    mount = testbed["VAULT_KUBERNETES_AUTH_MOUNT"]
    role = _unique("vb-role")
    root.auth.kubernetes.create_role(
        role,
        bound_service_account_names=["vault-writer", "not-opted-in"],
        bound_service_account_namespaces=[namespace],
        audience="vault",
        policies=["vbtest"],
        ttl="5m",
        mount_point=mount,
    )
    auth = {"kubernetes": {"role": role, "mount": mount, "serviceAccountName": "vault-writer"}}
    path = _unique("vbtest/k8s")

    def token_requests() -> float:  # the operator's own count of TokenRequests sent
        sample = metrics.REGISTRY.get_sample_value("vaultbundle_kubernetes_writes_total", {"operation": "create_token"})
        return sample or 0.0

    requested = token_requests()
    context = _context(Secrets({}), kube=kube, ns=namespace)
    plan, target = await _sync(_raw(testbed, path, auth=auth), {"A": "1"}, context)
    assert plan.create == ["A"] and _data(root, path) == {"A": "1"}
    assert _meta(root, path)["custom_metadata"]["vaultbundle-owner"] == f"{namespace}/web"
    assert token_requests() == requested + 1
    assert "vault-writer" in (await _token_subject(target))

    # the ServiceAccount did not opt in: no token is even requested
    with pytest.raises(TargetError) as refused:
        auth_other = {"kubernetes": {**auth["kubernetes"], "serviceAccountName": "not-opted-in"}}
        await _sync(_raw(testbed, path, auth=auth_other), {"A": "1"}, context)
    assert refused.value.reason == "Forbidden" and "vaultbundle.io/token-audiences" in str(refused.value)
    assert token_requests() == requested + 1

    # a role the ServiceAccount is not bound to
    with pytest.raises(TargetError) as wrong_role:
        auth_bad = {"kubernetes": {**auth["kubernetes"], "role": "no-such-role"}}
        await _sync(_raw(testbed, path, auth=auth_bad), {"A": "1"}, context)
    assert wrong_role.value.reason == "AuthFailed"

    with pytest.raises(TargetError) as missing:
        auth_missing = {"kubernetes": {**auth["kubernetes"], "serviceAccountName": "absent"}}
        await _sync(_raw(testbed, path, auth=auth_missing), {"A": "1"}, context)
    assert missing.value.reason == "AuthFailed" and "absent" in str(missing.value)


async def _token_subject(target: Any) -> str:
    """The Vault token we logged in with belongs to the ServiceAccount (its metadata says so)."""
    import asyncio

    info = await asyncio.to_thread(target.client.auth.token.lookup_self)
    return str(info["data"]["meta"]["service_account_name"])


async def test_ca_bundle_is_used_for_tls(testbed: dict[str, str], secrets: Secrets) -> None:
    """Against a TLS server of the test bed (not a Vault): without our CA the handshake fails, with it it works."""
    address = testbed["AZURE_KEYVAULT_URL"]
    with open(testbed["TESTBED_CA_FILE"]) as handle:
        pem = handle.read()
    with pytest.raises(TargetError) as untrusted:
        await _sync(_raw(testbed, "vbtest/x", address=address), {"A": "1"}, _context(secrets))
    assert untrusted.value.reason == "Unavailable" and "TLS" in str(untrusted.value)
    with_ca = Secrets({**secrets.values, ("vault-ca", "ca.crt"): pem})
    with pytest.raises(TargetError) as handshake_ok:  # TLS passes; the non-Vault server then refuses the login
        await _sync(
            _raw(testbed, "vbtest/x", address=address, caBundleSecretRef={"name": "vault-ca"}),
            {"A": "1"},
            _context(with_ca),
        )
    assert handshake_ok.value.reason == "AuthFailed"


def test_invalid_path_is_rejected_at_parse(testbed: dict[str, str]) -> None:
    for path in ("/apps/web", "apps/../web", "apps//web", "apps/web/", ""):
        with pytest.raises(SpecError, match=r"spec\.targets\[0\]\.hashicorpVault\.path"):
            hashicorp_vault.KIND.parse(_raw(testbed, path), "spec.targets[0].hashicorpVault")


def test_schema_fragment_is_accepted_and_enforced_by_the_apiserver(testbed: dict[str, str]) -> None:
    """The CRD's hashicorpVault schema compiles (CEL included) in a throwaway CRD and rejects bad specs."""
    import time
    from pathlib import Path

    import yaml
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    crd_file = Path(__file__).parents[2] / "crds" / "vaultbundle.io_vaultbundles.yaml"
    schema = yaml.safe_load(crd_file.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    kind_schema = schema["properties"]["spec"]["properties"]["targets"]["items"]["properties"]["hashicorpVault"]
    fragment = {"hashicorpVault": kind_schema}
    group, plural = "vaultschema.vaultbundle.test", "vaultschemas"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": "vaultschema", "kind": "VaultSchema"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "properties": fragment}},
                        }
                    },
                }
            ],
        },
    }
    with config.new_client_from_config(config_file=testbed["KUBECONFIG"]) as api:
        ext = client.ApiextensionsV1Api(api)
        try:
            ext.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 409:
                raise
            ext.patch_custom_resource_definition(crd["metadata"]["name"], crd)
        objects = client.CustomObjectsApi(api)

        def create(body: dict[str, Any]) -> dict[str, Any]:
            obj = {
                "apiVersion": f"{group}/v1",
                "kind": "VaultSchema",
                "metadata": {"generateName": "s-"},
                "spec": {"hashicorpVault": body},
            }
            deadline = time.monotonic() + 20
            while True:
                try:
                    created = objects.create_namespaced_custom_object(group, "v1", "default", plural, obj)
                    return dict(created["spec"]["hashicorpVault"])
                except ApiException as exc:
                    if exc.status != 404 or time.monotonic() > deadline:  # 404: CRD not served yet
                        raise
                    time.sleep(0.2)

        good = create(
            {"address": "https://vault:8200", "path": "apps/web", "auth": {"tokenSecretRef": {"name": "vault-token"}}}
        )
        assert good["mount"] == "secret" and good["kvVersion"] == 2 and good["prune"] is True
        assert good["auth"]["tokenSecretRef"]["key"] == "token"
        assert hashicorp_vault.KIND.parse(good, "x").mount == "secret"  # what the apiserver stores parses
        bad_specs = [
            ({"path": "apps/../web"}, "without '.' or '..' segments"),
            ({"path": "/apps"}, "path"),
            ({"auth": {}}, "exactly one of"),
            (
                {
                    "auth": {
                        "tokenSecretRef": {"name": "t"},
                        "appRole": {"roleIdSecretRef": {"name": "r"}, "secretIdSecretRef": {"name": "s"}},
                    }
                },
                "exactly one of",
            ),
            ({"kvVersion": 3}, "kvVersion"),
            ({"address": "vault:8200"}, "address"),
            ({"naming": {"underscoresToDashes": True, "dashesToUnderscores": True}}, "exclude each other"),
        ]
        for change, needle in bad_specs:
            body = {"address": "https://vault:8200", "path": "apps/web", "auth": {"tokenSecretRef": {"name": "t"}}}
            with pytest.raises(ApiException) as rejected:
                create({**body, **change})
            assert rejected.value.status == 422 and needle in str(rejected.value.body), change
