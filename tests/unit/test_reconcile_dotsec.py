"""A dotsec `.sec` source over the in-memory kit: sync, cheap path, tamper, schema, rollback, plaintext policy,
an S3 object, and `spec.schema` on a vsync bundle."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.dotsec_writer import write_sec
from tests.kit import DotsecWorld, World
from vaultbundle import metrics, targets
from vaultbundle.bundles import Layout
from vaultbundle.errors import Reason, SpecError

CANARY = "canary-dotsec-9f31"
BODY = f"# @provider=local @default-plaintext\nAPI_TOKEN=<<{CANARY}>>\nDB_PASSWORD=<<hunter2-xyz>>\n"
SCHEMA = "# @not-empty\nAPI_TOKEN\n# @min-length=8\nDB_PASSWORD\n# @optional @type=number\nPORT\n"


def opens() -> float:
    return float(metrics.DOTSEC_OPENS._value.get())


@pytest.fixture
async def synced() -> DotsecWorld:
    world = DotsecWorld()
    world.publish(BODY)
    outcome = await world.cycle()
    assert outcome.ready, outcome.message
    return world


def _no_canary(world: DotsecWorld, *texts: str) -> None:
    for text in (repr(world.kube.status), *texts):
        assert CANARY not in text


async def test_a_configmap_file_syncs_and_status_says_dotsec(synced: DotsecWorld) -> None:
    assert synced.secret() == {"API_TOKEN": CANARY, "DB_PASSWORD": "hunter2-xyz"}
    status = synced.kube.status
    assert status["source"] == "dotsec" and status["bundle"]["layout"] == "dotsec"
    assert status["dotsec"]["macVerified"] is True and status["dotsec"]["keys"] == 2
    assert status["dotsec"]["encryptedKeys"] == 2 and status["dotsec"]["plaintextKeys"] == []
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]{32}", status["dotsec"]["fileDigest"])
    assert status["dotsec"]["recentFiles"] == [status["dotsec"]["fileDigest"]]
    assert status["dotsec"]["revision"] == "1"
    assert "pointerETag" not in status and "lastAppliedTimestamp" not in status
    assert synced.conditions()["Verified"] == ("True", "Verified")
    _no_canary(synced)


async def test_unchanged_input_costs_no_decryption_and_no_write(synced: DotsecWorld) -> None:
    before, writes = opens(), list(synced.kube.writes)
    for _ in range(3):
        outcome = await synced.cycle()
        assert outcome.idle and outcome.ready and not outcome.status_written
    assert opens() == before and synced.kube.writes == writes


async def test_an_updated_configmap_brings_new_values(synced: DotsecWorld) -> None:
    synced.publish("# @provider=local\nAPI_TOKEN=<<rotated-token>>\nDB_PASSWORD=<<hunter3-xyz>>\n")
    before = opens()
    outcome = await synced.cycle()
    assert outcome.ready and not outcome.idle and opens() == before + 1
    assert synced.secret() == {"API_TOKEN": "rotated-token", "DB_PASSWORD": "hunter3-xyz"}
    assert len(synced.kube.status["dotsec"]["recentFiles"]) == 2


async def test_a_tampered_file_is_refused_and_targets_keep_their_content(synced: DotsecWorld) -> None:
    text = synced.kube.config_maps[("ns", "app-sec")]["data"][".sec"]
    synced.set_text(text.replace("DB_PASSWORD=", "DB_PASSWORX="))
    outcome = await synced.cycle()
    assert outcome.reason == Reason.DOTSEC_MAC_MISMATCH and not outcome.ready
    assert synced.conditions()["Verified"] == ("False", "DotsecMacMismatch")
    assert synced.secret() == {"API_TOKEN": CANARY, "DB_PASSWORD": "hunter2-xyz"}
    _no_canary(synced, outcome.message)


async def test_a_wrong_identity_is_a_dek_error() -> None:
    world = DotsecWorld()
    world.set_text(write_sec(BODY)[0])  # another identity
    outcome = await world.cycle()
    assert outcome.reason == Reason.DOTSEC_DEK_UNWRAP_FAILED and ("ns", "out") not in world.kube.secrets


async def test_a_schema_violation_writes_nothing_and_names_key_and_rule_only() -> None:
    world = DotsecWorld()
    world.set_schema(SCHEMA)
    world.publish(f"# @provider=local\nAPI_TOKEN=<<{CANARY}>>\nDB_PASSWORD=<<tiny-pw>>\n", schema=SCHEMA)
    outcome = await world.cycle()
    assert outcome.reason == Reason.SCHEMA_VIOLATION
    assert "DB_PASSWORD: @min-length=8" in outcome.message and "tiny-pw" not in outcome.message
    assert ("ns", "out") not in world.kube.secrets and "apply_secret" not in world.kube.calls
    _no_canary(world, outcome.message)


async def test_the_schema_is_bound_by_the_mac() -> None:
    world = DotsecWorld()
    world.publish(BODY)  # written without a schema
    world.set_schema(SCHEMA)
    assert (await world.cycle()).reason == Reason.DOTSEC_MAC_MISMATCH


async def test_a_file_that_passes_its_schema_syncs_and_deprecations_are_events() -> None:
    schema = SCHEMA + '# @optional @deprecated="use API_TOKEN"\nOLD_TOKEN\n'
    world = DotsecWorld()
    world.set_schema(schema)
    world.publish(BODY + "OLD_TOKEN=<<legacy-value>>\n", schema=schema)
    outcome = await world.cycle()
    assert outcome.ready, outcome.message
    warnings = [e for e in outcome.events if e.reason == Reason.SCHEMA_WARNING]
    assert len(warnings) == 1 and "OLD_TOKEN: @deprecated" in warnings[0].message
    assert "legacy-value" not in warnings[0].message


async def test_an_older_file_coming_back_is_refused_unless_pinned(synced: DotsecWorld) -> None:
    first = synced.kube.config_maps[("ns", "app-sec")]["data"][".sec"]
    old_digest = synced.kube.status["dotsec"]["fileDigest"]
    synced.publish("# @provider=local\nAPI_TOKEN=<<second>>\nDB_PASSWORD=<<second-pw>>\n")
    assert (await synced.cycle()).ready
    synced.set_text(first)  # a replayed, complete, authentic older file
    outcome = await synced.cycle()
    assert outcome.reason == Reason.ROLLBACK_REFUSED and old_digest in outcome.message
    assert synced.secret()["API_TOKEN"] == "second"
    synced.edit_dotsec(pin=old_digest)
    assert (await synced.cycle()).ready and synced.secret()["API_TOKEN"] == CANARY
    assert synced.kube.status["dotsec"]["recentFiles"][1] == old_digest  # the order of first application stays


async def test_rollback_policy_allow_applies_an_older_file(synced: DotsecWorld) -> None:
    first = synced.kube.config_maps[("ns", "app-sec")]["data"][".sec"]
    synced.publish("# @provider=local\nAPI_TOKEN=<<second>>\nDB_PASSWORD=<<second-pw>>\n")
    assert (await synced.cycle()).ready
    synced.edit_spec(rollbackPolicy="Allow")
    synced.set_text(first)
    assert (await synced.cycle()).ready and synced.secret()["API_TOKEN"] == CANARY


@pytest.mark.parametrize(("policy", "reason", "events"), [("warn", None, 1), ("allow", None, 0), ("refuse", "x", 0)])
async def test_the_plaintext_policy(policy: str, reason: str | None, events: int) -> None:
    world = DotsecWorld()
    world.edit_dotsec(plaintext=policy)
    world.publish("# @provider=local\nAPI_TOKEN=<<t0ken-value>>\nPORT=8080\n")
    outcome = await world.cycle()
    if reason:
        assert outcome.reason == Reason.DOTSEC_PLAINTEXT_REFUSED and ("ns", "out") not in world.kube.secrets
        return
    assert outcome.ready and world.secret()["PORT"] == "8080"
    assert world.kube.status["dotsec"]["plaintextKeys"] == ["PORT"]
    warned = [e for e in outcome.events if e.reason == Reason.DOTSEC_PLAINTEXT]
    assert len(warned) == events and all("PORT" in e.message and "8080" not in e.message for e in warned)


async def test_the_default_plaintext_policy_is_warn() -> None:
    parsed = targets.parse_spec(DotsecWorld().spec)
    assert parsed.dotsec is not None and parsed.dotsec.plaintext.value == "warn"


async def test_a_retry_after_a_target_failure_does_not_reopen_the_file(synced: DotsecWorld) -> None:
    synced.publish("# @provider=local\nAPI_TOKEN=<<second>>\nDB_PASSWORD=<<second-pw>>\n")
    synced.kube.failing["apply_secret"] = 500
    assert not (await synced.cycle()).ready
    del synced.kube.failing["apply_secret"]
    before = opens()
    assert (await synced.cycle()).ready and opens() == before and synced.secret()["API_TOKEN"] == "second"


async def test_missing_configmap_and_key_are_named() -> None:
    world = DotsecWorld()
    outcome = await world.cycle()
    assert outcome.reason == Reason.CONFIG_MAP_NOT_FOUND and "app-sec" in outcome.message
    world.kube.put_config_map("ns", "app-sec", {"other": "x"})
    assert (await world.cycle()).reason == Reason.CONFIG_MAP_KEY_NOT_FOUND


async def test_the_referenced_objects_wake_the_worker(synced: DotsecWorld) -> None:
    synced.set_schema("API_TOKEN\nDB_PASSWORD\n")
    outcome = await synced.cycle()
    assert outcome.secret_refs == {"age"} and outcome.config_map_refs == {"app-sec", "schema"}


async def test_an_s3_object_source_uses_a_conditional_get() -> None:
    world = DotsecWorld()
    world.edit_dotsec(configMapRef=None, s3={"configSecretRef": {"name": "cfg"}, "key": "app/prod.sec"})
    world.spec["source"]["dotsec"].pop("configMapRef")
    world.objects.put("p/app/prod.sec", world.write(BODY).encode())
    assert (await world.cycle()).ready and world.secret()["API_TOKEN"] == CANARY
    before, requests = opens(), world.objects.requests
    assert (await world.cycle()).idle and opens() == before and world.objects.requests == requests + 1
    world.objects.put("p/app/prod.sec", world.write("# @provider=local\nAPI_TOKEN=<<s3-second>>\n").encode())
    assert (await world.cycle()).ready and world.secret()["API_TOKEN"] == "s3-second"
    world.objects.objects.pop("p/app/prod.sec")
    assert (await world.cycle()).reason == Reason.MANIFEST_NOT_FOUND


@pytest.mark.parametrize(
    ("dotsec", "message"),
    [
        ({"identitySecretRef": {"name": "age"}}, "exactly one of configMapRef"),
        ({"configMapRef": {"name": "c"}}, "exactly one of identitySecretRef"),
        ({"configMapRef": {"name": "c"}, "identitySecretRef": {"name": "age"}, "plaintext": "maybe"}, "plaintext"),
        ({"configMapRef": {"name": "c"}, "identitySecretRef": {"name": "age"}, "pin": "abc"}, "pin"),
        ({"configMapRef": {"name": "c", "namespace": "other"}, "identitySecretRef": {"name": "age"}}, "namespace"),
        ({"s3": {"configSecretRef": {"name": "cfg"}, "key": "../x"}, "identitySecretRef": {"name": "a"}}, "key"),
    ],
)
def test_bad_dotsec_specs_are_refused(dotsec: dict[str, object], message: str) -> None:
    spec = {**DotsecWorld().spec, "source": {"dotsec": dotsec}}
    with pytest.raises(SpecError, match=message):
        targets.parse_spec(spec, namespace="ns")


def test_one_source_kind_only_and_kms_needs_the_tenants_credentials() -> None:
    world = DotsecWorld()
    both = {**world.spec, "source": {**world.spec["source"], "configSecretRef": {"name": "cfg"}}}
    with pytest.raises(SpecError, match="exactly one source kind"):
        targets.parse_spec(both)
    kms = {**world.spec, "source": {"dotsec": {"configMapRef": {"name": "c"}, "kms": {"region": "eu-west-1"}}}}
    with pytest.raises(SpecError, match="never lent") as caught:
        targets.parse_spec(kms)
    assert caught.value.reason == Reason.POLICY_DENIED


def test_a_target_may_not_overwrite_the_identity_secret() -> None:
    world = DotsecWorld()
    spec = {**world.spec, "targets": [{"name": "app", "kubernetesSecret": {"name": "age"}}]}
    with pytest.raises(SpecError, match="overwriting a source Secret"):
        targets.parse_spec(spec)


def test_layout_dotsec_is_not_a_bucket_layout() -> None:
    world = World()
    with pytest.raises(SpecError, match="layout"):
        targets.parse_spec({**world.spec, "source": {**world.spec["source"], "layout": Layout.DOTSEC.value}})


# --- spec.schema on a vsync bundle ------------------------------------------------------------------------


async def test_a_vsync_bundle_that_breaks_the_schema_writes_nothing() -> None:
    world = World()
    world.kube.put_config_map("ns", "schema", {"dotsec.schema": "# @type=number\nPORT\nAPI_TOKEN\n"})
    world.edit_spec(schema={"configMapRef": {"name": "schema"}})
    world.push(f"PORT=eighty\nAPI_TOKEN={CANARY}\n".encode())
    outcome = await world.cycle()
    assert outcome.reason == Reason.SCHEMA_VIOLATION and "PORT: @type=number" in outcome.message
    assert "eighty" not in outcome.message and "apply_secret" not in world.kube.calls
    assert world.conditions()["Verified"] == ("False", "SchemaViolation")


async def test_a_vsync_bundle_that_passes_syncs_and_a_new_schema_rechecks() -> None:
    world = World()
    world.kube.put_config_map(
        "ns", "schema", {"dotsec.schema": '# @type=number\nPORT\n# @optional @deprecated="x"\nOLD\n'}
    )
    world.edit_spec(schema={"configMapRef": {"name": "schema"}})
    world.push(b"PORT=80\nOLD=1\n")
    outcome = await world.cycle()
    assert outcome.ready and world.secret() == {"PORT": "80", "OLD": "1"}
    assert [e.reason for e in outcome.events if e.reason == Reason.SCHEMA_WARNING] == ["SchemaWarning"]
    assert (await world.cycle()).idle
    world.kube.put_config_map("ns", "schema", {"dotsec.schema": "PORT\nMISSING\n"})
    outcome = await world.cycle()
    assert outcome.reason == Reason.SCHEMA_VIOLATION and "MISSING: required" in outcome.message
    assert world.secret() == {"PORT": "80", "OLD": "1"}


async def test_a_kms_file_uses_the_tenants_credentials_and_the_specs_region() -> None:
    import os

    import boto3
    from moto import mock_aws

    from vaultbundle.dotsec_kms import ENCRYPTION_CONTEXT

    with mock_aws():
        kms = boto3.client("kms", region_name="eu-central-1", aws_access_key_id="a", aws_secret_access_key="s")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        dek = os.urandom(32)
        wrapped = kms.encrypt(KeyId=key_id, Plaintext=dek, EncryptionContext=ENCRYPTION_CONTEXT)["CiphertextBlob"]
        world = DotsecWorld()
        world.set_text(
            write_sec(f"# @provider=aws\n# @region=us-west-2\nT=<<{CANARY}>>\n", dek=dek, wrapped_dek=wrapped)[0]
        )
        world.kube.put_secret("ns", "kms-creds", {"accessKeyId": "tenant-id", "secretAccessKey": "tenant-secret"})
        kms_spec = {"region": "eu-central-1", "credentialsSecretRef": {"name": "kms-creds"}}
        world.edit_spec(source={"dotsec": {"configMapRef": {"name": "app-sec"}, "kms": kms_spec}})
        outcome = await world.cycle()
        assert outcome.ready, outcome.message
        assert world.secret() == {"T": CANARY} and world.kube.status["dotsec"]["provider"] == "aws"
        assert outcome.secret_refs == {"kms-creds"}
        world.kube.put_secret("ns", "kms-creds", {"accessKeyId": "tenant-id"})
        assert (await world.cycle()).reason == Reason.SECRET_KEY_NOT_FOUND


async def test_a_hand_edited_target_of_a_dotsec_source_is_repaired(synced: DotsecWorld) -> None:
    """Drift repair works for a dotsec source as for a vsync bundle: the watch names the target, the file is read
    again (its value is not kept between cycles) and only the edited key is written back; status stays dotsec."""
    before, writes = opens(), len(synced.kube.writes)
    digest = synced.kube.status["dotsec"]["fileDigest"]
    synced.kube.edit_secret("ns", "out", API_TOKEN="hand-edited")
    calls = len(synced.kube.calls)
    outcome = await synced.reconciler.reconcile(replace(synced.observed(), drifted=frozenset({"app"})))
    assert synced.kube.calls[calls:].count("get_config_map") == 1  # the file is read once, in full
    assert synced.secret() == {"API_TOKEN": CANARY, "DB_PASSWORD": "hunter2-xyz"}
    assert synced.kube.writes[writes:].count("apply_secret") == 1 and opens() == before + 1
    assert [e.reason for e in outcome.events if e.reason == Reason.DRIFT_REPAIRED] == [Reason.DRIFT_REPAIRED]
    assert all(CANARY not in e.message and "hand-edited" not in e.message for e in outcome.events)
    status = synced.kube.status
    assert status["source"] == "dotsec" and status["dotsec"]["recentFiles"] == [digest]
    # and a check that finds nothing writes nothing
    writes = len(synced.kube.writes)
    again = await synced.reconciler.reconcile(replace(synced.observed(), drifted=frozenset({"app"})))
    assert again.idle and len(synced.kube.writes) == writes


async def test_a_dotsec_file_that_empties_the_target_is_refused(synced: DotsecWorld) -> None:
    synced.publish("# @provider=local\n")
    outcome = await synced.cycle()
    assert outcome.reason == Reason.BUNDLE_EMPTY and not outcome.ready
    assert synced.secret() == {"API_TOKEN": CANARY, "DB_PASSWORD": "hunter2-xyz"}


async def test_a_failed_drift_repair_of_a_dotsec_source_is_retried_at_once(synced: DotsecWorld) -> None:
    """A repair whose write fails is retried on the next cycle (with the file kept in memory, as after a failed
    full sync), not only when the target's next drift check is due."""
    synced.kube.edit_secret("ns", "out", API_TOKEN="hand-edited")
    synced.kube.failing["apply_secret"] = 500
    failed = await synced.reconciler.reconcile(replace(synced.observed(), drifted=frozenset({"app"})))
    assert not failed.ready and synced.secret()["API_TOKEN"] == "hand-edited"
    del synced.kube.failing["apply_secret"]
    before = opens()
    retried = await synced.cycle()  # no drift event, and the target's check is not due again yet
    assert retried.ready and not retried.idle, retried.message
    assert synced.secret() == {"API_TOKEN": CANARY, "DB_PASSWORD": "hunter2-xyz"}
    assert opens() == before  # the retry used the file opened by the failed repair
