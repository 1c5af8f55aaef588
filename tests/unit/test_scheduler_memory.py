"""What the scheduler keeps per VaultBundle between cycles: nothing of the kopf event that created or woke it."""

from __future__ import annotations

import contextvars
import copy
import gc
import weakref

from tests.kit import World
from tests.unit.test_scheduler_backoff import FAST, body
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
