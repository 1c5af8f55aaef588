"""Status and conditions: typed conditions whose lastTransitionTime moves only with their status, a status
patch only when more than timestamps changed, and the outcome that decides the next run."""

from __future__ import annotations

from typing import Any

from tests.kit import World
from vaultbundle.errors import Reason
from vaultbundle.status import Condition, needs_patch


def test_last_transition_time_moves_only_when_the_status_does() -> None:
    before = {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}
    same = Condition("Ready", True, Reason.SYNCED, "ok").render(before, 3)
    assert same["lastTransitionTime"] == "2020-01-01T00:00:00Z" and same["observedGeneration"] == 3
    flipped = Condition("Ready", False, Reason.TARGET_FAILED, "x" * 2000).render(before, 3)
    assert flipped["lastTransitionTime"] != "2020-01-01T00:00:00Z" and flipped["status"] == "False"
    assert len(flipped["message"]) == 1024 and flipped["reason"] == "TargetFailed"
    assert flipped["message"].endswith("(truncated)")  # statusbounds: a cut message says so
    assert Condition("Verified", None, Reason.NOT_CHECKED).render({}, 1)["status"] == "Unknown"


def test_only_timestamps_changed_is_not_worth_a_patch() -> None:
    old: dict[str, Any] = {
        "lastSyncTime": "a",
        "targets": [{"name": "t", "lastSyncTime": "a", "lastChangeTime": "a"}],
        "conditions": [{"type": "Ready", "lastTransitionTime": "a"}],
    }
    newer = {
        "lastSyncTime": "b",
        "targets": [{"name": "t", "lastSyncTime": "b", "lastChangeTime": "b"}],
        "conditions": [{"type": "Ready", "lastTransitionTime": "b"}],
    }
    assert not needs_patch(newer, old)
    assert needs_patch({**newer, "pointerETag": "x"}, old)


async def test_a_forced_cycle_that_changes_nothing_writes_no_status() -> None:
    world = World()
    world.push(b"A=1\n")
    await world.cycle()
    world.force("once")
    assert (await world.cycle()).status_written  # the target's message drops "(1 created, ...)"
    patches = world.kube.calls.count("patch_status")
    world.force("again")
    outcome = await world.cycle()
    assert not outcome.idle and not outcome.status_written and outcome.ready  # it ran, and wrote nothing
    assert world.kube.calls.count("patch_status") == patches and world.kube.writes.count("apply_secret") == 1


async def test_conditions_through_failure_and_recovery() -> None:
    world = World()
    world.push(b"A=1\n")
    del world.kube.secrets[("ns", "pass")]
    missing = await world.cycle()
    assert world.conditions() == {
        "Ready": ("False", "SecretNotFound"),
        "Verified": ("Unknown", "NotChecked"),
        "Synced": ("Unknown", "NotAttempted"),
    }
    assert missing.failure is Reason.SECRET_NOT_FOUND and missing.refresh_seconds == 60.0
    assert missing.secret_refs == {"cfg", "pass"}  # the controller wakes the worker when they change
    failed_at = {c["type"]: c["lastTransitionTime"] for c in world.kube.status["conditions"]}

    world.objects.down = True
    world.kube.put_secret("ns", "pass", {"passphrase": "correct horse battery staple"})
    down = await world.cycle()
    assert world.conditions()["Verified"] == ("False", "S3Unreachable")
    assert down.failure is Reason.S3_UNREACHABLE and down.failure.transient
    assert world.kube.status["conditions"][0]["lastTransitionTime"] == failed_at["Ready"]  # still False

    world.objects.down = False
    recovered = await world.cycle()
    assert recovered.ready and recovered.failure is None
    assert world.conditions() == {
        "Ready": ("True", "Synced"),
        "Verified": ("True", "Verified"),
        "Synced": ("True", "Synced"),
    }


async def test_invalid_spec_and_suspend_wait_for_a_change() -> None:
    world = World()
    world.edit_spec(refreshInterval="soon")
    invalid = await world.cycle()
    assert invalid.reason == "InvalidSpec" and invalid.refresh_seconds is None
    assert invalid.failure is Reason.INVALID_SPEC and world.conditions()["Verified"] == ("Unknown", "InvalidSpec")
    world.edit_spec(refreshInterval="1m", suspend=True)
    suspended = await world.cycle()
    assert suspended.reason == "Suspended" and suspended.failure is None and suspended.refresh_seconds is None


async def test_a_failed_status_patch_is_a_transient_failure() -> None:
    world = World()
    world.push(b"A=1\n")
    world.kube.failing["patch_status"] = 500
    outcome = await world.cycle()
    assert world.secret() == {"A": "1"} and not outcome.status_written
    assert outcome.failure is Reason.STATUS_UPDATE_FAILED and outcome.failure.transient
    assert ("Warning", "StatusUpdateFailed") in {(e.type, e.reason) for e in outcome.events}
    del world.kube.failing["patch_status"]
    world.objects.downloads.clear()
    retried = await world.cycle()  # the status was never written: the retry writes it, without a download
    assert retried.status_written and world.conditions()["Ready"] == ("True", "Synced")
    assert world.objects.downloads == []
