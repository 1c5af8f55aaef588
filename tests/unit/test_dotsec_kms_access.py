"""A dotsec source's KMS key through the tenant's ServiceAccount (web identity) or an awsKms ClusterTargetStore, over
the in-memory kit and moto (in process): the parser's one-of, the policy decisions, what reaches AWS and with which
credentials, the session cache, and that no credential or token shows in errors or reprs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.exceptions
import pytest
from moto import mock_aws

from tests.dotsec_writer import write_sec
from tests.kit import DotsecWorld
from vaultbundle import dotsec_kms_access, stores, targets
from vaultbundle.dotsec_kms import ENCRYPTION_CONTEXT, KmsUnwrapper
from vaultbundle.errors import PolicyDeniedError, Reason, SpecError
from vaultbundle.targets import aws_identity

CANARY = "canary-kms-grant-71c2"
REGION = "eu-central-1"
ROLE = "arn:aws:iam::123456789012:role/web-dotsec"
OPERATOR_KEY = "AKIAOPERATORAMBIENT1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto in process, the operator's ambient identity in the environment (a store may lend it; nothing else may
    use it), an empty session cache, and a record of every client built and every Decrypt sent."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", OPERATOR_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(aws_identity, "_SESSION", None)
    dotsec_kms_access.SESSIONS.clear()
    record: dict[str, Any] = {"clients": [], "decrypts": []}
    make = aws_identity.client

    def recording(service: str, region: str, endpoint: str, credentials: Any, *, unsigned: bool = False) -> Any:
        record["clients"].append((service, dict(credentials), unsigned))
        client = make(service, region, endpoint, credentials, unsigned=unsigned)
        if service == "kms":
            client.meta.events.register(
                "before-parameter-build.kms.Decrypt", lambda params, **_: record["decrypts"].append(dict(params))
            )
        return client

    monkeypatch.setattr(aws_identity, "client", recording)
    with mock_aws():
        kms = boto3.client("kms", region_name=REGION)
        record["kms"] = kms
        yield record
    dotsec_kms_access.SESSIONS.clear()


def new_key(kms: Any, alias: str = "") -> str:
    arn = str(kms.create_key()["KeyMetadata"]["Arn"])
    if alias:
        kms.create_alias(AliasName=alias, TargetKeyId=arn)
    return arn


def kms_world(aws: dict[str, Any], key_arn: str, kms: dict[str, Any], body: str = f"T=<<{CANARY}>>\n") -> DotsecWorld:
    world = DotsecWorld()
    publish(world, aws, key_arn, body)
    world.edit_spec(source={"dotsec": {"configMapRef": {"name": "app-sec"}, "kms": kms}})
    return world


def publish(world: DotsecWorld, aws: dict[str, Any], key_arn: str, body: str) -> None:
    dek = os.urandom(32)
    wrapped = aws["kms"].encrypt(KeyId=key_arn, Plaintext=dek, EncryptionContext=ENCRYPTION_CONTEXT)["CiphertextBlob"]
    world.set_text(write_sec(f"# @provider=aws\n{body}", dek=dek, wrapped_dek=wrapped)[0])


def service_account(world: DotsecWorld, *, audiences: str = "sts.amazonaws.com") -> None:
    annotations = {"eks.amazonaws.com/role-arn": ROLE, "vaultbundle.io/token-audiences": audiences}
    world.kube.service_accounts[("ns", "kms-reader")] = {"metadata": {"name": "kms-reader", "annotations": annotations}}


def store(keys: list[str], **conditions: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "kms-shared"},
        "spec": {
            "awsKms": {"region": REGION, "identity": {"ambient": {}}},
            "conditions": conditions or {"namespaces": ["ns"]},
            "scope": {"keys": keys},
        },
    }


WEB_IDENTITY = {"region": REGION, "auth": {"serviceAccountRef": {"name": "kms-reader"}}}
STORE_REF = {"storeRef": {"name": "kms-shared"}}


# --- the spec ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kms", "message"),
    [
        ({"region": REGION}, "spec.source.dotsec.kms needs credentials"),
        (
            {"region": REGION, "credentialsSecretRef": {"name": "c"}, "storeRef": {"name": "s"}},
            "spec.source.dotsec.kms takes exactly one of credentialsSecretRef, auth.serviceAccountRef, storeRef",
        ),
        ({**WEB_IDENTITY, "credentialsSecretRef": {"name": "c"}}, "takes exactly one of"),
        ({"storeRef": {"name": "s"}, "region": REGION}, "kms: with storeRef the region, endpoints and identity"),
        ({"storeRef": {"name": "s"}, "stsEndpoint": "https://sts.example"}, "remove stsEndpoint"),
        ({"storeRef": {"name": "S!"}}, "spec.source.dotsec.kms.storeRef must be {name: <ClusterTargetStore>}"),
        ({"storeRef": {"name": "s", "namespace": "x"}}, "spec.source.dotsec.kms.storeRef must be"),
        ({**WEB_IDENTITY, "auth": {"serviceAccountRef": {"name": "a"}, "x": 1}}, "kms.auth takes only"),
        ({**WEB_IDENTITY, "auth": {"serviceAccountRef": {"name": "A_B"}}}, "kms.auth.serviceAccountRef.name"),
        (
            {"region": REGION, "credentialsSecretRef": {"name": "c"}, "stsEndpoint": "https://s"},
            "kms.stsEndpoint is only used with auth.serviceAccountRef",
        ),
        ({**WEB_IDENTITY, "stsEndpoint": "ftp://sts"}, "kms.stsEndpoint must be an http(s) URL"),
    ],
)
def test_bad_kms_specs_name_the_field(kms: dict[str, Any], message: str) -> None:
    spec = {**DotsecWorld().spec, "source": {"dotsec": {"configMapRef": {"name": "c"}, "kms": kms}}}
    with pytest.raises(SpecError) as caught:
        targets.parse_spec(spec, namespace="ns")
    assert message in str(caught.value)


def test_no_credentials_is_policy_denied_and_names_all_three_ways() -> None:
    spec = {**DotsecWorld().spec, "source": {"dotsec": {"configMapRef": {"name": "c"}, "kms": {"region": REGION}}}}
    with pytest.raises(SpecError) as caught:
        targets.parse_spec(spec, namespace="ns")
    assert caught.value.reason == Reason.POLICY_DENIED
    assert all(way in str(caught.value) for way in ("credentialsSecretRef", "auth.serviceAccountRef", "storeRef"))


# --- web identity -----------------------------------------------------------------------------------------------------
async def test_web_identity_opens_with_an_unsigned_exchange_of_a_token_request(aws: dict[str, Any]) -> None:
    world = kms_world(aws, new_key(aws["kms"]), WEB_IDENTITY)
    service_account(world)
    outcome = await world.cycle()
    assert outcome.ready, outcome.message
    assert world.secret() == {"T": CANARY}
    assert world.kube.tokens == [
        {"namespace": "ns", "name": "kms-reader", "audiences": ["sts.amazonaws.com"], "expirationSeconds": 600}
    ]
    (sts,) = [c for c in aws["clients"] if c[0] == "sts"]
    assert sts == ("sts", {}, True)  # unsigned: no credentials of anyone
    (kms,) = [c for c in aws["clients"] if c[0] == "kms"]
    issued = kms[1]
    assert issued["aws_access_key_id"] != OPERATOR_KEY and issued["aws_session_token"]  # the issued session
    assert aws["decrypts"][0]["EncryptionContext"] == ENCRYPTION_CONTEXT and "KeyId" not in aws["decrypts"][0]


async def test_web_identity_needs_no_token_per_cycle_and_reuses_the_session(aws: dict[str, Any]) -> None:
    key = new_key(aws["kms"])
    world = kms_world(aws, key, WEB_IDENTITY)
    service_account(world)
    assert (await world.cycle()).ready
    for _ in range(3):  # unchanged: no token, no STS, no Decrypt
        assert (await world.cycle()).idle
    assert len(world.kube.tokens) == 1 and len(aws["decrypts"]) == 1
    publish(world, aws, key, "T=<<second>>\n")  # a new file within the session's life: Decrypt, no new token
    assert (await world.cycle()).ready and world.secret() == {"T": "second"}
    assert len(world.kube.tokens) == 1 and len(aws["decrypts"]) == 2
    assert [c[0] for c in aws["clients"]].count("sts") == 1


async def test_web_identity_asks_again_shortly_before_the_session_expires(aws: dict[str, Any]) -> None:
    now = [datetime.now(UTC)]
    cache = dotsec_kms_access.SessionCache(clock=lambda: now[0])
    cache.put(("k",), {"aws_access_key_id": "A"}, now[0] + timedelta(minutes=15))
    assert cache.get(("k",)) == {"aws_access_key_id": "A"}
    now[0] += timedelta(minutes=12, seconds=59)
    assert cache.get(("k",)) is not None
    now[0] += timedelta(seconds=2)  # within the two-minute margin: renewed, not used
    assert cache.get(("k",)) is None
    cache.put(("k",), {"aws_access_key_id": "A"}, None)  # no expiry: never kept
    assert cache.get(("k",)) is None and "A" not in repr(cache)


async def test_web_identity_without_the_audience_opt_in_sends_nothing(aws: dict[str, Any]) -> None:
    world = kms_world(aws, new_key(aws["kms"]), WEB_IDENTITY)
    service_account(world, audiences="vault")
    outcome = await world.cycle()
    assert outcome.reason == Reason.FORBIDDEN and "token-audiences" in outcome.message
    assert world.kube.tokens == [] and aws["decrypts"] == [] and ("ns", "out") not in world.kube.secrets


async def test_web_identity_without_a_role_annotation_is_auth_failed(aws: dict[str, Any]) -> None:
    world = kms_world(aws, new_key(aws["kms"]), WEB_IDENTITY)
    world.kube.service_accounts[("ns", "kms-reader")] = {"metadata": {"name": "kms-reader"}}
    outcome = await world.cycle()
    assert outcome.reason == Reason.AUTH_FAILED and "eks.amazonaws.com/role-arn" in outcome.message
    assert world.kube.tokens == [] and aws["clients"] == []


# --- the awsKms store -------------------------------------------------------------------------------------------------
async def test_a_store_grant_opens_a_file_of_a_key_in_scope_with_the_stores_identity(aws: dict[str, Any]) -> None:
    key = new_key(aws["kms"])
    world = kms_world(aws, key, STORE_REF)
    world.kube.stores["kms-shared"] = store([key])
    outcome = await world.cycle()
    assert outcome.ready, outcome.message
    assert world.secret() == {"T": CANARY}
    assert [c for c in aws["clients"] if c[0] == "kms"] == [("kms", {}, False)]  # the store's ambient identity
    assert aws["decrypts"][0]["KeyId"] == key  # one key ARN: KMS itself enforces it
    assert world.kube.tokens == [] and outcome.secret_refs == set()


async def test_a_key_outside_the_scope_is_policy_denied_and_nothing_is_written(aws: dict[str, Any]) -> None:
    granted, other = new_key(aws["kms"]), new_key(aws["kms"])
    world = kms_world(aws, other, STORE_REF)
    world.kube.stores["kms-shared"] = store([granted, f"arn:aws:kms:{REGION}:123456789012:alias/tenants/{{namespace}}"])
    outcome = await world.cycle()
    assert outcome.reason == Reason.POLICY_DENIED and "spec.scope.keys" in outcome.message
    assert "KeyId" not in aws["decrypts"][0]  # two entries: the response's KeyId is checked
    assert ("ns", "out") not in world.kube.secrets and "apply_secret" not in world.kube.calls
    assert other not in outcome.message and CANARY not in repr(world.kube.status)


async def test_a_single_key_grant_lets_kms_refuse_another_key(aws: dict[str, Any]) -> None:
    """With one key ARN in scope the Decrypt carries it as KeyId. moto answers a mismatch with AccessDenied (real KMS:
    IncorrectKeyException, the next test): either way nothing is decrypted or written."""
    granted, other = new_key(aws["kms"]), new_key(aws["kms"])
    world = kms_world(aws, other, STORE_REF)
    world.kube.stores["kms-shared"] = store([granted])
    outcome = await world.cycle()
    assert aws["decrypts"][0]["KeyId"] == granted
    assert outcome.reason == Reason.DOTSEC_DEK_UNWRAP_FAILED and "AccessDeniedException" in outcome.message
    assert ("ns", "out") not in world.kube.secrets


def test_kms_refusing_the_grants_key_is_the_grants_policy_denial() -> None:
    class WrongKey:
        def decrypt(self, **params: Any) -> Any:
            assert params["KeyId"] == _arn()
            error = {"Error": {"Code": "IncorrectKeyException", "Message": "arn:aws:kms:... secret detail"}}
            raise botocore.exceptions.ClientError(error, "Decrypt")

    scope = stores.authorize(stores.KMS, STORE_REF, stores.parse_store(store([_arn()])), "ns", {}, "vb").scope
    assert scope is not None
    unwrapper = KmsUnwrapper(
        REGION,
        client_factory=lambda region: WrongKey(),
        key_id=scope.kms_key_id,
        check_key=lambda key, client: scope.check_kms_key(key, lambda alias: ""),
    )
    with pytest.raises(PolicyDeniedError, match=r"spec\.scope\.keys") as caught:
        unwrapper.unwrap(b"blob")
    assert "secret detail" not in str(caught.value)


async def test_an_alias_of_the_namespace_grants_its_key_and_not_another_namespaces(aws: dict[str, Any]) -> None:
    mine = new_key(aws["kms"], alias="alias/tenants/ns")
    theirs = new_key(aws["kms"], alias="alias/tenants/other")
    alias = f"arn:aws:kms:{REGION}:123456789012:alias/tenants/{{namespace}}"
    shared = f"arn:aws:kms:{REGION}:123456789012:key/00000000-0000-0000-0000-000000000000"
    world = kms_world(aws, mine, STORE_REF)
    world.kube.stores["kms-shared"] = store([shared, alias])
    assert (await world.cycle()).ready and world.secret() == {"T": CANARY}
    publish(world, aws, theirs, "T=<<theirs>>\n")
    outcome = await world.cycle()
    assert outcome.reason == Reason.POLICY_DENIED and world.secret() == {"T": CANARY}


async def test_a_namespace_the_store_does_not_admit_sends_nothing(aws: dict[str, Any]) -> None:
    key = new_key(aws["kms"])
    world = kms_world(aws, key, STORE_REF)
    world.kube.stores["kms-shared"] = store([key], namespaceSelector={"matchLabels": {"kms": "yes"}})
    outcome = await world.cycle()
    assert outcome.reason == Reason.POLICY_DENIED and "does not admit namespace ns" in outcome.message
    assert aws["clients"] == [] and ("ns", "out") not in world.kube.secrets
    world.kube.namespaces["ns"] = {"metadata": {"name": "ns", "labels": {"kms": "yes"}}}
    assert (await world.cycle()).ready


async def test_admission_is_checked_every_cycle_even_for_an_unchanged_file(aws: dict[str, Any]) -> None:
    key = new_key(aws["kms"])
    world = kms_world(aws, key, STORE_REF)
    world.kube.stores["kms-shared"] = store([key])
    assert (await world.cycle()).ready and (await world.cycle()).idle
    world.kube.stores["kms-shared"] = store([key], namespaces=["elsewhere"])
    assert (await world.cycle()).reason == Reason.POLICY_DENIED
    assert len(aws["decrypts"]) == 1


async def test_a_missing_store_reads_like_a_store_that_does_not_admit(aws: dict[str, Any]) -> None:
    world = kms_world(aws, new_key(aws["kms"]), STORE_REF)
    outcome = await world.cycle()
    assert outcome.reason == Reason.POLICY_DENIED and "does not exist, is for another store kind" in outcome.message
    world.kube.stores["kms-shared"] = {
        "metadata": {"name": "kms-shared"},
        "spec": {
            "awsSecretsManager": {"region": REGION, "identity": {"ambient": {}}},
            "conditions": {"namespaces": ["ns"]},
            "scope": {"namePrefix": "tenants/{namespace}/"},
        },
    }
    assert (await world.cycle()).message == outcome.message  # another kind: the same message


async def test_a_store_secret_identity_comes_from_the_operators_namespace(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "vaultbundle-system")
    key = new_key(aws["kms"])
    world = kms_world(aws, key, STORE_REF)
    body = store([key])
    body["spec"]["awsKms"]["identity"] = {"secretRef": {"name": "kms-key"}}
    world.kube.stores["kms-shared"] = body
    world.kube.put_secret("vaultbundle-system", "kms-key", {"access-key-id": "AKIASTORE", "secret-access-key": "s"})
    world.kube.put_secret("ns", "kms-key", {"access-key-id": "AKIATENANT", "secret-access-key": "t"})  # not used
    assert (await world.cycle()).ready
    ((_, credentials, _),) = [c for c in aws["clients"] if c[0] == "kms"]
    assert credentials["aws_access_key_id"] == "AKIASTORE"


async def test_the_tenants_own_credentials_never_fall_back_to_the_operators(aws: dict[str, Any]) -> None:
    key = new_key(aws["kms"])
    world = kms_world(aws, key, {"region": REGION, "credentialsSecretRef": {"name": "kms-creds"}})
    world.kube.put_secret("ns", "kms-creds", {"accessKeyId": "AKIATENANTKEY", "secretAccessKey": "tenant-secret"})
    assert (await world.cycle()).ready
    assert [c[1]["aws_access_key_id"] for c in aws["clients"]] == ["AKIATENANTKEY"]


def test_kms_access_and_the_store_policy_reprs_hold_no_credentials() -> None:
    async def build() -> Any:
        raise AssertionError

    access = dotsec_kms_access.KmsAccess(REGION, (), {"kms:aws_secret_access_key": "s3cr3t-value"}, build)
    assert "s3cr3t-value" not in repr(access)
    grant = stores.authorize(stores.KMS, STORE_REF, stores.parse_store(store([_arn()])), "ns", {}, "vb")
    assert grant.scope is not None and grant.scope.kms_key_id == _arn()


def _arn() -> str:
    return f"arn:aws:kms:{REGION}:123456789012:key/11111111-2222-3333-4444-555555555555"
