"""awsSecretsManager end to end through boto3 against a real HTTP server (moto, in this process).

Every test drives the kind like reconcile does: parse -> desired -> connect -> plan -> apply. Writes are
observed twice: from the store (version ids, tags, values) and from the target's own client (a botocore
`before-call` hook records every API operation it sends).
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.kit.kube import MemoryKube
from vaultbundle.digest import Digester
from vaultbundle.egress import EgressPolicy
from vaultbundle.errors import PolicyDeniedError, SpecError, TargetError
from vaultbundle.selection import SelectionError
from vaultbundle.spec import parse_selection
from vaultbundle.stores import SESSION_TAG_KEYS, Grant, role_session_name
from vaultbundle.targets import aws_identity, grants
from vaultbundle.targets.aws_secrets_manager import KIND, OWNER_TAG, AwsSecretsManagerTarget
from vaultbundle.targets.base import Owner, Plan, TargetContext
from vaultbundle.targets.ownership import ADOPT_ANNOTATION, MANAGED_BY_KEY
from vaultbundle.vault import Vault

REGION = "us-east-1"
OWNER = Owner("ns", "web", "5f1c2d3e-0000-4a6b-9c8d-7e6f5a4b3c2d")
PATH = "spec.targets[0].awsSecretsManager"
CREDENTIALS = {("aws-creds", "access-key-id"): "testing", ("aws-creds", "secret-access-key"): "testing-secret"}
WRITES = {"CreateSecret", "PutSecretValue", "UpdateSecret", "TagResource", "DeleteSecret", "RestoreSecret"}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def admin(endpoint: str) -> Any:
    """A plain client for preparing and inspecting the store, on a fresh moto state."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
    return boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="admin",
        aws_secret_access_key="admin-secret",
    )


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}/"


async def read_secret(name: str, key: str) -> str:
    return CREDENTIALS[(name, key)]


# Each target's status entry between syncs, as reconcile keeps it (keyed by namePrefix: one target per prefix).
STATUS: dict[str, dict[str, Any]] = {}


def context(previous: dict[str, Any], kube: MemoryKube, grant: Grant | None) -> TargetContext:
    return TargetContext(
        kube=kube,
        owner=OWNER,
        digester=Digester(b"k" * 32),
        previous=previous,
        read_secret=read_secret,
        grant=grant,
        egress=EgressPolicy(allow_local=True),  # moto listens on loopback
    )


class Run:
    """One sync of one target: the plan and the API operations its client sent (name, params)."""

    def __init__(self) -> None:
        self.plan = Plan()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @property
    def writes(self) -> list[str]:
        return [name for name, _ in self.calls if name in WRITES]


async def sync(raw: dict[str, Any], vault: Vault, kube: MemoryKube | None = None) -> Run:
    """Like fanout: the store policy first (authorize, cap, scope), then connect, plan, apply."""
    kube = kube or MemoryKube()
    grant = await grants.authorize_target(kube, OWNER, KIND.name, raw)
    spec = grants.capped(KIND.parse(raw, PATH), grant)
    desired = KIND.desired(vault, parse_selection(raw, PATH), spec)
    key = str(raw.get("namePrefix", ""))
    target = grants.scoped(await KIND.connect(spec, context(STATUS.get(key, {}), kube, grant)), grant)
    inner = target.inner if isinstance(target, grants.ScopedTarget) else target
    assert isinstance(inner, AwsSecretsManagerTarget)
    assert inner.describe().startswith(("AWS Secrets Manager us-east-1", "AWS secret "))
    run = Run()

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        run.calls.append((model.name, params))

    inner.client.meta.events.register("before-parameter-build.secrets-manager.*", record)
    run.plan = await target.plan(desired)
    if run.plan.changed:
        await target.apply(run.plan, desired)
    STATUS[key] = target.status_extra()
    return run


def spec(endpoint: str, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "region": REGION,
        "endpoint": endpoint,
        "namePrefix": prefix,
        "credentialsSecretRef": {"name": "aws-creds"},
        **extra,
    }


def versions(admin: Any, name: str) -> list[str]:
    return sorted(v["VersionId"] for v in admin.list_secret_version_ids(SecretId=name)["Versions"])


def tags(admin: Any, name: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in admin.describe_secret(SecretId=name).get("Tags") or []}


async def test_create_then_idle_then_update_one(endpoint: str, admin: Any, prefix: str) -> None:
    raw = spec(
        endpoint,
        prefix,
        tags={"team": "web"},
        kmsKeyId="alias/web",
        naming={"case": "Lower", "underscoresToDashes": True},
        files={"include": ["certs/*"]},
    )
    vault = Vault(kv={"DB_PASSWORD": "s3cret", "API_KEY": "k1"}, files={"certs/ca.der": b"\xff\x00\x81binary"})
    names = [f"{prefix}api-key", f"{prefix}certs-ca.der", f"{prefix}db-password"]

    first = await sync(raw, vault)
    assert sorted(first.plan.create) == names and not first.plan.update
    assert first.writes == ["CreateSecret"] * 3
    for name in names:
        assert tags(admin, name) == {"team": "web", MANAGED_BY_KEY: "vaultbundle", OWNER_TAG: "ns/web"}
        assert admin.describe_secret(SecretId=name)["KmsKeyId"] == "alias/web"
    assert admin.get_secret_value(SecretId=f"{prefix}db-password")["SecretString"] == "s3cret"
    binary = admin.get_secret_value(SecretId=f"{prefix}certs-ca.der")
    assert "SecretString" not in binary and binary["SecretBinary"] == b"\xff\x00\x81binary"
    before = {name: versions(admin, name) for name in names}

    second = await sync(raw, vault)  # unchanged bundle: reads only, no new version anywhere
    assert not second.plan.changed and second.plan.unchanged == 3
    assert second.writes == []
    assert {name: versions(admin, name) for name in names} == before

    changed = Vault(kv={"DB_PASSWORD": "rotated", "API_KEY": "k1"}, files=vault.files)
    third = await sync(raw, changed)
    assert third.plan.update == [f"{prefix}db-password"] and not third.plan.create and third.plan.unchanged == 2
    assert third.writes == ["UpdateSecret"]  # kmsKeyId set: the value change also pins the key
    after = {name: versions(admin, name) for name in names}
    assert len(after[f"{prefix}db-password"]) == 2 and set(before[f"{prefix}db-password"]) < set(
        after[f"{prefix}db-password"]
    )
    assert {n: v for n, v in after.items() if n != f"{prefix}db-password"} == {
        n: v for n, v in before.items() if n != f"{prefix}db-password"
    }
    assert admin.get_secret_value(SecretId=f"{prefix}db-password")["SecretString"] == "rotated"


async def test_without_kms_a_change_is_one_put(endpoint: str, admin: Any, prefix: str) -> None:
    raw = spec(endpoint, prefix)
    await sync(raw, Vault(kv={"A": "1", "B": "2"}))
    run = await sync(raw, Vault(kv={"A": "1", "B": "3"}))
    assert run.writes == ["PutSecretValue"] and run.plan.update == [f"{prefix}B"]
    assert len(versions(admin, f"{prefix}B")) == 2 and len(versions(admin, f"{prefix}A")) == 1


async def test_prune_deletes_only_our_secrets_and_restores_them(endpoint: str, admin: Any, prefix: str) -> None:
    raw = spec(endpoint, prefix)
    await sync(raw, Vault(kv={"A": "1", "B": "2"}))
    admin.create_secret(Name=f"{prefix}THEIRS", SecretString="x")  # no tags: not ours
    admin.create_secret(
        Name=f"{prefix}OTHER", SecretString="y", Tags=[{"Key": OWNER_TAG, "Value": "ns/another"}]
    )  # another VaultBundle's

    kept = await sync(raw, Vault(kv={"A": "1"}))  # prune defaults to false: B stays
    assert kept.plan.delete == [] and kept.writes == []
    assert "DeletedDate" not in admin.describe_secret(SecretId=f"{prefix}B")

    pruned = await sync({**raw, "prune": True}, Vault(kv={"A": "1"}))
    assert pruned.plan.delete == [f"{prefix}B"]
    deletes = [params for name, params in pruned.calls if name == "DeleteSecret"]
    assert len(deletes) == 1 and deletes[0]["RecoveryWindowInDays"] == 7
    assert "ForceDeleteWithoutRecovery" not in deletes[0]
    assert "DeletedDate" in admin.describe_secret(SecretId=f"{prefix}B")  # scheduled, recoverable
    for name in ("A", "THEIRS", "OTHER"):
        assert "DeletedDate" not in admin.describe_secret(SecretId=f"{prefix}{name}")

    back = await sync({**raw, "prune": True}, Vault(kv={"A": "1", "B": "two"}))  # B returns: restore + update
    assert back.plan.create == [f"{prefix}B"] and back.plan.delete == []
    assert back.writes == ["RestoreSecret", "PutSecretValue"]
    assert "DeletedDate" not in admin.describe_secret(SecretId=f"{prefix}B")
    assert admin.get_secret_value(SecretId=f"{prefix}B")["SecretString"] == "two"

    again = await sync({**raw, "prune": True}, Vault(kv={"A": "1", "B": "two"}))
    assert again.writes == [] and not again.plan.changed


async def test_two_targets_of_one_vaultbundle_never_prune_each_other(endpoint: str, admin: Any, prefix: str) -> None:
    """Nested prefixes in one region, both with prune: each deletes only what it wrote itself."""
    outer, inner = spec(endpoint, prefix, prune=True), spec(endpoint, f"{prefix}db/", prune=True)
    await sync(outer, Vault(kv={"A": "1", "B": "2"}))
    await sync(inner, Vault(kv={"X": "3"}))
    again = await sync(outer, Vault(kv={"A": "1", "B": "2"}))  # {prefix}db/X is ours and under the prefix
    assert again.plan.delete == [] and again.writes == []
    assert STATUS[prefix]["managedSecrets"] == [f"{prefix}A", f"{prefix}B"]
    assert STATUS[f"{prefix}db/"]["managedSecrets"] == [f"{prefix}db/X"]
    shrunk = await sync(outer, Vault(kv={"A": "1"}))
    assert shrunk.plan.delete == [f"{prefix}B"]
    assert "DeletedDate" not in admin.describe_secret(SecretId=f"{prefix}db/X")
    inner_again = await sync(inner, Vault(kv={"X": "3"}))
    assert inner_again.plan.delete == [] and not inner_again.plan.changed


async def test_prune_after_an_upgrade_without_status_books(endpoint: str, admin: Any, prefix: str) -> None:
    """Status from before `managedSecrets` existed: the first sync records what this target holds, so a key
    that leaves the bundle afterwards is pruned; nothing is deleted on the strength of the owner tag alone."""
    raw = spec(endpoint, prefix, prune=True)
    await sync(raw, Vault(kv={"A": "1", "B": "2"}))
    STATUS[prefix] = {}  # as an operator version without the books left it
    first = await sync(raw, Vault(kv={"A": "1"}))
    assert first.plan.delete == [] and STATUS[prefix]["managedSecrets"] == [f"{prefix}A"]
    assert "DeletedDate" not in admin.describe_secret(SecretId=f"{prefix}B")  # unknown to the books: kept
    await sync(raw, Vault(kv={"A": "1", "C": "3"}))
    later = await sync(raw, Vault(kv={"A": "1"}))
    assert later.plan.delete == [f"{prefix}C"]


async def test_force_delete_without_recovery(endpoint: str, admin: Any, prefix: str) -> None:
    raw = spec(endpoint, prefix, prune=True, forceDeleteWithoutRecovery=True)
    await sync(raw, Vault(kv={"A": "1", "B": "2"}))
    run = await sync(raw, Vault(kv={"A": "1"}))
    deletes = [params for name, params in run.calls if name == "DeleteSecret"]
    assert len(deletes) == 1 and deletes[0]["ForceDeleteWithoutRecovery"] is True
    assert [s["Name"] for s in admin.list_secrets(IncludePlannedDeletion=True)["SecretList"]] == [f"{prefix}A"]


async def test_unowned_secret_is_left_alone_unless_adopt(endpoint: str, admin: Any, prefix: str) -> None:
    admin.create_secret(Name=f"{prefix}DB", SecretString="theirs", Tags=[{"Key": "team", "Value": "ops"}])
    raw = spec(endpoint, prefix)
    with pytest.raises(TargetError) as refused:
        await sync(raw, Vault(kv={"DB": "ours", "NEW": "n"}))
    assert refused.value.reason == "SecretNotOwned" and f"{prefix}DB" in str(refused.value)
    assert "theirs" not in str(refused.value) and "ours" not in str(refused.value)
    assert admin.get_secret_value(SecretId=f"{prefix}DB")["SecretString"] == "theirs"
    assert [s["Name"] for s in admin.list_secrets()["SecretList"]] == [f"{prefix}DB"]  # NEW not created either

    # adopt: true alone is not enough: the secret's owner must opt in with a tag naming this VaultBundle
    with pytest.raises(TargetError, match=r"does not opt in.*vaultbundle\.io/adopt=ns\.web") as unconsented:
        await sync({**raw, "adopt": True}, Vault(kv={"DB": "ours", "NEW": "n"}))
    assert unconsented.value.reason == "SecretNotOwned"
    assert admin.get_secret_value(SecretId=f"{prefix}DB")["SecretString"] == "theirs"
    admin.tag_resource(SecretId=f"{prefix}DB", Tags=[{"Key": ADOPT_ANNOTATION, "Value": "ns.other"}])
    with pytest.raises(TargetError, match="does not opt in"):  # an opt-in for another VaultBundle is no opt-in
        await sync({**raw, "adopt": True}, Vault(kv={"DB": "ours", "NEW": "n"}))

    admin.tag_resource(SecretId=f"{prefix}DB", Tags=[{"Key": ADOPT_ANNOTATION, "Value": "ns.web"}])
    adopted = await sync({**raw, "adopt": True}, Vault(kv={"DB": "ours", "NEW": "n"}))
    assert adopted.plan.update == [f"{prefix}DB"] and adopted.plan.create == [f"{prefix}NEW"]
    assert admin.get_secret_value(SecretId=f"{prefix}DB")["SecretString"] == "ours"
    assert tags(admin, f"{prefix}DB") == {
        "team": "ops",
        ADOPT_ANNOTATION: "ns.web",
        MANAGED_BY_KEY: "vaultbundle",
        OWNER_TAG: "ns/web",
    }

    # once adopted it is ours: adopt can be switched off again
    assert (await sync(raw, Vault(kv={"DB": "ours", "NEW": "n"}))).writes == []


async def test_adopting_never_reads_or_compares_the_value(endpoint: str, admin: Any, prefix: str) -> None:
    """C1 oracle: a dry run with adopt must not tell whether a guess equals a secret the VaultBundle does not own.
    An adopted secret's value is never fetched; the plan says `update` whatever it holds (behaviour changed on
    purpose: an equal value now costs one new version instead of acting as an equality oracle)."""
    consent = [{"Key": ADOPT_ANNOTATION, "Value": "ns.web"}]
    admin.create_secret(Name=f"{prefix}SAME", SecretString="guess", Tags=consent)
    admin.create_secret(Name=f"{prefix}DIFF", SecretString="other", Tags=consent)
    target = KIND.parse(spec(endpoint, prefix, adopt=True), PATH)
    tenant_grant = Grant(KIND.name, None, None, None)  # no storeRef: the target's own credentials
    connected = await KIND.connect(target, context({}, MemoryKube(), tenant_grant))
    assert isinstance(connected, AwsSecretsManagerTarget)
    calls: list[str] = []
    connected.client.meta.events.register(
        "before-parameter-build.secrets-manager.*", lambda model, **_: calls.append(model.name)
    )
    plan = await connected.plan({f"{prefix}SAME": b"guess", f"{prefix}DIFF": b"guess"})  # plan only: a dry run
    assert plan.update == [f"{prefix}DIFF", f"{prefix}SAME"] and plan.unchanged == 0
    assert "GetSecretValue" not in calls and calls.count("DescribeSecret") == 2


async def test_another_vaultbundles_secret_is_never_taken(endpoint: str, admin: Any, prefix: str) -> None:
    admin.create_secret(Name=f"{prefix}DB", SecretString="x", Tags=[{"Key": OWNER_TAG, "Value": "other/app"}])
    with pytest.raises(TargetError) as refused:
        await sync(spec(endpoint, prefix, adopt=True), Vault(kv={"DB": "ours"}))
    assert refused.value.reason == "SecretNotOwned" and "managed by another VaultBundle" in str(refused.value)
    assert "other/app" not in str(refused.value)  # the other tenant's VaultBundle is not named (security review L2)
    assert admin.get_secret_value(SecretId=f"{prefix}DB")["SecretString"] == "x"


async def test_invalid_names_and_collisions_rejected_before_any_write(endpoint: str, admin: Any, prefix: str) -> None:
    raw = spec(endpoint, prefix, naming={"underscoresToDashes": True})
    vault = Vault(kv={"GOOD": "1", "bad key!": "2", "A_B": "3", "A-B": "4"})
    with pytest.raises(SelectionError) as rejected:
        KIND.desired(vault, parse_selection(raw, PATH), KIND.parse(raw, PATH))
    message = str(rejected.value)
    assert "'bad key!'" in message and "'A-B' and 'A_B' both map to" in message
    assert "1" not in message.replace("A-B", "").replace(prefix, "")  # no values
    assert admin.list_secrets()["SecretList"] == []


async def test_json_mode_round_trip(endpoint: str, admin: Any, prefix: str) -> None:
    raw = spec(endpoint, prefix, mode="Json", name="app/config", keys={"exclude": ["SKIP"]})
    vault = Vault(kv={"DB_PASSWORD": "p", "URL": "https://x/ü", "SKIP": "no"})
    first = await sync(raw, vault)
    assert first.plan.create == [f"{prefix}app/config"] and first.writes == ["CreateSecret"]
    stored = admin.get_secret_value(SecretId=f"{prefix}app/config")["SecretString"]
    assert json.loads(stored) == {"DB_PASSWORD": "p", "URL": "https://x/ü"}
    assert tags(admin, f"{prefix}app/config")[OWNER_TAG] == "ns/web"
    assert (await sync(raw, vault)).writes == []

    changed = await sync(raw, Vault(kv={"DB_PASSWORD": "q", "SKIP": "no"}))
    assert changed.plan.update == [f"{prefix}app/config"] and changed.writes == ["PutSecretValue"]
    assert json.loads(admin.get_secret_value(SecretId=f"{prefix}app/config")["SecretString"]) == {"DB_PASSWORD": "q"}
    assert len(versions(admin, f"{prefix}app/config")) == 2


async def test_json_mode_adopts_only_with_the_opt_in_and_writes_it(endpoint: str, admin: Any, prefix: str) -> None:
    """Behaviour changed on purpose: adopting no longer compares the object (no oracle), so an equal object gets a
    new version carrying our marker."""
    admin.create_secret(Name=f"{prefix}cfg", SecretString=json.dumps({"B": "2", "A": "1"}, indent=2))
    raw = spec(endpoint, prefix, mode="Json", name="cfg", adopt=True)
    with pytest.raises(TargetError, match="does not opt in"):
        await sync(raw, Vault(kv={"A": "1", "B": "2"}))
    admin.tag_resource(SecretId=f"{prefix}cfg", Tags=[{"Key": ADOPT_ANNOTATION, "Value": "ns.web"}])
    run = await sync(raw, Vault(kv={"A": "1", "B": "2"}))
    assert run.plan.update == [f"{prefix}cfg"] and len(versions(admin, f"{prefix}cfg")) == 2
    assert tags(admin, f"{prefix}cfg")[OWNER_TAG] == "ns/web"
    assert (await sync(raw, Vault(kv={"A": "1", "B": "2"}))).writes == []  # ours now: compared, unchanged


async def test_json_mode_refuses_binary_files(endpoint: str, prefix: str) -> None:
    raw = spec(endpoint, prefix, mode="Json", name="cfg", files={"include": ["*"]})
    with pytest.raises(SelectionError, match=r"certs_key\.der"):
        KIND.desired(
            Vault(kv={"A": "1"}, files={"certs/key.der": b"\xff\xfe"}),
            parse_selection(raw, PATH),
            KIND.parse(raw, PATH),
        )


async def test_assume_role(endpoint: str, admin: Any, prefix: str) -> None:
    raw = spec(endpoint, prefix, roleArn="arn:aws:iam::123456789012:role/writer", stsEndpoint=endpoint)
    run = await sync(raw, Vault(kv={"A": "1"}))
    assert run.writes == ["CreateSecret"] and admin.get_secret_value(SecretId=f"{prefix}A")["SecretString"] == "1"


def _auth(endpoint: str, count: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(request, timeout=10)


async def test_bad_credentials_and_missing_permissions(endpoint: str, admin: Any, prefix: str) -> None:
    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="a", aws_secret_access_key="b"
    )
    iam.create_user(UserName="nobody")  # a real identity without any policy
    key = iam.create_access_key(UserName="nobody")["AccessKey"]
    _auth(endpoint, "0")  # from now on moto checks signatures and IAM policies
    try:
        with pytest.raises(TargetError) as denied_auth:
            await sync(spec(endpoint, prefix), Vault(kv={"A": "value-1"}))
        assert denied_auth.value.reason == "AuthFailed" and "value-1" not in str(denied_auth.value)

        CREDENTIALS[("nobody", "access-key-id")] = key["AccessKeyId"]
        CREDENTIALS[("nobody", "secret-access-key")] = key["SecretAccessKey"]
        with pytest.raises(TargetError) as denied_access:
            await sync(spec(endpoint, prefix, credentialsSecretRef={"name": "nobody"}), Vault(kv={"A": "value-1"}))
        assert denied_access.value.reason == "Forbidden" and "DescribeSecret" in str(denied_access.value)
    finally:
        _auth(endpoint, "inf")
    assert admin.list_secrets()["SecretList"] == []


async def test_unreachable_endpoint_is_unavailable(prefix: str) -> None:
    with pytest.raises(TargetError) as failed:
        await sync(spec("http://127.0.0.1:9", prefix), Vault(kv={"A": "1"}))
    assert failed.value.reason == "Unavailable"


# --- store policy (issue #13: C1, C2, M3) ----------------------------------------------------------------------------
OPERATOR_KEY_ID = "AKIAOPERATORAMBIENT1"
STORE = "aws-shared"


@pytest.fixture
def operator_identity(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The operator's ambient identity (env credentials, as IRSA / an instance profile would give), its default
    endpoint pointing at moto; a fresh boto3 session so the default chain sees exactly this."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", OPERATOR_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(aws_identity, "_SESSION", None)
    return OPERATOR_KEY_ID


class Recorder(http.server.BaseHTTPRequestHandler):
    """A local server a tenant points an endpoint at: it records every request's Authorization header."""

    seen: ClassVar[list[str]] = []

    def _record(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _record

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Recorder.seen
    finally:
        server.shutdown()
        server.server_close()


def store_body(**extra: Any) -> dict[str, Any]:
    connection = {"region": REGION, "identity": {"ambient": {}}, **extra.pop("connection", {})}
    return {
        "metadata": {"name": STORE},
        "spec": {
            "awsSecretsManager": connection,
            "conditions": extra.pop("conditions", {"namespaces": ["ns"]}),
            "scope": {"namePrefix": "tenants/{namespace}/"},
            **extra,
        },
    }


def tenant_kube(store: dict[str, Any] | None, labels: dict[str, str] | None = None) -> MemoryKube:
    kube = MemoryKube()
    if store is not None:
        kube.stores[STORE] = store
    kube.namespaces["ns"] = {"metadata": {"name": "ns", "labels": labels or {}}}
    return kube


def names(admin: Any) -> list[str]:
    return sorted(entry["Name"] for entry in admin.list_secrets()["SecretList"])


async def test_c1_a_tenant_without_credentials_cannot_use_the_operator_identity(
    operator_identity: str, admin: Any, prefix: str
) -> None:
    kube = tenant_kube(None)
    raw = {"region": REGION, "namePrefix": prefix}  # no credentialsSecretRef, no storeRef
    with pytest.raises(PolicyDeniedError, match="ClusterTargetStore") as denied:
        await sync(raw, Vault(kv={"A": "1"}), kube)
    assert denied.value.reason == "PolicyDenied"
    assert kube.calls == []  # decided before any request, to Kubernetes or AWS
    assert names(admin) == []


async def test_c1_the_store_kit_refuses_ambient_identity_even_if_a_store_module_asks(
    operator_identity: str, admin: Any, prefix: str
) -> None:
    """Defence in depth: a tenant grant (no store) never admits `ambient()`, even when connect is reached."""
    spec_ = KIND.parse({"region": REGION, "namePrefix": prefix}, PATH)
    tenant_grant = Grant(KIND.name, None, None, None)
    with pytest.raises(PolicyDeniedError):
        await KIND.connect(spec_, context({}, MemoryKube(), tenant_grant))
    with pytest.raises(PolicyDeniedError):  # and without any grant, nothing at all
        await KIND.connect(spec_, context({}, MemoryKube(), None))
    assert names(admin) == []


async def test_c2_a_tenant_endpoint_never_receives_the_operator_credentials(
    operator_identity: str, recorder: tuple[str, list[str]], prefix: str
) -> None:
    url, seen = recorder
    raw = {"region": REGION, "endpoint": url, "stsEndpoint": url, "namePrefix": prefix}
    with pytest.raises(PolicyDeniedError, match="endpoint, stsEndpoint would receive it"):
        await sync(raw, Vault(kv={"A": "1"}))
    with pytest.raises(PolicyDeniedError):
        await sync({**raw, "roleArn": "arn:aws:iam::123456789012:role/any"}, Vault(kv={"A": "1"}))
    assert seen == []  # not one request reached the tenant's server
    # with the tenant's own credentials the endpoint is used: it gets those, never the operator's
    with pytest.raises(TargetError):
        await sync({**raw, "credentialsSecretRef": {"name": "aws-creds"}}, Vault(kv={"A": "1"}))
    assert seen and all("Credential=testing/" in header for header in seen)
    assert not any(OPERATOR_KEY_ID in header for header in seen)


async def test_m3_external_id_only_from_a_store(endpoint: str, prefix: str) -> None:
    raw = spec(endpoint, prefix, roleArn="arn:aws:iam::123456789012:role/writer", externalId="guessed-id")
    with pytest.raises(PolicyDeniedError, match="externalId comes only from a ClusterTargetStore"):
        await sync(raw, Vault(kv={"A": "1"}))


@pytest.fixture
def assume_role_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The parameters of every AssumeRole the store's STS clients send."""
    calls: list[dict[str, Any]] = []
    make = aws_identity.client

    def recording(service: str, *args: Any, **kwargs: Any) -> Any:
        client = make(service, *args, **kwargs)
        if service == "sts":
            client.meta.events.register(
                "before-parameter-build.sts.AssumeRole", lambda params, **_: calls.append(dict(params))
            )
        return client

    monkeypatch.setattr(aws_identity, "client", recording)
    return calls


def _assert_session_identity(call: dict[str, Any]) -> None:
    assert call["RoleSessionName"] == role_session_name("ns", "web")
    assert {t["Key"]: t["Value"] for t in call["Tags"]} == {
        "vaultbundle-namespace": "ns",
        "vaultbundle-name": "web",
        "vaultbundle-uid": OWNER.uid,
    }
    assert sorted(call["TransitiveTagKeys"]) == sorted(SESSION_TAG_KEYS)


async def test_m3_every_assume_role_carries_an_injective_session_name_and_session_tags(
    endpoint: str, admin: Any, prefix: str, assume_role_calls: list[dict[str, Any]]
) -> None:
    raw = spec(endpoint, prefix, roleArn="arn:aws:iam::123456789012:role/writer", stsEndpoint=endpoint)
    await sync(raw, Vault(kv={"A": "1"}))
    (call,) = assume_role_calls
    _assert_session_identity(call)
    assert "ExternalId" not in call
    assert role_session_name("team", "a-x") != role_session_name("team-a", "x")  # the old name made these equal


async def test_store_assume_role_uses_the_store_external_id_and_session_tags(
    operator_identity: str, admin: Any, assume_role_calls: list[dict[str, Any]]
) -> None:
    store = store_body(connection={"roleArn": "arn:aws:iam::123456789012:role/tenants", "externalId": "cluster-prod"})
    await sync({"storeRef": {"name": STORE}}, Vault(kv={"A": "1"}), tenant_kube(store))
    (call,) = assume_role_calls
    _assert_session_identity(call)
    assert call["ExternalId"] == "cluster-prod" and call["RoleArn"].endswith("role/tenants")
    assert names(admin) == ["tenants/ns/A"]


async def test_store_writes_only_inside_its_scope(operator_identity: str, admin: Any) -> None:
    kube = tenant_kube(store_body())
    raw = {"storeRef": {"name": STORE}, "namePrefix": "app/"}
    run = await sync(raw, Vault(kv={"A": "1", "B": "2"}), kube)
    assert sorted(run.plan.create) == ["tenants/ns/app/A", "tenants/ns/app/B"]
    assert names(admin) == ["tenants/ns/app/A", "tenants/ns/app/B"]
    assert tags(admin, "tenants/ns/app/A")[OWNER_TAG] == "ns/web"
    assert kube.calls == ["get_cluster_target_store", "get_namespace"]

    with pytest.raises(PolicyDeniedError, match="outside the scope"):  # a name that climbs out of the scope
        await sync({**raw, "namePrefix": "../../elsewhere/"}, Vault(kv={"A": "1"}), kube)
    with pytest.raises(SpecError, match="remove region, endpoint"):  # the connection is the store's alone
        await sync({**raw, "region": REGION, "endpoint": "http://127.0.0.1:9"}, Vault(kv={"A": "1"}), kube)
    assert names(admin) == ["tenants/ns/app/A", "tenants/ns/app/B"]


async def test_store_prune_never_deletes_outside_the_scope(operator_identity: str, admin: Any) -> None:
    kube = tenant_kube(store_body())
    raw = {"storeRef": {"name": STORE}, "namePrefix": "p/", "prune": True}
    await sync(raw, Vault(kv={"A": "1", "B": "2"}), kube)
    ours = [{"Key": OWNER_TAG, "Value": "ns/web"}, {"Key": MANAGED_BY_KEY, "Value": "vaultbundle"}]
    admin.create_secret(Name="p/OUTSIDE", SecretString="x", Tags=ours)  # our tags, but outside the scope
    STATUS["p/"]["managedSecrets"].append("p/OUTSIDE")  # even a status claiming we wrote it
    run = await sync(raw, Vault(kv={"A": "1"}), kube)
    assert run.plan.delete == ["tenants/ns/p/B"]
    assert "DeletedDate" in admin.describe_secret(SecretId="tenants/ns/p/B")
    assert "DeletedDate" not in admin.describe_secret(SecretId="p/OUTSIDE")


async def test_store_allow_flags_are_honoured(operator_identity: str, admin: Any) -> None:
    kube = tenant_kube(store_body(allow={"prune": False}))
    raw = {"storeRef": {"name": STORE}, "namePrefix": "f/", "prune": True}
    await sync(raw, Vault(kv={"A": "1", "B": "2"}), kube)
    run = await sync(raw, Vault(kv={"A": "1"}), kube)
    assert run.plan.delete == [] and "DeletedDate" not in admin.describe_secret(SecretId="tenants/ns/f/B")
    admin.create_secret(Name="tenants/ns/f/C", SecretString="someone else's")  # untagged
    with pytest.raises(PolicyDeniedError, match="does not allow adopting"):
        await sync({**raw, "adopt": True}, Vault(kv={"C": "mine"}), kube)
    with pytest.raises(PolicyDeniedError, match="forceDeleteWithoutRecovery"):
        await sync({**raw, "forceDeleteWithoutRecovery": True}, Vault(kv={"A": "1"}), kube)
    assert admin.get_secret_value(SecretId="tenants/ns/f/C")["SecretString"] == "someone else's"


async def test_store_namespace_selector_is_honoured(operator_identity: str, admin: Any) -> None:
    store = store_body(conditions={"namespaceSelector": {"matchLabels": {"vaultbundle.io/tenant": "true"}}})
    raw = {"storeRef": {"name": STORE}}
    with pytest.raises(PolicyDeniedError, match="does not admit namespace ns"):
        await sync(raw, Vault(kv={"A": "1"}), tenant_kube(store))
    with pytest.raises(PolicyDeniedError, match="does not admit namespace ns"):  # a missing store: same answer
        await sync(raw, Vault(kv={"A": "1"}), tenant_kube(None))
    assert names(admin) == []
    await sync(raw, Vault(kv={"A": "1"}), tenant_kube(store, {"vaultbundle.io/tenant": "true"}))
    assert names(admin) == ["tenants/ns/A"]


async def test_store_identity_secret_is_read_from_the_operator_namespace(
    endpoint: str, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("POD_NAMESPACE", "vaultbundle-system")
    monkeypatch.setattr(aws_identity, "_SESSION", None)
    store = store_body(connection={"identity": {"secretRef": {"name": "aws-store-key"}}})
    kube = tenant_kube(store)
    kube.put_secret("vaultbundle-system", "aws-store-key", {"access-key-id": "AKIASTORE", "secret-access-key": "x"})
    kube.put_secret("ns", "aws-store-key", {"access-key-id": "AKIATENANT", "secret-access-key": "y"})  # not used
    await sync({"storeRef": {"name": STORE}}, Vault(kv={"A": "1"}), kube)
    assert names(admin) == ["tenants/ns/A"]
    assert kube.calls == ["get_cluster_target_store", "get_namespace", "get_secret", "get_secret"]


# --- referent identity: a ServiceAccount of the tenant's namespace, AssumeRoleWithWebIdentity ------------------------
ROLE = "arn:aws:iam::123456789012:role/tenant-ns"


def account_kube(**annotations: str) -> MemoryKube:
    kube = MemoryKube()
    kube.service_accounts[("ns", "aws-writer")] = {"metadata": {"name": "aws-writer", "annotations": annotations}}
    return kube


@pytest.fixture
def sts_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(operation, params, HTTP headers as sent) of every STS request the store's clients make."""
    seen: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    make = aws_identity.client

    def recording(service: str, *args: Any, **kwargs: Any) -> Any:
        client = make(service, *args, **kwargs)
        if service == "sts":
            captured: dict[str, Any] = {}
            client.meta.events.register("before-parameter-build.sts.*", lambda params, **_: captured.update(params))
            client.meta.events.register(
                "before-send.sts.*",
                lambda request, **_: seen.append((request.url, dict(captured), dict(request.headers))),
            )
        return client

    monkeypatch.setattr(aws_identity, "client", recording)
    return seen


async def test_referent_identity_assumes_the_service_account_role_unsigned(
    operator_identity: str,
    endpoint: str,
    admin: Any,
    prefix: str,
    sts_requests: list[tuple[str, dict[str, Any], dict[str, str]]],
) -> None:
    kube = account_kube(**{"eks.amazonaws.com/role-arn": ROLE, "vaultbundle.io/token-audiences": "sts.amazonaws.com"})
    raw = {
        "region": REGION,
        "namePrefix": prefix,
        "stsEndpoint": endpoint,
        "auth": {"serviceAccountRef": {"name": "aws-writer"}},
    }
    await sync(raw, Vault(kv={"A": "1"}), kube)
    assert admin.get_secret_value(SecretId=f"{prefix}A")["SecretString"] == "1"
    assert kube.tokens == [
        {"namespace": "ns", "name": "aws-writer", "audiences": ["sts.amazonaws.com"], "expirationSeconds": 600}
    ]
    ((_, params, headers),) = sts_requests
    assert params["RoleArn"] == ROLE and params["WebIdentityToken"] == "token-for-ns-aws-writer"
    assert params["RoleSessionName"] == role_session_name("ns", "web")
    assert "Authorization" not in headers  # unsigned: the operator's own key never rides along
    assert not any(OPERATOR_KEY_ID in str(value) for value in headers.values())


async def test_referent_identity_needs_the_service_account_opt_in(
    operator_identity: str, admin: Any, prefix: str
) -> None:
    raw = {"region": REGION, "namePrefix": prefix, "auth": {"serviceAccountRef": {"name": "aws-writer"}}}
    no_opt_in = account_kube(**{"eks.amazonaws.com/role-arn": ROLE})
    with pytest.raises(TargetError, match="does not allow tokens for audience") as refused:
        await sync(raw, Vault(kv={"A": "1"}), no_opt_in)
    assert refused.value.reason == "Forbidden" and "create_token" not in no_opt_in.calls
    no_role = account_kube(**{"vaultbundle.io/token-audiences": "sts.amazonaws.com"})
    with pytest.raises(TargetError, match=r"eks\.amazonaws\.com/role-arn") as roleless:
        await sync(raw, Vault(kv={"A": "1"}), no_role)
    assert roleless.value.reason == "AuthFailed" and "create_token" not in no_role.calls
    with pytest.raises(SpecError, match="drop credentialsSecretRef and roleArn"):
        KIND.parse({**raw, "roleArn": ROLE}, PATH)
    assert names(admin) == []
