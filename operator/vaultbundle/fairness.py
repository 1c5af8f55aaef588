"""Reconcile slots shared fairly between namespaces, so no tenant can stall the others.

`FairSlots` is a counting semaphore with two limits: `total` reconciles at once, and at most `per_namespace`
of them from one namespace. Waiters queue per namespace, and a freed slot goes to the next namespace in
round-robin order that is under its limit, so 16 slow VaultBundles in one namespace delay another namespace's
reconcile by at most one slow cycle, not by the whole queue.

A reconcile woken by a change (`urgent`: a spec edit, a force-sync, a changed source or managed Secret) queues
ahead of its own namespace's timed refreshes: at the front of that namespace's queue. Otherwise a change waits
behind every refresh already queued, which at 10,000 VaultBundles on a busy machine is tens of seconds. It does
not move its namespace ahead in the round robin: a tenant can cause changes at will (annotate its own objects,
edit its own Secrets), so urgency only reorders that tenant's own work and never takes a turn from another
namespace; the per-namespace limit holds as before. A reconcile already queued when the change arrives (its
timed refresh, or a first cycle after a restart) is moved to the front the same way: `hurry(key)`.

A reconcile that waits for something which uses no slot-worthy resource of its own (a PBKDF2 derivation on the
crypto threads) hands its slot back meanwhile: `released()` does that for the slot held by the current task
(a context variable set by `FairSlots.slot`; each worker task runs in its own context) and is a no-op when
the caller holds none (the CLI, tests).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass

_HELD: contextvars.ContextVar[_Held | None] = contextvars.ContextVar("vaultbundle_slot", default=None)


@dataclass
class _Held:
    slots: FairSlots
    namespace: str
    holding: bool = True


class FairSlots:
    def __init__(self, total: int, per_namespace: int) -> None:
        if total < 1 or per_namespace < 1:
            raise ValueError("slot limits must be at least 1")
        self.total, self.per_namespace = total, per_namespace
        self._free = total
        self.running: Counter[str] = Counter()
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()  # order = round robin
        self._keyed: dict[Hashable, tuple[str, asyncio.Future[None]]] = {}  # queued waiters `hurry` can find

    def __repr__(self) -> str:
        return f"<FairSlots free={self._free}/{self.total} per_namespace={self.per_namespace}>"

    @asynccontextmanager
    async def slot(self, namespace: str, *, urgent: bool = False, key: Hashable | None = None) -> AsyncIterator[None]:
        """Hold one slot for *namespace* for the block; *urgent*: ahead of this namespace's other waiters.
        *key* (e.g. the VaultBundle's uid) lets `hurry` find the waiter while it is queued."""
        await self._acquire(namespace, urgent=urgent, key=key)
        held = _Held(self, namespace)
        token = _HELD.set(held)
        try:
            yield
        finally:
            _HELD.reset(token)
            if held.holding:
                self._release(namespace)

    def hurry(self, key: Hashable) -> None:
        """The queued waiter of *key*, if any, moves to the front of its own namespace's queue (a change arrived
        while it waited); the round robin between namespaces is unchanged."""
        namespace, waiter = self._keyed.get(key, ("", None))
        queue = self._waiting.get(namespace)
        if waiter is not None and queue is not None and waiter in queue and queue[0] is not waiter:
            queue.remove(waiter)
            queue.appendleft(waiter)

    async def _acquire(self, namespace: str, *, urgent: bool = False, key: Hashable | None = None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(namespace, deque())
        if urgent:  # ahead of this namespace's own queue only: the round robin between namespaces is unchanged
            queue.appendleft(waiter)
        else:
            queue.append(waiter)
        if key is not None:
            self._keyed[key] = (namespace, waiter)
        self._dispatch()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted just as we were cancelled: give it back
                self._release(namespace)
            else:
                self._forget(namespace, waiter)
            raise
        finally:
            if key is not None and self._keyed.get(key, ("", None))[1] is waiter:
                del self._keyed[key]

    def _forget(self, namespace: str, waiter: asyncio.Future[None]) -> None:
        queue = self._waiting.get(namespace)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._waiting[namespace]

    def _release(self, namespace: str) -> None:
        self._free += 1
        self.running[namespace] -= 1
        if self.running[namespace] <= 0:
            del self.running[namespace]
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to waiters: the first eligible namespace in round-robin order goes first."""
        while self._free:
            namespace = next((ns for ns in self._waiting if self.running[ns] < self.per_namespace), None)
            if namespace is None:
                return
            queue = self._waiting[namespace]
            waiter = queue.popleft()
            if queue:
                self._waiting.move_to_end(namespace)  # this namespace was served: the others go first next time
            else:
                del self._waiting[namespace]
            if waiter.done():  # cancelled while queued
                continue
            self._free -= 1
            self.running[namespace] += 1
            waiter.set_result(None)


@asynccontextmanager
async def released() -> AsyncIterator[None]:
    """Give the current task's slot back for the duration of the block, then queue for it again."""
    held = _HELD.get()
    if held is None or not held.holding:
        yield
        return
    held.slots._release(held.namespace)
    held.holding = False
    yield  # an error (or cancellation) propagates from here without queueing again: nothing is held then
    await held.slots._acquire(held.namespace)
    held.holding = True
