"""The cheap paths: an unchanged bundle costs one conditional GET and writes nothing; a retry after a target
failure re-runs only the fan-out (no download, no decryption); anything that may change the result is a full
cycle (a moved pointer, a forced sync, a rotated passphrase)."""

from __future__ import annotations

import pytest

from tests.kit import World


@pytest.fixture
async def synced() -> World:
    world = World()
    world.push(b"A=1\n")
    first = await world.cycle()
    assert first.ready and world.secret() == {"A": "1"}
    world.objects.downloads.clear()
    return world


async def test_idle_cycles_make_no_writes_no_downloads_and_no_derivations(synced: World) -> None:
    writes, derivations = list(synced.kube.writes), synced.derivations
    for _ in range(3):
        requests = synced.objects.requests
        outcome = await synced.cycle()
        assert outcome.idle and outcome.ready and not outcome.status_written
        assert synced.objects.requests == requests + 1  # the conditional GET of the pointer (304)
    assert synced.kube.writes == writes and synced.objects.downloads == [] and synced.derivations == derivations


async def test_a_pinned_version_is_not_even_checked(synced: World) -> None:
    synced.edit_spec(source={**synced.spec["source"], "version": synced.kube.status["bundle"]["timestamp"]})
    assert (await synced.cycle()).ready  # the spec changed: one full cycle
    requests = synced.objects.requests
    assert (await synced.cycle()).idle and synced.objects.requests == requests


async def test_a_new_bundle_is_a_full_cycle(synced: World) -> None:
    second = synced.push(b"A=2\n")
    outcome = await synced.cycle()
    assert not outcome.idle and synced.secret() == {"A": "2"}
    assert f"p/versions/{second}.enc" in synced.objects.downloads


async def test_a_forced_sync_reopens_the_bundle(synced: World) -> None:
    synced.force("now")
    outcome = await synced.cycle()
    assert not outcome.idle and any(key.startswith("p/versions/") for key in synced.objects.downloads)


async def test_a_rotated_passphrase_is_a_full_cycle(synced: World) -> None:
    synced.kube.put_secret("ns", "pass", {"passphrase": "another passphrase"})
    outcome = await synced.cycle()
    assert outcome.reason == "WrongPassphrase" and not outcome.idle


async def test_a_retry_after_a_target_failure_only_reruns_the_fan_out() -> None:
    world = World()
    world.push(b"A=1\n")
    world.kube.put_secret("ns", "out", {})  # not ours: the target fails
    failed = await world.cycle()
    assert world.target()["reason"] == "SecretNotOwned" and not failed.ready and world.derivations == 1
    world.objects.downloads.clear()
    del world.kube.secrets[("ns", "out")]
    requests = world.objects.requests
    retried = await world.cycle()
    assert retried.ready and world.secret() == {"A": "1"}
    assert world.objects.downloads == [] and world.objects.requests == requests + 1  # one 304 check
    assert world.derivations == 1
    assert (await world.cycle()).idle  # after the success, the kept bundle is dropped: the idle path again


async def test_a_moved_pointer_during_a_target_failure_is_opened_again() -> None:
    world = World()
    world.push(b"A=1\n")
    world.kube.put_secret("ns", "out", {})
    await world.cycle()
    del world.kube.secrets[("ns", "out")]
    second = world.push(b"A=2\n")
    world.objects.downloads.clear()
    await world.cycle()
    assert world.secret() == {"A": "2"} and f"p/versions/{second}.enc" in world.objects.downloads
