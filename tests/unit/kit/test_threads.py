"""Running synchronous SDK calls off the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping

from vaultbundle.targets.base import Plan
from vaultbundle.targets.threads import MAX_PARALLEL_READS, ThreadedTarget, in_thread, read_many


async def test_in_thread_runs_off_the_loop_and_passes_arguments() -> None:
    loop_thread = threading.get_ident()

    def call(a: int, *, b: int) -> tuple[int, int]:
        return threading.get_ident(), a + b

    worker, total = await in_thread(call, 1, b=2)
    assert worker != loop_thread and total == 3


async def test_the_loop_keeps_running_during_a_blocking_call() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await in_thread(time.sleep, 0.2)
    task.cancel()
    assert ticks >= 5  # a blocking call on the loop itself would give 0


def test_read_many_is_ordered_parallel_and_bounded() -> None:
    active, peak, lock = 0, 0, threading.Lock()

    def read(name: str) -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
        return name.lower()

    names = [f"N{i:02d}" for i in range(20)]
    result = read_many(read, reversed(names))
    assert list(result) == names and result["N03"] == "n03"
    assert 1 < peak <= MAX_PARALLEL_READS
    assert read_many(read, []) == {}


class Counting(ThreadedTarget[str]):
    def __init__(self) -> None:
        self.threads: list[int] = []

    def _plan(self, desired: Mapping[str, bytes]) -> Plan[str]:
        self.threads.append(threading.get_ident())
        return Plan(create=sorted(desired), state="read")

    def _apply(self, plan: Plan[str], desired: Mapping[str, bytes]) -> None:
        self.threads.append(threading.get_ident())
        assert plan.state == "read"


async def test_threaded_target_runs_plan_and_apply_in_threads() -> None:
    target = Counting()
    plan = await target.plan({"B": b"2", "A": b"1"})
    await target.apply(plan, {"A": b"1"})
    assert plan.create == ["A", "B"] and len(target.threads) == 2
    assert threading.get_ident() not in target.threads
