"""The VaultBundle's status vocabulary: what a cycle observed, typed conditions, and the status it reports.

Pure functions and dataclasses, no I/O: `reconcile.py` decides *what* happened, this module says how that is
written down (standard conditions whose `lastTransitionTime` moves only when their status does) and whether it
is worth a status patch at all: a cycle whose status differs only in timestamps writes nothing, which is what
keeps idle refreshes free of API writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import statusbounds
from .errors import Reason

_TIME_FIELDS = frozenset({"lastSyncTime", "lastAttemptTime", "lastTransitionTime", "lastChangeTime"})


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Observed:
    """The VaultBundle as the cycle saw it (from a watch event, or a manifest for `plan`/`sync`)."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str] = field(default_factory=dict)
    drifted: frozenset[str] = frozenset()  # targets whose managed Secret was edited behind our back (drift.py)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Observed:
        meta = body.get("metadata", {})
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation") or 0),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            annotations=dict(meta.get("annotations") or {}),
        )


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Condition:
    """One standard condition; `ok` None means Unknown (the cycle did not get that far)."""

    type: str
    ok: bool | None
    reason: Reason
    message: str = ""

    @property
    def status(self) -> str:
        return "Unknown" if self.ok is None else "True" if self.ok else "False"

    def render(self, previous: Mapping[str, Any], generation: int) -> dict[str, Any]:
        """The status entry; `previous` is the same condition in the last status (or empty)."""
        unchanged = previous.get("status") == self.status
        return {
            "type": self.type,
            "status": self.status,
            "reason": str(self.reason),
            "message": statusbounds.message(self.message),
            "observedGeneration": generation,
            "lastTransitionTime": previous.get("lastTransitionTime") if unchanged else now(),
        }


@dataclass(frozen=True)
class Conditions:
    """The three conditions every cycle reports. `Ready` is what `kubectl get vb` and the metrics show."""

    ready: Condition
    verified: Condition
    synced: Condition

    def render(self, old_status: Mapping[str, Any], generation: int) -> list[dict[str, Any]]:
        previous = {c.get("type"): c for c in old_status.get("conditions") or []}
        return [c.render(previous.get(c.type) or {}, generation) for c in (self.ready, self.verified, self.synced)]


@dataclass
class Outcome:
    """What one cycle did, for the controller (next run, Events, log line) and the CLI (`plan`/`sync`)."""

    refresh_seconds: float | None  # None: run again only when something changes
    failure: Reason | None = None  # what decides the retry (see backoff.py); None after a success
    status_written: bool = False
    events: list[Event] = field(default_factory=list)
    secret_refs: frozenset[str] = frozenset()  # Secrets whose change should trigger a resync
    config_map_refs: frozenset[str] = frozenset()  # ConfigMaps (a dotsec source, a schema) likewise
    idle: bool = False
    ready: bool = False
    reason: str = ""
    message: str = ""
    status: dict[str, Any] = field(default_factory=dict)  # the status this cycle computed
    check_in: float | None = None  # seconds until a target's next timed drift check (None: none has one)
    wake_seconds: float | None = None  # a pending rollout restart is due then: run again no later (no jitter)


def strip_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_times(v) for k, v in value.items() if k not in _TIME_FIELDS}
    if isinstance(value, list):
        return [strip_times(v) for v in value]
    return value


def build(
    observed: Observed, extra: Mapping[str, Any] | None, conditions: Conditions, *, synced_now: bool
) -> dict[str, Any]:
    """The new status: the old one with this cycle's fields and conditions; None values left out."""
    old = observed.status
    status: dict[str, Any] = {**{k: v for k, v in old.items() if k != "conditions"}, **(extra or {})}
    status["observedGeneration"] = observed.generation
    status["conditions"] = conditions.render(old, observed.generation)
    if synced_now:
        status["lastSyncTime"] = now()
    return {k: v for k, v in status.items() if v is not None}


def needs_patch(status: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Only a change other than timestamps is worth a write."""
    return bool(strip_times(dict(status)) != strip_times(dict(old)))


def failure_events(conditions: Conditions) -> list[Event]:
    """The Warning a written, not-Ready status gets (one per change, since unchanged statuses are not written)."""
    ready = conditions.ready
    return [] if ready.ok else [Event("Warning", str(ready.reason), ready.message)]
