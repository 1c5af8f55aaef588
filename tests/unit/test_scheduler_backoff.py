"""The controller's worker loop honours the retry model: transient failures are retried with backoff (the
count reset by a success), permanent ones wait for the refresh interval, a crash backs off too."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable

from tests.kit import World
from vaultbundle.backoff import Backoff
from vaultbundle.controller import Scheduler
from vaultbundle.digest import Digester
from vaultbundle.reconcile import Reconciler
from vaultbundle.status import Observed, Outcome

FAST = Backoff(base=0.01, cap=0.04, refresh_jitter=0.0)


def body(world: World) -> dict[str, object]:
    observed = world.observed()
    return {
        "metadata": {"namespace": observed.namespace, "name": observed.name, "uid": observed.uid, "generation": 1},
        "spec": copy.deepcopy(dict(observed.spec)),
    }


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_transient_failures_are_retried_with_backoff_until_a_success_resets_it() -> None:
    world = World()
    world.push(b"A=1\n")
    world.objects.down = True
    scheduler = Scheduler(world.reconciler, 4, backoff=FAST)
    scheduler.upsert(body(world))
    worker = scheduler.workers["uid-1"]
    try:
        await until(lambda: worker.retry.failures >= 4)  # S3Unreachable, again and again, within milliseconds
        world.objects.down = False
        await until(lambda: worker.retry.failures == 0)
        assert world.secret() == {"A": "1"}
        requests = world.objects.requests
        await asyncio.sleep(0.3)  # now the refresh interval (1m) applies: no more cycles
        assert world.objects.requests == requests
    finally:
        await scheduler.stop()


async def test_permanent_failures_wait_for_the_refresh_interval() -> None:
    world = World()
    world.push(b"A=1\n")
    world.kube.put_secret("ns", "pass", {"passphrase": "wrong"})
    scheduler = Scheduler(world.reconciler, 4, backoff=FAST)
    scheduler.upsert(body(world))
    worker = scheduler.workers["uid-1"]
    try:
        await until(lambda: worker.retry.failures == 1)
        await asyncio.sleep(0.3)
        assert worker.retry.failures == 1  # WrongPassphrase: no retry before the refresh interval
        world.kube.put_secret("ns", "pass", {"passphrase": "correct horse battery staple"})
        scheduler.secret_changed("ns", "pass")  # a source Secret changed: at once
        await until(lambda: worker.retry.failures == 0)
        assert world.secret() == {"A": "1"}
    finally:
        await scheduler.stop()


class Crashing(Reconciler):
    """A reconciler with a bug: every call raises."""

    calls = 0

    async def reconcile(self, observed: Observed) -> Outcome:
        self.calls += 1
        raise RuntimeError("bug")


async def test_a_crashing_reconcile_is_retried_with_backoff() -> None:
    world = World()
    crashing = Crashing(world.kube, world.pool, Digester(b"k" * 32))
    scheduler = Scheduler(crashing, 4, backoff=FAST)
    scheduler.upsert(body(world))
    try:
        await until(lambda: crashing.calls >= 3)
        assert scheduler.workers["uid-1"].retry.failures >= 2
    finally:
        await scheduler.stop()


async def test_a_source_change_during_the_first_cycle_wakes_it_again() -> None:
    """The first cycle of a spec reads its sources before it can report which it read: the scheduler watches
    them from the spec before that cycle, so a fix landing while it runs is not left for the refresh (1m)."""
    world = World()
    world.push(b"A=1\n")
    world.kube.put_secret("ns", "pass", {"passphrase": "wrong"})
    read, release = asyncio.Event(), asyncio.Event()
    get_secret = world.kube.get_secret

    async def read_then_stall(namespace: str, name: str) -> dict[str, object] | None:
        secret = await get_secret(namespace, name)
        if name == "pass" and not release.is_set():  # the first cycle has read the wrong passphrase
            read.set()
            await release.wait()
        return secret

    world.kube.get_secret = read_then_stall  # type: ignore[method-assign]
    scheduler = Scheduler(world.reconciler, 4, backoff=FAST)
    scheduler.upsert(body(world))
    try:
        await until(read.is_set)
        world.kube.put_secret("ns", "pass", {"passphrase": "correct horse battery staple"})
        scheduler.secret_changed("ns", "pass")  # the watch event of the fix, while the first cycle still runs
        release.set()
        await until(lambda: ("ns", "out") in world.kube.secrets)
        assert world.secret() == {"A": "1"}
    finally:
        await scheduler.stop()
