"""The reconcile end to end without kopf, a cluster or a network: the in-memory kit (tests/kit/)."""

from __future__ import annotations

import pytest

from tests.kit import World


@pytest.fixture
def world() -> World:
    return World()


async def test_first_sync_then_idle_then_rollback(world: World) -> None:
    kube, objects = world.kube, world.objects
    first = world.push(b"A=1\n")
    outcome = await world.cycle()
    assert world.secret() == {"A": "1"} and outcome.status_written
    assert {c["type"]: c["reason"] for c in kube.status["conditions"]} == {
        "Ready": "Synced",
        "Verified": "Verified",
        "Synced": "Synced",
    }
    assert kube.status["bundle"]["timestamp"] == first and world.derivations == 1

    writes, requests, derivations = len(kube.writes), objects.requests, world.derivations
    idle = await world.cycle()
    assert idle.idle and not idle.status_written
    assert (len(kube.writes), objects.requests, world.derivations) == (writes, requests + 1, derivations)

    second = world.push(b"A=2\n")
    await world.cycle()
    assert world.secret() == {"A": "2"} and kube.status["lastAppliedTimestamp"] == second

    objects.put("p/latest", first.encode())
    applies = kube.calls.count("apply_secret")
    refused = await world.cycle()
    assert kube.status["conditions"][0]["reason"] == "RollbackRefused" and refused.events[-1].type == "Warning"
    assert kube.calls.count("apply_secret") == applies and world.secret() == {"A": "2"}


async def test_failed_target_does_not_take_the_cheap_path(world: World) -> None:
    kube = world.kube
    world.push(b"A=1\n")
    kube.put_secret("ns", "out", {})  # someone else's Secret
    first = await world.cycle()
    assert world.target()["state"] == "Failed" and world.target()["reason"] == "SecretNotOwned"
    assert ("Warning", "SecretNotOwned") in {(e.type, e.reason) for e in first.events}
    again = await world.cycle()  # the same failure: no Event spam, no status write
    assert not again.events and not again.status_written
    del kube.secrets[("ns", "out")]
    await world.cycle()  # the same pointer: the kept bundle is fanned out again, which now succeeds
    assert world.secret() == {"A": "1"} and kube.status["conditions"][0]["reason"] == "Synced"
