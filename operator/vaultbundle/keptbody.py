"""What a worker keeps of a VaultBundle between cycles: the fields the operator reads, with shared strings.

A parsed VaultBundle body is ~24 KiB with its `metadata.managedFields`, ~10 KiB without; kept for 10,000
VaultBundles that is ~100 MiB of mostly repeated text: the same keys ("lastTransitionTime", "observedGeneration",
...), condition reasons, timestamps of the same second, namespace names. `kept_body` keeps only what a cycle and
an Event read (apiVersion, kind, metadata name/namespace/uid/generation/annotations, spec, status) and gives
every short string one shared object: ~4 KiB per VaultBundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SharedStrings", "kept_body"]

# read by Observed.from_body (status.py), Scheduler.upsert/remove (controller.py) and kopf's Event reference
KEPT_METADATA = ("name", "namespace", "uid", "generation", "annotations")
KEPT_TOP = ("apiVersion", "kind", "spec", "status")


class SharedStrings:
    """One object per distinct short string (keys, reasons, names, timestamps), bounded: the table is emptied when
    it holds *limit* strings, so churning values (a tenant's annotations, new timestamps) cannot grow it; a string
    then in use stays valid, it is only no longer shared with later ones. Not `sys.intern`: interned strings are
    immortal on some Python versions."""

    def __init__(self, limit: int = 1 << 16, longest: int = 64) -> None:
        self.limit, self.longest = limit, longest
        self._table: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._table)

    def share(self, text: str) -> str:
        if len(text) > self.longest:
            return text
        shared = self._table.get(text)
        if shared is None:
            if len(self._table) >= self.limit:
                self._table.clear()
            shared = self._table[text] = text
        return shared

    def copy(self, value: Any) -> Any:
        """A copy of a parsed JSON value (dicts, lists, scalars) whose short strings are the shared ones."""
        if isinstance(value, str):
            return self.share(value)
        if isinstance(value, Mapping):
            return {self.share(str(k)): self.copy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.copy(item) for item in value]
        return value


SHARED = SharedStrings()


def kept_body(body: Mapping[str, Any], strings: SharedStrings = SHARED) -> dict[str, Any]:
    """The fields of *body* a worker reads, copied (the event's own body is left alone) with shared strings."""
    metadata = body.get("metadata") or {}
    kept = {key: body[key] for key in KEPT_TOP if key in body}
    kept["metadata"] = {key: metadata[key] for key in KEPT_METADATA if key in metadata}
    return dict(strings.copy(kept))
