"""gcpSecretManager target end to end: the official client against the in-process fake (gRPC on loopback).

Version counts and the fake's write-call counters prove that unchanged values cause no write and no churn.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from e2e.fakes.gcp_secret_manager import FakeSecretManagerServer, make_client, start_in_process

from tests.kit.policy import with_grant
from vaultbundle.digest import Digester
from vaultbundle.egress import EgressPolicy
from vaultbundle.errors import TargetError
from vaultbundle.selection import SelectionError
from vaultbundle.spec import parse_selection
from vaultbundle.targets import load
from vaultbundle.targets.base import Owner, Plan, TargetContext
from vaultbundle.targets.gcp_secret_manager import OWNER_LABEL, _errors, owner_label
from vaultbundle.targets.ownership import ADOPT_KEY
from vaultbundle.vault import Vault

PATH = "spec.targets[0].gcpSecretManager"
PROJECT = "acme-prod"
OWNER = Owner("ns", "web", "uid")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeSecretManagerServer]:
    running = start_in_process()
    yield running
    running.stop(grace=None)


@pytest.fixture
def fake(server: FakeSecretManagerServer) -> FakeSecretManagerServer:
    server.state.reset()
    return server


@pytest.fixture(scope="module")
def client(server: FakeSecretManagerServer) -> Any:
    return make_client(server.address)


def body(server: FakeSecretManagerServer, **fields: Any) -> dict[str, Any]:
    return {"project": PROJECT, "endpoint": server.address, "insecure": True, **fields}


class Synced:
    def __init__(self, plan: Plan, status: dict[str, Any]) -> None:
        self.plan, self.status = plan, status


async def sync(
    raw: Mapping[str, Any],
    vault: Vault,
    previous: Mapping[str, Any] | None = None,
    credentials: Mapping[tuple[str, str], str] | None = None,
    owner: Owner = OWNER,
) -> Synced:
    """One reconcile of this target, the way reconcile._sync_target drives a kind."""
    kind = load("gcpSecretManager")
    spec = kind.parse(raw, PATH)
    desired = kind.desired(vault, parse_selection(raw, PATH), spec)

    async def read_secret(name: str, key: str) -> str:
        return (credentials or {})[(name, key)]

    context = TargetContext(
        None,  # type: ignore[arg-type]
        owner,
        Digester(b"k" * 32),
        previous or {},
        read_secret,
        egress=EgressPolicy(allow_local=True),  # the fake listens on loopback
    )
    target = await kind.connect(spec, with_grant(context, kind.name, raw))
    plan = await target.plan(desired)
    if plan.changed:
        await target.apply(plan, desired)
    return Synced(plan, target.status_extra())


def secrets(fake: FakeSecretManagerServer) -> dict[str, dict[str, Any]]:
    """secret ID -> {labels, versions: {n: {state, data}}}."""
    return {name.rsplit("/", 1)[-1]: entry for name, entry in fake.state.snapshot().items()}


def payloads(fake: FakeSecretManagerServer) -> dict[str, list[bytes | None]]:
    return {sid: [v["data"] for _, v in sorted(e["versions"].items())] for sid, e in secrets(fake).items()}


VAULT = Vault(kv={"DB_URL": "postgres://db/app", "API_KEY": "k-1"}, files={"tls/key.der": b"\xff\x00binary"})


async def test_create_then_idempotent_then_one_new_version(fake: FakeSecretManagerServer) -> None:
    files = {"include": ["tls/*"], "rename": {"tls/key.der": "tls_key_der"}}
    raw = body(fake, labels={"team": "web"}, files=files)
    first = await sync(raw, VAULT)
    assert first.plan.create == ["API_KEY", "DB_URL", "tls_key_der"]
    assert payloads(fake) == {
        "API_KEY": [b"k-1"],
        "DB_URL": [b"postgres://db/app"],
        "tls_key_der": [b"\xff\x00binary"],
    }
    for entry in secrets(fake).values():
        assert entry["labels"] == {"team": "web", "managed-by": "vaultbundle", OWNER_LABEL: "ns_web"}
    assert first.status == {
        "remoteScope": f"projects/{PROJECT}",
        "managedSecrets": ["API_KEY", "DB_URL", "tls_key_der"],
    }

    writes = fake.state.write_calls()
    second = await sync(raw, VAULT, first.status)
    assert not second.plan.changed and second.plan.unchanged == 3
    assert fake.state.write_calls() == writes  # no RPC that writes, so no new version
    assert second.status == first.status

    changed = Vault(kv={"DB_URL": "postgres://db/app", "API_KEY": "k-2"}, files=VAULT.files)
    third = await sync(raw, changed, second.status)
    assert third.plan.update == ["API_KEY"] and third.plan.unchanged == 2 and not third.plan.create
    assert payloads(fake)["API_KEY"] == [b"k-1", b"k-2"]  # exactly one new version, on that secret only
    assert payloads(fake)["DB_URL"] == [b"postgres://db/app"]
    assert fake.state.write_calls()["AddSecretVersion"] == writes["AddSecretVersion"] + 1


async def test_prune_only_ours_and_only_when_asked(fake: FakeSecretManagerServer, client: Any) -> None:
    first = await sync(body(fake), VAULT)
    # someone else's secret, and one carrying our owner label but written by another target of this VaultBundle
    for sid, labels in (("THEIRS", {}), ("SIBLING", {"managed-by": "vaultbundle", OWNER_LABEL: "ns_web"})):
        client.create_secret(
            request={
                "parent": f"projects/{PROJECT}",
                "secret_id": sid,
                "secret": {"replication": {"automatic": {}}, "labels": labels},
            }
        )
    smaller = Vault(kv={"DB_URL": "postgres://db/app"})

    kept = await sync(body(fake), smaller, first.status)  # prune defaults to false
    assert not kept.plan.changed and set(secrets(fake)) == {"API_KEY", "DB_URL", "THEIRS", "SIBLING"}
    assert kept.status["managedSecrets"] == ["API_KEY", "DB_URL"]

    pruned = await sync(body(fake, prune=True), smaller, kept.status)
    assert pruned.plan.delete == ["API_KEY"]
    assert set(secrets(fake)) == {"DB_URL", "THEIRS", "SIBLING"}
    assert fake.state.write_calls()["DeleteSecret"] == 1
    assert pruned.status["managedSecrets"] == ["DB_URL"]


async def test_unowned_secret_is_left_alone_unless_adopt(fake: FakeSecretManagerServer, client: Any) -> None:
    parent = f"projects/{PROJECT}"
    created = client.create_secret(
        request={
            "parent": parent,
            "secret_id": "API_KEY",
            "secret": {"replication": {"automatic": {}}, "labels": {"owner": "ops"}},
        }
    )
    client.add_secret_version(request={"parent": created.name, "payload": {"data": b"theirs"}})
    writes = fake.state.write_calls()

    with pytest.raises(TargetError) as caught:
        await sync(body(fake), VAULT)
    assert caught.value.reason == "SecretNotOwned" and "API_KEY" in str(caught.value)
    assert "theirs" not in str(caught.value)
    assert fake.state.write_calls() == writes  # nothing written, not even DB_URL
    assert set(secrets(fake)) == {"API_KEY"}

    # adopt: true alone is not enough: the secret's owner must label it for this VaultBundle
    with pytest.raises(TargetError, match=r"does not opt in.*label vaultbundle-adopt=ns_web") as unconsented:
        await sync(body(fake, adopt=True), VAULT)
    assert unconsented.value.reason == "SecretNotOwned" and fake.state.write_calls() == writes
    consent = {"owner": "ops", ADOPT_KEY: "ns_web"}
    client.update_secret(
        request={"secret": {"name": created.name, "labels": consent}, "update_mask": {"paths": ["labels"]}}
    )
    writes = fake.state.write_calls()
    reads = fake.state.calls["AccessSecretVersion"]
    adopted = await sync(body(fake, adopt=True), VAULT)
    assert adopted.plan.update == ["API_KEY"] and adopted.plan.create == ["DB_URL"]
    assert payloads(fake)["API_KEY"] == [b"theirs", b"k-1"]
    assert fake.state.calls["AccessSecretVersion"] == reads  # the adopted secret's value is never read
    assert secrets(fake)["API_KEY"]["labels"] == {**consent, "managed-by": "vaultbundle", OWNER_LABEL: "ns_web"}
    again = await sync(body(fake), VAULT, adopted.status)  # now ours: no adopt needed, nothing to do
    assert not again.plan.changed


async def test_another_vaultbundles_secret_is_never_adopted(fake: FakeSecretManagerServer) -> None:
    await sync(body(fake), Vault(kv={"SHARED": "a"}), owner=Owner("other", "app", "uid2"))
    writes = fake.state.write_calls()
    with pytest.raises(TargetError) as caught:
        await sync(body(fake, adopt=True), Vault(kv={"SHARED": "b"}))
    assert caught.value.reason == "SecretNotOwned" and "managed by another VaultBundle" in str(caught.value)
    assert "other_app" not in str(caught.value)  # the other tenant's VaultBundle is not named (security review L2)
    assert fake.state.write_calls() == writes and payloads(fake) == {"SHARED": [b"a"]}


async def test_compares_with_the_latest_enabled_version(fake: FakeSecretManagerServer, client: Any) -> None:
    first = await sync(body(fake), Vault(kv={"TOKEN": "good"}))
    name = f"projects/{PROJECT}/secrets/TOKEN"
    client.add_secret_version(request={"parent": name, "payload": {"data": b"bad"}})
    client.disable_secret_version(request={"name": f"{name}/versions/2"})
    writes = fake.state.write_calls()
    # latest (v2) is disabled; the newest enabled version (v1) already holds the value: no new version
    second = await sync(body(fake), Vault(kv={"TOKEN": "good"}), first.status)
    assert not second.plan.changed and fake.state.write_calls() == writes

    client.disable_secret_version(request={"name": f"{name}/versions/1"})
    third = await sync(body(fake), Vault(kv={"TOKEN": "good"}), second.status)  # nothing enabled: add one
    assert third.plan.update == ["TOKEN"] and payloads(fake)["TOKEN"] == [b"good", b"bad", b"good"]


async def test_label_drift_is_repaired_without_a_new_version(fake: FakeSecretManagerServer, client: Any) -> None:
    first = await sync(body(fake, labels={"team": "web"}), Vault(kv={"TOKEN": "t"}))
    secret = client.get_secret(name=f"projects/{PROJECT}/secrets/TOKEN")
    secret.labels.pop("team")
    secret.labels["extra"] = "theirs"
    client.update_secret(request={"secret": secret, "update_mask": {"paths": ["labels"]}})
    second = await sync(body(fake, labels={"team": "web"}), Vault(kv={"TOKEN": "t"}), first.status)
    assert second.plan.metadata and not second.plan.update
    assert secrets(fake)["TOKEN"]["labels"] == {
        "team": "web",
        "extra": "theirs",  # labels others add are kept
        "managed-by": "vaultbundle",
        OWNER_LABEL: "ns_web",
    }
    assert payloads(fake)["TOKEN"] == [b"t"]


async def test_user_managed_replication(fake: FakeSecretManagerServer, client: Any) -> None:
    raw = body(fake, replication={"userManaged": {"locations": ["europe-west1", "europe-west4"]}})
    await sync(raw, Vault(kv={"TOKEN": "t"}))
    secret = client.get_secret(name=f"projects/{PROJECT}/secrets/TOKEN")
    assert [r.location for r in secret.replication.user_managed.replicas] == ["europe-west1", "europe-west4"]


@pytest.mark.parametrize(
    ("kv", "offender"),
    [({"a.b": "x", "OK": "y"}, "'a.b'"), ({"K" * 256: "x"}, "length must be 1..255")],
)
async def test_invalid_names_are_refused_before_any_call(
    fake: FakeSecretManagerServer, kv: dict[str, str], offender: str
) -> None:
    with pytest.raises(SelectionError) as caught:
        await sync(body(fake), Vault(kv=kv))
    assert offender in str(caught.value)
    assert fake.state.calls == {}  # not one RPC, read or write


async def test_naming_prefix_and_collisions(fake: FakeSecretManagerServer) -> None:
    await sync(body(fake, naming={"prefix": "web-", "underscoresToDashes": True}), Vault(kv={"DB_URL": "u"}))
    assert payloads(fake) == {"web-DB-URL": [b"u"]}
    fake.state.reset()
    with pytest.raises(SelectionError) as caught:
        await sync(body(fake, naming={"case": "Lower"}), Vault(kv={"TOKEN": "1", "token": "2"}))
    assert "'TOKEN' and 'token' both map to 'token'" in str(caught.value)
    assert fake.state.calls == {}


async def test_payload_limit(fake: FakeSecretManagerServer) -> None:
    with pytest.raises(SelectionError) as caught:
        await sync(body(fake), Vault(kv={"BIG": "x" * (64 * 1024 + 1)}))
    assert "BIG" in str(caught.value) and fake.state.calls == {}


@pytest.mark.parametrize("credentials", ["not json", '{"type": "service_account"}', "[1]"])
async def test_bad_credentials_are_auth_failed(fake: FakeSecretManagerServer, credentials: str) -> None:
    raw = {"project": PROJECT, "endpoint": fake.address, "credentialsSecretRef": {"name": "gcp"}}
    with pytest.raises(TargetError) as caught:
        await sync(raw, VAULT, credentials={("gcp", "credentials.json"): credentials})
    assert caught.value.reason == "AuthFailed" and "service_account" not in str(caught.value)
    assert fake.state.calls == {}


def test_sdk_errors_map_to_reasons_without_their_text() -> None:
    from google.api_core import exceptions as api

    cases: dict[type[api.GoogleAPICallError], str] = {
        api.Unauthenticated: "AuthFailed",
        api.PermissionDenied: "Forbidden",
        api.NotFound: "NotFound",
        api.ResourceExhausted: "Throttled",
        api.ServiceUnavailable: "Unavailable",
        api.DeadlineExceeded: "Unavailable",
        api.InvalidArgument: "Rejected",
        api.FailedPrecondition: "Conflict",
    }
    for error, reason in cases.items():
        with pytest.raises(TargetError) as caught, _errors("project p"):
            raise error("payload hunter2 leaked")
        assert caught.value.reason == reason and "hunter2" not in str(caught.value)


def test_owner_label_follows_gcp_label_rules() -> None:
    assert owner_label(Owner("ns", "web", "u")) == "ns_web"
    dotted, dashed = owner_label(Owner("ns", "web.app", "u")), owner_label(Owner("ns", "web-app", "u"))
    assert dotted != dashed and dashed == "ns_web-app"
    long_one = owner_label(Owner("n" * 63, "x" * 253, "u"))
    long_two = owner_label(Owner("n" * 63, "x" * 252 + "y", "u"))
    for value in (dotted, long_one, long_two):
        assert re.fullmatch(r"[a-z0-9_-]{1,63}", value)
    assert long_one != long_two


def _service_account_json(token_uri: str) -> str:
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return json.dumps(
        {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "1",
            "private_key": pem.decode(),
            "client_email": "vaultbundle@acme-prod.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        }
    )


async def test_external_account_configs_are_refused(fake: FakeSecretManagerServer) -> None:
    config = '{"type": "external_account", "credential_source": {"url": "http://169.254.169.254/"}}'
    raw = {"project": PROJECT, "endpoint": fake.address, "credentialsSecretRef": {"name": "gcp"}}
    with pytest.raises(TargetError) as caught:
        await sync(raw, VAULT, credentials={("gcp", "credentials.json"): config})
    assert caught.value.reason == "AuthFailed" and fake.state.calls == {}


async def test_service_account_key_is_used_over_tls(fake: FakeSecretManagerServer) -> None:
    import socket

    with socket.socket() as probe:  # a token endpoint nobody listens on: no request leaves the machine
        probe.bind(("127.0.0.1", 0))
        token_uri = f"http://127.0.0.1:{probe.getsockname()[1]}/token"
    raw = {"project": PROJECT, "endpoint": fake.address, "credentialsSecretRef": {"name": "gcp", "key": "sa.json"}}
    with pytest.raises(TargetError) as caught:  # TLS to a plaintext server, or the token fetch, fails: no RPC
        await sync(raw, Vault(kv={"TOKEN": "t"}), credentials={("gcp", "sa.json"): _service_account_json(token_uri)})
    assert caught.value.reason in ("Unavailable", "AuthFailed")
    assert fake.state.write_calls() == {}
