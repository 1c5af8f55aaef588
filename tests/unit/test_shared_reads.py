"""sources.SharedReads: concurrent reads of one source Secret share a GET; nothing outlives the GET."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vaultbundle.kube import KubeError
from vaultbundle.sources import SharedReads


async def settle() -> None:
    """Let every started task run up to its wait (a read's task starts one loop turn after its caller)."""
    for _ in range(3):
        await asyncio.sleep(0)


class SlowSecrets:
    """get_secret that waits for `release` (so reads overlap on purpose) and counts the GETs."""

    def __init__(self) -> None:
        self.gets: list[tuple[str, str]] = []
        self.release = asyncio.Event()
        self.version = 1
        self.fail = False

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets.append((namespace, name))
        seen = self.version
        await self.release.wait()
        if self.fail:
            raise KubeError("get_secret", 500, "Internal Server Error")
        return {"metadata": {"name": name, "resourceVersion": str(seen)}}


async def test_concurrent_reads_of_one_secret_share_a_get_and_others_do_not() -> None:
    kube = SlowSecrets()
    reads = SharedReads(kube)
    same = [asyncio.create_task(reads.get_secret("a", "pass")) for _ in range(4)]
    other = [asyncio.create_task(reads.get_secret("a", "cfg")), asyncio.create_task(reads.get_secret("b", "pass"))]
    await settle()
    kube.release.set()
    results = await asyncio.gather(*same, *other)
    assert sorted(kube.gets) == [("a", "cfg"), ("a", "pass"), ("b", "pass")]
    assert all(r is not None and r["metadata"]["name"] == "pass" for r in results[:4])
    assert results[4] is not None and results[4]["metadata"]["name"] == "cfg"


async def test_a_read_after_the_shared_one_ended_makes_its_own_get() -> None:
    kube = SlowSecrets()
    kube.release.set()
    reads = SharedReads(kube)
    await reads.get_secret("a", "pass")
    kube.version = 2
    again = await reads.get_secret("a", "pass")
    assert len(kube.gets) == 2 and again is not None and again["metadata"]["resourceVersion"] == "2"


async def test_forget_makes_the_reads_woken_by_a_change_fresh() -> None:
    kube = SlowSecrets()
    reads = SharedReads(kube)
    before = asyncio.create_task(reads.get_secret("a", "pass"))
    await settle()
    kube.version = 2
    reads.forget("a", "pass")  # the watch event of the change
    after = asyncio.create_task(reads.get_secret("a", "pass"))
    await settle()
    kube.release.set()
    old, new = await asyncio.gather(before, after)
    assert len(kube.gets) == 2
    assert old is not None and old["metadata"]["resourceVersion"] == "1"
    assert new is not None and new["metadata"]["resourceVersion"] == "2"


async def test_a_failure_reaches_every_joiner_and_is_not_kept() -> None:
    kube = SlowSecrets()
    kube.fail = True
    reads = SharedReads(kube)
    joined = [asyncio.create_task(reads.get_secret("a", "pass")) for _ in range(3)]
    await settle()
    kube.release.set()
    outcomes = await asyncio.gather(*joined, return_exceptions=True)
    assert len(kube.gets) == 1 and all(isinstance(o, KubeError) for o in outcomes)
    kube.fail = False
    assert await reads.get_secret("a", "pass") is not None and len(kube.gets) == 2


async def test_a_cancelled_joiner_does_not_cancel_the_others() -> None:
    kube = SlowSecrets()
    reads = SharedReads(kube)
    first = asyncio.create_task(reads.get_secret("a", "pass"))
    second = asyncio.create_task(reads.get_secret("a", "pass"))
    await settle()
    first.cancel()  # e.g. its reconcile deadline
    with pytest.raises(asyncio.CancelledError):
        await first
    kube.release.set()
    assert await second is not None and len(kube.gets) == 1
