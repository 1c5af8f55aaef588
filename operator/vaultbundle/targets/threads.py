"""Running a store SDK's synchronous calls off the event loop, under the tenant egress policy.

Most store SDKs (boto3, PyGithub, hvac, the Azure and Google clients) block. `in_thread` runs one call in the
default executor; `read_many` reads several names at once (bounded); `ThreadedTarget` is the base of a target
whose plan and apply are plain synchronous methods.

Every one of those calls is tenant I/O: it runs inside `egress.tenant_egress` with the policy of the target's
`EgressScope` (set by `credentials.credentials_for`, which every store calls before its first SDK call), and
the tenant's endpoint is `check_url`-ed before the first call. One wiring for all stores: a store cannot reach
the network from a worker thread without passing the policy. A connection configured by a cluster admin (a
`ClusterTargetStore`) marks its scope `admin()`: its calls run unrestricted.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, ParamSpec, TypeVar

from ..egress import EgressPolicy, guarded
from .base import Plan

T = TypeVar("T")
P = ParamSpec("P")
StateT = TypeVar("StateT")
MAX_PARALLEL_READS = 8


@dataclass
class EgressScope:
    """The egress rules of one target's SDK calls: the policy (None: admin-configured, unrestricted), what to
    name in a refusal, and tenant URLs still to be checked before the next call."""

    policy: EgressPolicy | None
    what: str
    pending: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def expect(self, *urls: str) -> None:
        """More tenant URLs (besides the endpoint) this target will reach: checked before its next SDK call."""
        with self._lock:
            self.pending.update(url for url in urls if url)

    def take_pending(self) -> list[str]:
        with self._lock:
            urls, self.pending = sorted(self.pending), set()
        return urls

    def call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`function(*args, **kwargs)` in this thread under the policy (pending URLs checked first)."""
        return guarded(self.policy, self.what, self.take_pending(), function, *args, **kwargs)


_SCOPE: contextvars.ContextVar[EgressScope | None] = contextvars.ContextVar("vaultbundle_egress", default=None)


def enter_scope(policy: EgressPolicy | None, what: str, endpoint: str = "") -> EgressScope:
    """Start the egress scope of one target in the current task (kept until `isolated()` ends)."""
    scope = EgressScope(policy, what, {endpoint} if endpoint else set())
    _SCOPE.set(scope)
    return scope


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """One target's work: a scope entered inside ends with it, so it never applies to the next target."""
    token = _SCOPE.set(None)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def _scoped(function: Callable[P, T]) -> Callable[P, T]:
    scope = _SCOPE.get()
    return function if scope is None else functools.partial(scope.call, function)


async def in_thread(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(*args, **kwargs)` in a worker thread under the target's egress scope; the event loop keeps
    running meanwhile."""
    return await asyncio.to_thread(_scoped(function), *args, **kwargs)


def read_many(read: Callable[[str], T], names: Iterable[str]) -> dict[str, T]:
    """`read(name)` for every name, up to MAX_PARALLEL_READS at a time (from a worker thread), in name order;
    the pool's threads run under the caller's egress scope too."""
    ordered = sorted(names)
    scoped = _scoped(read)
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL_READS, len(ordered)))) as pool:
        return dict(zip(ordered, pool.map(scoped, ordered), strict=True))


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
