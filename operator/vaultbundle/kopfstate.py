"""kopf's per-object state, switched off: we keep none in the cluster, so kopf need not compute any.

kopf keeps two kinds of state for its change-detecting handlers (`on.create`, `on.update`, `on.resume`, ...):
a "diff base" (the last handled spec, stored in an annotation) and handler progress (annotations and
`status.kopf`). For every watch event, whatever handlers exist, it builds the diff base of the new body and
cleans both out of it, each step a deep copy of the whole object, `managedFields` and our status included.
The operator registers no such handler (controller.py: only `on.event`, `on.startup`, `on.cleanup`,
`on.login`), so that work is never used; it was ~11 % of the operator's CPU in a first sync (yappi,
bench/first_sync_cpu.py). `configure` installs storages that keep and compute nothing.

A change-detecting handler added later would silently never see a change with these storages: the unit test
`test_kopfstate.py` fails as soon as the registry holds one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff base that is never stored and always empty (no deep copy of the body per event)."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class NoProgress(kopf.ProgressStorage):
    """Handler progress that is never stored: nothing to fetch, write or clean out of an essence."""

    def fetch(self, *, key: Any, body: kopf.Body) -> None:
        return None

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        return None

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return essence


# kopf's initial listing, in pages: unpaged, a fresh operator among 10,000 VaultBundles parsed one LIST of every
# body with its managedFields (~24 KiB each) before handling any, and the allocator kept that peak for good
LIST_CHUNK = 500
# How long kopf's per-object worker waits for the object's next event before it exits (kopf: 5 s). While it waits
# it still holds the last raw event it handled, the whole body: a fresh operator among 10,000 VaultBundles lists
# them all within those 5 s, so thousands of full bodies were alive at once and the allocator kept that peak.
# Our one handler only hands the object to the scheduler, so a worker that exits sooner costs one Task the next
# time an event comes (our own status patch, a refresh later at the earliest).
IDLE_TIMEOUT = 0.5


def configure(settings: kopf.OperatorSettings) -> None:
    """Switch kopf's per-object state off, page its initial listing and let idle object workers go soon (call
    from an `on.startup` handler, before any watch starts)."""
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.progress_storage = NoProgress()
    settings.watching.chunk_size = LIST_CHUNK
    settings.queueing.idle_timeout = IDLE_TIMEOUT
