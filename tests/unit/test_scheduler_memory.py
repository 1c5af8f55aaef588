"""What the scheduler keeps per VaultBundle between cycles: nothing of the kopf event that created or woke it."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import gc
import weakref

from tests.kit import World
from tests.unit.test_scheduler_backoff import FAST, body, until
from vaultbundle.controller import Scheduler


class Cause:
    """Stands for kopf's per-event state (its cause: the raw body, a patch, a logger) set in a context variable
    while a handler runs."""


async def test_workers_do_not_keep_the_handler_context_of_each_event_alive() -> None:
    world = World()
    world.push(b"A=1\n")
    scheduler = Scheduler(world.reconciler, 4, backoff=FAST)
    cause: contextvars.ContextVar[Cause] = contextvars.ContextVar("cause")
    seen: list[weakref.ref[Cause]] = []

    def handle(index: int) -> None:  # what kopf does around our on.event handler
        event = Cause()
        seen.append(weakref.ref(event))
        cause.set(event)
        item = copy.deepcopy(body(world))
        item["metadata"]["uid"] = f"uid-{index}"  # type: ignore[index]
        scheduler.upsert(item)

    try:
        for index in range(1, 4):
            contextvars.copy_context().run(handle, index)
        assert len(scheduler.workers) == 3
        assert all(worker.task is not None for worker in scheduler.workers.values())
        gc.collect()
        # the first handler's context is kept once (kopf's event poster lives in it), the later ones are not
        assert [ref() is not None for ref in seen] == [True, False, False]
    finally:
        await scheduler.stop()


async def test_an_idle_worker_is_one_task() -> None:
    world = World()
    world.push(b"A=1\n")
    scheduler = Scheduler(world.reconciler, 4, backoff=FAST)
    before = asyncio.all_tasks()
    try:
        scheduler.upsert(body(world))
        worker = scheduler.workers["uid-1"]
        await until(lambda: world.kube.secrets.get(("ns", "out")) is not None)
        await asyncio.sleep(0.2)  # past its cycle: waiting for its refresh interval (1m) or a wake
        assert worker.retry.failures == 0
        assert asyncio.all_tasks() - before == {worker.task}  # no helper task per waiting worker
        worker.wake.set()  # and a wake still ends the wait at once
        requests = world.objects.requests
        await until(lambda: world.objects.requests > requests)
    finally:
        await scheduler.stop()
