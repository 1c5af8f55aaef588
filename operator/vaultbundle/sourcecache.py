"""In-memory copies of the labelled source Secrets and ConfigMaps, kept current by their watch (secretwatch.py),
so a refresh cycle reads its sources without a GET.

What is kept of an object is only what a read needs: its `data` and `resourceVersion`. Every change the watch
delivers updates the copy before it wakes the VaultBundles that read the object, so the cycle it wakes reads the
new value; a deleted object, or one whose label was removed (the apiserver sends DELETED when an object stops
matching the selector), leaves the cache, and the next read GETs it. A read of the cache can lag the apiserver
only by events still on their way, and each of them wakes the object's readers again once applied.

A read falls back to a GET by name, exactly as without the cache, whenever the cache cannot answer: the object is
not labelled, not seen yet, too large, over its namespace's or the total budget, or its watch is not established
(starting, failed and not yet resumed, relisting after `410 Gone`). A tenant can label any number of large
objects: one larger than `per_object` is never kept, and a namespace's entries stop growing at `per_namespace`
(nothing is evicted, so no tenant pushes out another's entries; the total stops at `total`). Values never show in
a repr, a log or a metric.

Not thread-safe by design: every method runs on the event loop (the watch threads hand over with
`call_soon_threadsafe`), so a read never sees half an update.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import metrics
from .sources import SourceReader

Key = tuple[str, str]  # (namespace, name)
ENTRY_OVERHEAD = 512  # bytes charged per entry on top of its data: many tiny objects pay their share too


@dataclass(frozen=True)
class Budget:
    """Bytes of `data` (keys and values as the apiserver sends them, base64 for Secrets) a cache may hold."""

    per_object: int = 16 * 1024  # config blobs, passphrases and credentials are well below this
    per_namespace: int = 4 * 1024 * 1024
    total: int = 32 * 1024 * 1024


SECRETS_BUDGET = Budget()
CONFIG_MAPS_BUDGET = Budget(per_object=64 * 1024)  # a dotsec .sec text or a schema is larger than a passphrase


@dataclass(frozen=True)
class _Entry:
    version: str
    data: dict[str, str] = field(repr=False)
    size: int


def _entry(obj: dict[str, Any], budget: Budget) -> _Entry | None:
    """What a read needs of *obj*, or None when it is not to be kept (malformed or too large)."""
    version = (obj.get("metadata") or {}).get("resourceVersion")
    data = obj.get("data") or {}
    if not isinstance(version, str) or not isinstance(data, dict):
        return None
    size = ENTRY_OVERHEAD
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return None
        size += len(key) + len(value)
        if size > budget.per_object + ENTRY_OVERHEAD:
            return None
    return _Entry(version, dict(data), size)


class ObjectCache:
    """The labelled objects of one resource (Secrets or ConfigMaps) by (namespace, name), within a `Budget`."""

    def __init__(self, kind: str, budget: Budget = SECRETS_BUDGET) -> None:
        self.kind = kind  # "secret" or "configmap": the metric's label
        self.budget = budget
        self._entries: dict[Key, _Entry] = {}
        self._namespace_bytes: Counter[str] = Counter()
        self.bytes = 0
        self._live: set[str | None] = set()  # watch scopes established: a namespace, or None for every namespace

    def __repr__(self) -> str:
        return f"ObjectCache({self.kind}: {len(self._entries)} objects, {self.bytes} bytes)"

    def __len__(self) -> int:
        return len(self._entries)

    def live(self, namespace: str) -> bool:
        """True while a watch covering *namespace* is established (its copies are current up to events in flight)."""
        return None in self._live or namespace in self._live

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as a read needs it (`metadata.resourceVersion`, `data`), or None: ask the apiserver."""
        entry = self._entries.get((namespace, name)) if self.live(namespace) else None
        if entry is None:
            return None
        metadata = {"namespace": namespace, "name": name, "resourceVersion": entry.version}
        return {"metadata": metadata, "data": dict(entry.data)}

    def put(self, obj: dict[str, Any]) -> None:
        """An object was added or changed: keep its new content if it fits, else forget the old (never serve it)."""
        metadata = obj.get("metadata") or {}
        namespace, name = metadata.get("namespace"), metadata.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            return
        self.remove(namespace, name)
        entry = _entry(obj, self.budget)
        if entry is None:
            return
        if self._namespace_bytes[namespace] + entry.size > self.budget.per_namespace:
            return
        if self.bytes + entry.size > self.budget.total:
            return
        self._entries[(namespace, name)] = entry
        self._namespace_bytes[namespace] += entry.size
        self.bytes += entry.size

    def remove(self, namespace: str, name: str) -> None:
        entry = self._entries.pop((namespace, name), None)
        if entry is None:
            return
        self.bytes -= entry.size
        self._namespace_bytes[namespace] -= entry.size
        if self._namespace_bytes[namespace] <= 0:
            del self._namespace_bytes[namespace]

    def down(self, scope: str | None) -> None:
        """The watch of *scope* (a namespace, or None: all) failed: reads there GET until it is back."""
        self._live.discard(scope)

    def up(self, scope: str | None) -> None:
        """The watch of *scope* resumed from where it was: the events since replay, each waking its readers."""
        self._live.add(scope)

    def replace(self, scope: str | None, objects: Iterable[dict[str, Any]]) -> list[Key]:
        """A fresh list of *scope*: its entries become exactly the listed objects (that fit) and the scope is live.

        Returns the keys held before and absent from the list: objects deleted or unlabelled meanwhile."""
        before = {key for key in self._entries if scope is None or key[0] == scope}
        for key in before:
            self.remove(*key)
        listed: set[Key] = set()
        for obj in objects:
            metadata = obj.get("metadata") or {}
            listed.add((str(metadata.get("namespace")), str(metadata.get("name"))))
            self.put(obj)
        self._live.add(scope)
        return sorted(before - listed)


class CachedReads:
    """`get_secret` and `get_config_map` for source reads: the cache's copy when it holds one, else a GET by
    name through *kube*. Only for sources: a target Secret we write is never read from here."""

    def __init__(
        self,
        kube: SourceReader,
        secrets: ObjectCache | None = None,
        config_maps: ObjectCache | None = None,
    ) -> None:
        self.kube = kube
        self.secrets = secrets or ObjectCache("secret", SECRETS_BUDGET)
        self.config_maps = config_maps or ObjectCache("configmap", CONFIG_MAPS_BUDGET)

    def __repr__(self) -> str:
        return f"CachedReads({self.secrets!r}, {self.config_maps!r})"

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        held = self.secrets.get(namespace, name)
        metrics.SOURCE_READS.labels("secret", "api" if held is None else "cache").inc()
        return held if held is not None else await self.kube.get_secret(namespace, name)

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        held = self.config_maps.get(namespace, name)
        metrics.SOURCE_READS.labels("configmap", "api" if held is None else "cache").inc()
        return held if held is not None else await self.kube.get_config_map(namespace, name)
