"""Anti-rollback: a followed pointer below `status.lastAppliedTimestamp` is refused before anything is
downloaded; a pinned version or `rollbackPolicy: Allow` rolls back on purpose."""

from __future__ import annotations

import pytest

from tests.kit import World
from vaultbundle.errors import Reason


@pytest.fixture
async def two_bundles() -> tuple[World, str, str]:
    world = World()
    first = world.push(b"A=1\n")
    second = world.push(b"A=2\n")
    assert (await world.cycle()).ready and world.kube.status["lastAppliedTimestamp"] == second
    world.objects.put("p/latest", first.encode())  # the pointer moved back
    world.objects.downloads.clear()
    return world, first, second


async def test_a_pointer_moved_back_is_refused_and_nothing_changes(two_bundles: tuple[World, str, str]) -> None:
    world, first, second = two_bundles
    applies = world.kube.calls.count("apply_secret")
    outcome = await world.cycle()
    assert outcome.reason == "RollbackRefused" and first in outcome.message and second in outcome.message
    assert world.conditions()["Verified"] == ("False", "RollbackRefused")
    assert world.conditions()["Synced"] == ("Unknown", "NotAttempted")
    assert world.kube.calls.count("apply_secret") == applies and world.secret() == {"A": "2"}
    assert world.kube.status["lastAppliedTimestamp"] == second
    assert not any(key.startswith("p/versions/") for key in world.objects.downloads)  # refused before the fetch
    assert outcome.failure is Reason.ROLLBACK_REFUSED and not outcome.failure.transient
    assert ("Warning", "RollbackRefused") in {(e.type, e.reason) for e in outcome.events}


async def test_pinning_the_older_version_rolls_back_on_purpose(two_bundles: tuple[World, str, str]) -> None:
    world, first, second = two_bundles
    world.edit_spec(source={**world.spec["source"], "version": first})
    assert (await world.cycle()).ready and world.secret() == {"A": "1"}
    assert world.kube.status["lastAppliedTimestamp"] == second  # the floor is never lowered


async def test_rollback_policy_allow_follows_the_pointer_back(two_bundles: tuple[World, str, str]) -> None:
    world, _, _ = two_bundles
    world.edit_spec(rollbackPolicy="Allow")
    assert (await world.cycle()).ready and world.secret() == {"A": "1"}
