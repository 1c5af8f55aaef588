"""Running a store SDK's synchronous calls off the event loop.

Most store SDKs (boto3, PyGithub, hvac, the Azure and Google clients) block. `in_thread` runs one call in the
default executor; `read_many` reads several names at once (bounded); `ThreadedTarget` is the base of a target
whose plan and apply are plain synchronous methods.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, ParamSpec, TypeVar

from .base import Plan

T = TypeVar("T")
P = ParamSpec("P")
StateT = TypeVar("StateT")
MAX_PARALLEL_READS = 8


async def in_thread(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(*args, **kwargs)` in a worker thread; the event loop keeps running meanwhile."""
    return await asyncio.to_thread(function, *args, **kwargs)


def read_many(read: Callable[[str], T], names: Iterable[str]) -> dict[str, T]:
    """`read(name)` for every name, up to MAX_PARALLEL_READS at a time (from a worker thread), in name order."""
    ordered = sorted(names)
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL_READS, len(ordered)))) as pool:
        return dict(zip(ordered, pool.map(read, ordered), strict=True))


class ThreadedTarget(ABC, Generic[StateT]):
    """A target whose `_plan` / `_apply` are synchronous SDK code: `plan` / `apply` run them in a thread."""

    @abstractmethod
    def _plan(self, desired: Mapping[str, bytes]) -> Plan[StateT]:
        """Read the store and compare (no writes), in a worker thread."""

    @abstractmethod
    def _apply(self, plan: Plan[StateT], desired: Mapping[str, bytes]) -> None:
        """Write what *plan* lists, in a worker thread."""

    async def plan(self, desired: Mapping[str, bytes]) -> Plan[StateT]:
        return await in_thread(self._plan, desired)

    async def apply(self, plan: Plan[StateT], desired: Mapping[str, bytes]) -> None:
        await in_thread(self._apply, plan, desired)
