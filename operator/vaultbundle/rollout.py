"""Rollout restarts: roll the workloads of `spec.rolloutRestartTargets` when a Kubernetes Secret target changes.

A change is new content written to a Secret that already existed (keys created, updated or removed); the first
creation of a Secret, a metadata-only write and a dry run are not changes. A change marks every listed workload
*pending*; a pending workload is restarted once `spec.rolloutMinInterval` has passed since the first change it
waits for (and since its last restart), so every change inside that window is folded into one restart at the
window's end. The restart sets the pod template annotation `vaultbundle.io/restartedAt` (RFC 3339) with a
strategic merge patch of that one key, as `kubectl rollout restart` does with its own annotation.

The state lives in `status.rollouts[]` (kind, name, state, reason, message, restartedAt, pendingSince, secrets),
so a restarted operator or a new leader finishes a pending restart; the reconciler also keeps the last state it
wrote in memory, so a status event that has not arrived yet never causes a second restart. `Step.wake_seconds`
tells the scheduler when the next pending restart is due, so the worker wakes for it even if nothing else happens.

A workload that does not exist (404) or may not be patched (403: the chart's `rbac.rolloutRestart`) is a failure
of that workload only: its entry says so, one Warning Event is posted, the sync itself is unaffected, and the
restart is dropped (the next change tries again). Any other API failure keeps it pending and is retried with
backoff. Messages name workloads and Secrets, never values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import metrics, statusbounds
from .errors import Reason
from .kube import KubeAPI, KubeError
from .spec import Workload
from .status import Event

RESTARTED_AT_ANNOTATION = "vaultbundle.io/restartedAt"
_STAMP = "%Y-%m-%dT%H:%M:%SZ"
_RESOURCES = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}


@dataclass
class Step:
    """What one rollout step decided: the new `status.rollouts`, Events, and when to look again."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    wake_seconds: float | None = None  # the next pending restart is due in this many seconds
    retry: Reason | None = None  # a transient API failure left a restart pending: retry with backoff


def has_pending(entries: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a restart waits (for its window's end, or for a retry)."""
    return any("pendingSince" in entry for entry in entries)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_STAMP)


def _names(value: Any) -> list[str]:
    """The Secret names a status entry recorded (anything else there, e.g. a hand-edited status, is ignored)."""
    return [name for name in value if isinstance(name, str)] if isinstance(value, list) else []


def _parse(text: Any, fallback: datetime) -> datetime:
    """A time this module wrote; anything else (a hand-edited status) counts as *fallback*."""
    try:
        return datetime.strptime(str(text), _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return fallback


async def step(
    kube: KubeAPI,
    namespace: str,
    workloads: Sequence[Workload],
    interval: float,
    previous: Sequence[Mapping[str, Any]],
    changed_secrets: Sequence[str],
    now: datetime | None = None,
) -> Step:
    """Mark every workload pending when *changed_secrets* is not empty, then restart those that are due."""
    moment = now or datetime.now(UTC)
    before = {(e.get("kind"), e.get("name")): e for e in previous if isinstance(e, Mapping)}
    result = Step()
    for workload in workloads:
        entry = dict(before.get((workload.kind, workload.name)) or {"kind": workload.kind, "name": workload.name})
        if changed_secrets:
            known = entry.get("secrets") if "pendingSince" in entry else None
            entry.setdefault("pendingSince", stamp(moment))
            entry["secrets"] = sorted({*_names(known), *changed_secrets})
        if "pendingSince" in entry:
            entry = await _due_or_wait(kube, namespace, workload, interval, entry, moment, result)
        if set(entry) > {"kind", "name"}:  # a workload that never had a change to restart for has no entry
            result.entries.append(entry)
    return result


async def _due_or_wait(
    kube: KubeAPI,
    namespace: str,
    workload: Workload,
    interval: float,
    entry: dict[str, Any],
    moment: datetime,
    result: Step,
) -> dict[str, Any]:
    since = _parse(entry["pendingSince"], moment)
    entry = {**entry, "pendingSince": stamp(since)}  # an unreadable time (a hand-edited status) starts now
    last = _parse(entry.get("restartedAt"), since)
    due = max(since, last) + timedelta(seconds=interval)
    what = f"{workload.kind} {workload.name}"
    changed = ", ".join(f"Secret {name}" for name in _names(entry.get("secrets"))) or "a Secret target"
    if moment < due:
        wait = (due - moment).total_seconds()
        result.wake_seconds = wait if result.wake_seconds is None else min(result.wake_seconds, wait)
        message = f"{changed} changed; restart at {stamp(due)} (rolloutMinInterval folds changes into one restart)"
        return {**entry, "state": "Pending", "reason": str(Reason.ROLLOUT_PENDING), "message": message}
    restarted_at = stamp(moment)
    try:
        await kube.patch_pod_template(namespace, workload.kind, workload.name, {RESTARTED_AT_ANNOTATION: restarted_at})
    except KubeError as exc:
        reason, message = _failure(exc, namespace, workload)
        metrics.ROLLOUT_RESTARTS.labels(workload.kind, str(reason)).inc()
        if (entry.get("state"), entry.get("reason")) != ("Failed", str(reason)):
            result.events.append(Event("Warning", str(reason), f"rollout restart of {what}: {message}"))
        failed = {**entry, "state": "Failed", "reason": str(reason), "message": statusbounds.message(message)}
        if reason.transient:
            result.retry = result.retry or reason
            return failed
        failed.pop("pendingSince", None)  # nothing to restart, or not allowed to: the next change tries again
        return failed
    metrics.ROLLOUT_RESTARTS.labels(workload.kind, str(Reason.ROLLOUT_RESTARTED)).inc()
    message = f"restarted after {changed} changed"
    result.events.append(Event("Normal", str(Reason.ROLLOUT_RESTARTED), f"{what}: {message}"))
    done = {**entry, "state": "Restarted", "reason": str(Reason.ROLLOUT_RESTARTED), "message": message}
    done["restartedAt"] = restarted_at
    done.pop("pendingSince", None)
    return done


def _failure(exc: KubeError, namespace: str, workload: Workload) -> tuple[Reason, str]:
    what = f"{workload.kind} {workload.name}"
    if exc.status == 404:
        return Reason.NOT_FOUND, (
            f"{what} does not exist in namespace {namespace}; nothing was restarted (create it, or fix "
            "spec.rolloutRestartTargets)"
        )
    if exc.status == 403:
        return Reason.FORBIDDEN, (
            f"the operator may not patch {_RESOURCES[workload.kind]} in namespace {namespace}: install the chart "
            "with rbac.rolloutRestart=true (patch on apps deployments, statefulsets and daemonsets); nothing was "
            "restarted"
        )
    return Reason.KUBERNETES_API_ERROR, f"patching {what} failed (HTTP {exc.status}); retrying"
