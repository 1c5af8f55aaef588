"""Fan-out: every target plans and applies on its own; one failure never stops the others, is reported once,
keeps the target's last record, and decides the retry (transient: backoff; permanent: refresh interval)."""

from __future__ import annotations

import pytest

from tests.kit import World
from vaultbundle.errors import Reason
from vaultbundle.fanout import TargetResult


@pytest.fixture
def two_targets() -> World:
    world = World()
    world.spec["targets"] = [
        {"name": "app", "kubernetesSecret": {"name": "out"}},
        {"name": "other", "kubernetesSecret": {"name": "taken"}},
    ]
    world.push(b"A=1\n")
    return world


async def test_a_failing_target_does_not_stop_the_others(two_targets: World) -> None:
    world = two_targets
    world.kube.put_secret("ns", "taken", {"X": "theirs"})
    outcome = await world.cycle()
    assert world.secret("out") == {"A": "1"} and world.secret("taken") == {"X": "theirs"}
    assert (world.target("app")["state"], world.target("other")["state"]) == ("Synced", "Failed")
    assert world.conditions() == {
        "Ready": ("False", "TargetFailed"),
        "Verified": ("True", "Verified"),
        "Synced": ("False", "TargetFailed"),
    }
    assert "failed: other" in outcome.message
    assert outcome.failure is Reason.TARGET_FAILED and not outcome.failure.transient  # waits for the refresh
    assert [(e.type, e.reason) for e in outcome.events] == [
        ("Normal", "Applied"),
        ("Warning", "SecretNotOwned"),
        ("Warning", "TargetFailed"),
    ]
    assert "lastAppliedTimestamp" not in world.kube.status  # the floor moves only when every target holds it


async def test_a_transient_target_failure_is_retried_with_backoff(two_targets: World) -> None:
    world = two_targets
    world.kube.failing["apply_secret"] = 503
    outcome = await world.cycle()
    assert world.target("app")["reason"] == "KubernetesAPIError"
    assert outcome.failure is Reason.KUBERNETES_API_ERROR and outcome.failure.transient


async def test_an_unexpected_exception_is_internal_error_by_type_name_only(two_targets: World) -> None:
    world = two_targets
    world.kube.broken["apply_secret"] = RuntimeError("canary-value-must-not-leak")
    await world.cycle()
    for name in ("app", "other"):
        assert world.target(name)["reason"] == "InternalError"
        assert world.target(name)["message"] == "unexpected RuntimeError"
    assert "canary" not in repr(world.kube.status)


async def test_a_failed_target_keeps_its_last_record(two_targets: World) -> None:
    world = two_targets
    assert (await world.cycle()).ready
    synced = world.target("other")
    world.kube.failing["apply_secret"] = 500
    world.push(b"A=2\n")
    await world.cycle()
    failed = world.target("other")
    assert failed["state"] == "Failed" and failed["keys"] == synced["keys"]
    assert failed["lastSyncTime"] == synced["lastSyncTime"] and "plan" not in failed


async def test_a_repeated_failure_posts_no_new_warning(two_targets: World) -> None:
    world = two_targets
    world.kube.put_secret("ns", "taken", {})
    first = await world.cycle()
    assert ("Warning", "SecretNotOwned") in {(e.type, e.reason) for e in first.events}
    second = await world.cycle()  # app's message loses "(1 created, ...)": one more status write
    assert "SecretNotOwned" not in {e.reason for e in second.events}
    third = await world.cycle()
    assert not third.events and not third.status_written


def test_target_status_entries_carry_no_private_keys_and_no_unread_digest() -> None:
    ok = TargetResult("app", "kubernetesSecret", "Synced", Reason.SYNCED, "Secret out: 1 key(s)", changed=True)
    assert set(ok.to_status()) == {"name", "kind", "state", "reason", "message", "plan"}
    assert ok.to_status()["reason"] == "Synced"
    previous = {"name": "app", "kind": "kubernetesSecret", "keys": 3, "plan": {"create": ["A"]}, "remote": "r"}
    failed = TargetResult(
        "app", "kubernetesSecret", "Failed", Reason.FORBIDDEN, "no", extra={"remote": "r2"}, previous=previous
    )
    assert failed.to_status() == {
        "name": "app",
        "kind": "kubernetesSecret",
        "state": "Failed",
        "reason": "Forbidden",
        "message": "no",
        "keys": 3,
        "remote": "r2",
    }
