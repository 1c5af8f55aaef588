"""Drift: targets edited behind the operator's back, found and put back without giving up the cheap path.

Two ways a target is looked at again while its bundle, spec and sources are unchanged:

- **Kubernetes Secret targets**, from the managed-Secret watch (`secretwatch.py`, label-selected, metadata
  only). `SecretVersions` remembers the resourceVersion each managed Secret had when a target last wrote it
  (the apply's answer) or read it in sync (its plan); a watch event carrying that version is our own write and
  is ignored. Any other version (a hand edit, a deletion, labels removed: the label-selected watch reports an
  object leaving the selector as DELETED) queues the target for a check, after a short wait from the first
  event (`--drift-debounce`), so a burst of edits costs one repair (the scheduler, controller.py, queues).
- **External stores**, on a timer: each target's `driftCheckInterval` (`check_seconds`), kept per target in
  the reconciler's memory (`due`, `next_due_in`). A write-only store (GitHub Actions) is never read back; its
  opt-in `resyncInterval` re-PUTs every key instead.

A check re-opens the bundle: four S3 requests more than an idle cycle (pointer, bundle, generation marker,
layout probe) and AES-GCM, never a key derivation (the crypto pool keeps derived keys); nothing of the plaintext
is kept between cycles. The check itself is the store's
own read-only `plan` (what a sync compares, keyed digests where the store keeps them); only a target whose plan
finds a difference is written (one new version), with a Normal `DriftRepaired` Event naming keys, never values,
and `vaultbundle_drift_repairs_total{kind}`. A check that finds nothing writes nothing, not even status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import metrics
from .errors import Reason
from .fanout import TargetResult
from .spec import TargetSpec
from .status import Event

RESYNC_KIND = "githubActions"  # write-only: its timer re-PUTs (resyncInterval) instead of reading back


@dataclass(frozen=True)
class Known:
    """A managed Secret as we last left it: whose target wrote it, the resourceVersion it then had, and the
    Secret object's own uid (a Secret deleted and made again by someone else is another object)."""

    uid: str
    target: str
    version: str
    secret_uid: str = ""


class SecretVersions:
    """Per (namespace, Secret name): the owner, target and resourceVersion of our last write or in-sync read."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], Known] = {}
        self._by_uid: dict[str, set[tuple[str, str]]] = {}  # so forgetting one VaultBundle scans only its own

    def note(self, namespace: str, name: str, uid: str, target: str, version: str, secret_uid: str = "") -> None:
        if version:
            key = (namespace, name)
            previous = self._known.get(key)
            if previous is not None and previous.uid != uid:
                self._by_uid.get(previous.uid, set()).discard(key)
            self._known[key] = Known(uid, target, version, secret_uid)
            self._by_uid.setdefault(uid, set()).add(key)

    def get(self, namespace: str, name: str) -> Known | None:
        return self._known.get((namespace, name))

    def book(self, namespace: str, uid: str, target: str) -> Book:
        """What one target of one VaultBundle reports to, and asks, this record (`targets.base.SecretBook`)."""
        return Book(self, namespace, uid, target)

    def forget(self, uid: str) -> None:
        """The VaultBundle is gone: drop its Secrets, so their deletion by the garbage collector wakes nothing."""
        for key in self._by_uid.pop(uid, ()):
            known = self._known.get(key)
            if known is not None and known.uid == uid:
                del self._known[key]


@dataclass(frozen=True)
class Book:
    """`SecretBook` for one target: the Secrets it wrote or found in sync."""

    versions: SecretVersions
    namespace: str
    uid: str
    target: str

    def seen(self, secret: str, metadata: Mapping[str, Any]) -> None:
        version, secret_uid = str(metadata.get("resourceVersion") or ""), str(metadata.get("uid") or "")
        self.versions.note(self.namespace, secret, self.uid, self.target, version, secret_uid)

    def written(self, secret: str) -> bool:
        known = self.versions.get(self.namespace, secret)
        return known is not None and (known.uid, known.target) == (self.uid, self.target)

    def written_object(self, secret: str, metadata: Mapping[str, Any]) -> bool:
        """This very Secret object (same uid) was written by this target: ours even if our annotations were
        stripped from it."""
        known = self.versions.get(self.namespace, secret)
        secret_uid = str(metadata.get("uid") or "")
        return self.written(secret) and known is not None and bool(secret_uid) and known.secret_uid == secret_uid


def due(targets: Sequence[TargetSpec], checked: Mapping[str, float], now: float, drifted: Iterable[str]) -> set[str]:
    """Targets to check this cycle: those a watch event named, and those whose check interval has passed."""
    names = {target.name for target in targets}
    timed = {t.name for t in targets if t.check_seconds and now - checked.get(t.name, now) >= t.check_seconds}
    return (set(drifted) & names) | timed


def next_due_in(targets: Sequence[TargetSpec], checked: Mapping[str, float], now: float) -> float | None:
    """Seconds until the next timed check (None: no target has one), so the worker wakes for it."""
    waits = [t.check_seconds - (now - checked.get(t.name, now)) for t in targets if t.check_seconds]
    return max(0.0, min(waits)) if waits else None


def kept(previous: Mapping[str, Any], fresh: TargetResult | None, spec: TargetSpec) -> TargetResult:
    """A target the check left alone: its last status entry unchanged (a fresh result only if it has none)."""
    if not previous and fresh is not None:
        return fresh
    return TargetResult(
        spec.name,
        spec.kind,
        str(previous.get("state") or "Synced"),
        Reason.SYNCED,
        str(previous.get("message") or ""),
        previous=previous,
        verbatim=True,
    )


def repair_events(results: Sequence[TargetResult]) -> list[Event]:
    """One Normal Event per rewritten target (`DriftRepaired`, or `Applied` for a write-only store's resync) and
    the metric; the keys are named from the plan (names only), or "labels/annotations" when only they moved."""
    found = []
    for result in results:
        if not result.changed:
            continue
        if result.kind == RESYNC_KIND:
            found.append(Event("Normal", Reason.APPLIED, f"target {result.name}: resynced: {result.message}"))
            continue
        metrics.DRIFT_REPAIRS.labels(result.kind).inc()
        plan = result.plan or {}
        keys = sorted({str(k) for part in ("create", "update", "delete") for k in plan.get(part) or []})
        what = f"keys {', '.join(keys)}" if keys else "labels/annotations"
        message = f"target {result.name}: found edited behind our back; put back {what} ({result.message})"
        found.append(Event("Normal", Reason.DRIFT_REPAIRED, message))
    return found
