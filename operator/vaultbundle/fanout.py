"""Plan and apply every target of a VaultBundle; each fails on its own.

Before a store is connected, the store policy decides how it may be reached (`targets.grants`): its own
credentials, or an admin's ClusterTargetStore, or `PolicyDenied`; the store is then confined to that grant.

A target's failure (a typed `VaultBundleError`, or any other exception, reported as `InternalError` by type
name only, because SDK text may quote data) stays in its own `TargetResult`: the other targets still sync.
A failed target keeps its last status record (the store still holds what the last success wrote), updated
with whatever a partly applied plan recorded, e.g. secrets created before the failure.

Never silently empty: unless `spec.source.allowEmpty`, a target whose selection is empty while the store holds
keys we wrote (which the apply would remove) refuses the whole fan-out with `BundleEmpty` before any target is
written: every such target is planned first (read-only). The same check guards each plan again, so a store that
filled up between the two plans fails on its own rather than being emptied.

What a target writes into status is bounded (`statusbounds`): plan lists and failure messages are cut, so a
bundle with 10,000 keys or a store's long error cannot grow the VaultBundle past what etcd takes. Selection and
naming are per-key Python loops, so `desired` is computed in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import metrics, statusbounds, targets
from .bundles import Bundle
from .digest import Digester
from .egress import SECURE_DEFAULT, EgressPolicy
from .errors import BundleEmptyError, Reason, VaultBundleError
from .kube import KubeAPI
from .spec import TargetSpec
from .status import Event, now
from .stores import Grant
from .targets import grants
from .targets.base import Owner, Plan, SecretBook, Target, TargetContext
from .targets.threads import isolated

SecretReader = Callable[[str, str], Awaitable[str]]
BookFor = Callable[[str], SecretBook]  # target name -> where it records the Secrets it writes (drift.py)
KUBERNETES_SECRET = "kubernetesSecret"  # noqa: S105 - a target kind, not a password


@dataclass(frozen=True)
class TargetResult:
    """How one target ended; `to_status()` is its `status.targets[]` entry."""

    name: str
    kind: str
    state: str  # Synced | Planned | Failed
    reason: Reason
    message: str
    changed: bool = False  # the store's content or metadata was written this cycle
    restarts_workloads: bool = False  # new content in a Kubernetes Secret that existed: roll the workloads
    keys: int | None = None
    plan: Mapping[str, Any] | None = None
    last_sync_time: str | None = None
    last_change_time: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # the store's own fields (Target.status_extra)
    previous: Mapping[str, Any] = field(default_factory=dict)  # its entry in the last status
    verbatim: bool = False  # not looked at this cycle (a drift check of other targets): `previous` stays as is

    @property
    def failed(self) -> bool:
        return self.state == "Failed"

    def to_status(self) -> dict[str, Any]:
        if self.verbatim:
            return dict(self.previous)
        own = {"name": self.name, "kind": self.kind, "state": self.state, "reason": str(self.reason)}
        own["message"] = self.message
        if self.failed:
            kept = {k: v for k, v in self.previous.items() if k != "plan"}
            entry = {**kept, **self.extra, **own}
        else:
            entry = {
                **own,
                "keys": self.keys,
                "plan": dict(self.plan or {}),
                "lastSyncTime": self.last_sync_time,
                "lastChangeTime": self.last_change_time,
                **self.extra,
            }
        return {k: v for k, v in entry.items() if v is not None}


@dataclass(frozen=True)
class FanOut:
    """What every target of one VaultBundle needs: the seams, who owns the writes, and the last status."""

    kube: KubeAPI
    digester: Digester
    owner: Owner
    previous_targets: Sequence[Mapping[str, Any]]
    read_secret: SecretReader
    dry_run: bool
    egress: EgressPolicy = SECURE_DEFAULT
    book_for: BookFor | None = None
    allow_empty: bool = False  # spec.source.allowEmpty

    def previous(self, name: str) -> Mapping[str, Any]:
        return next((t for t in self.previous_targets if t.get("name") == name), {})

    async def run(self, specs: Sequence[TargetSpec], bundle: Bundle, *, resync: bool = False) -> list[TargetResult]:
        """One target after the other, in spec order; first, `BundleEmptyError` if one would be emptied.
        *resync*: a timed check, where a write-only store re-PUTs."""
        wanted: dict[str, dict[str, bytes]] = {}
        if not self.allow_empty:
            wanted = await self._refuse_emptying(specs, bundle)
        return [await self.sync(spec, bundle, wanted.get(spec.name), resync=resync) for spec in specs]

    async def _refuse_emptying(self, specs: Sequence[TargetSpec], bundle: Bundle) -> dict[str, dict[str, bytes]]:
        """Each target's desired content; every target that would receive nothing is planned (read-only), and
        `BundleEmptyError` is raised if one of them would lose keys. A target that fails here is left to its own
        sync, which reports the failure (and checks its plan the same way)."""
        wanted: dict[str, dict[str, bytes]] = {}
        for spec in specs:
            try:
                with isolated():
                    desired = wanted[spec.name] = await self._desired(spec, bundle)
                    if not desired:
                        store = await self._connect(spec, await self._authorized(spec))
                        self._check_not_emptied(spec, await store.plan(desired), desired)
            except BundleEmptyError:
                raise
            except Exception:  # noqa: BLE001, S112 - the target's own sync reports it just after
                continue
        return wanted

    @staticmethod
    def _check_not_emptied(
        spec: TargetSpec, plan: Plan[Any], desired: Mapping[str, bytes], *, untouched: str = "any target"
    ) -> None:
        if not desired and plan.delete:
            raise BundleEmptyError(
                f"target {spec.name}: the bundle gives it no keys, so the sync would remove all {len(plan.delete)} "
                f"key(s) it holds; nothing was written to {untouched}. Check the bundle and the target's keys/files "
                "selection, or set spec.source.allowEmpty: true if emptying it is intended"
            )

    @staticmethod
    async def _desired(spec: TargetSpec, bundle: Bundle) -> dict[str, bytes]:
        """What the store should hold (the store policy's cap changes only `prune`, never the content)."""
        return await asyncio.to_thread(targets.load(spec.kind).desired, bundle.vault, spec.selection, spec.body)

    async def _connect(self, spec: TargetSpec, grant: Grant | None, *, resync: bool = False) -> Target:
        """The store, confined to what the store policy granted."""
        context = TargetContext(
            self.kube,
            self.owner,
            self.digester,
            self.previous(spec.name),
            self.read_secret,
            egress=self.egress,
            grant=grant,
            book=self.book_for(spec.name) if self.book_for else None,
            resync=resync,
        )
        return grants.scoped(await targets.load(spec.kind).connect(grants.capped(spec.body, grant), context), grant)

    async def _authorized(self, spec: TargetSpec) -> Grant | None:
        targets.load(spec.kind)  # an SDK that is not installed is reported before the policy is asked
        return await grants.authorize_target(self.kube, self.owner, spec.kind, spec.raw)  # before store I/O

    async def sync(
        self, spec: TargetSpec, bundle: Bundle, desired: dict[str, bytes] | None = None, *, resync: bool = False
    ) -> TargetResult:
        """Plan and apply one target (*desired*: its content, when `run` computed it already)."""
        previous = self.previous(spec.name)
        store: Target | None = None
        try:
            with isolated():  # this target's egress scope ends with it
                grant = await self._authorized(spec)
                content = desired if desired is not None else await self._desired(spec, bundle)
                store = await self._connect(spec, grant, resync=resync)
                result = await self._plan_and_apply(spec, store, content, previous)
        except VaultBundleError as exc:
            result = self._failed(spec, store, previous, exc.reason, str(exc))
        except Exception as exc:  # noqa: BLE001 - one broken store must not stop the others; SDK text may hold data
            result = self._failed(spec, store, previous, Reason.INTERNAL_ERROR, f"unexpected {type(exc).__name__}")
        metrics.TARGET_SYNCS.labels(spec.kind, str(result.reason)).inc()
        return result

    async def _plan_and_apply(
        self, spec: TargetSpec, store: Target, desired: Mapping[str, bytes], previous: Mapping[str, Any]
    ) -> TargetResult:
        plan = await store.plan(desired)
        if not self.allow_empty:
            self._check_not_emptied(spec, plan, desired, untouched="it")  # the store filled up since `run` looked
        changed = plan.changed and not self.dry_run
        if changed:
            await store.apply(plan, desired)
        counts = f"{len(plan.create)} created, {len(plan.update)} updated, {len(plan.delete)} removed"
        if self.dry_run:
            state, reason, message = "Planned", Reason.DRY_RUN, f"{store.describe()}: would be {counts}"
        else:
            state, reason = "Synced", Reason.SYNCED
            message = f"{store.describe()}: {len(desired)} key(s)" + (f" ({counts})" if changed else "")
        stamp = now()
        return TargetResult(
            spec.name,
            spec.kind,
            state,
            reason,
            message,
            changed=changed,
            restarts_workloads=changed
            and spec.kind == KUBERNETES_SECRET
            and plan.state is not None  # the Secret existed: its first creation restarts nothing
            and bool(plan.create or plan.update or plan.delete),
            keys=len(desired),
            plan=statusbounds.plan(plan.as_status()),
            last_sync_time=stamp,
            last_change_time=stamp if changed else previous.get("lastChangeTime"),
            extra=store.status_extra(),
        )

    @staticmethod
    def _failed(
        spec: TargetSpec, store: Target | None, previous: Mapping[str, Any], reason: Reason, message: str
    ) -> TargetResult:
        partial = store.status_extra() if store is not None else {}
        bounded = statusbounds.message(message)
        return TargetResult(spec.name, spec.kind, "Failed", reason, bounded, extra=partial, previous=previous)


def events(results: Sequence[TargetResult], previous_targets: Sequence[Mapping[str, Any]]) -> list[Event]:
    """One Normal Event per changed target; one Warning per *new* failure, not one per retry."""
    before = {t.get("name"): (t.get("state"), t.get("reason")) for t in previous_targets}
    applied = [Event("Normal", Reason.APPLIED, f"target {r.name}: {r.message}") for r in results if r.changed]
    failed = [
        Event("Warning", str(r.reason), f"target {r.name}: {r.message}")
        for r in results
        if r.failed and before.get(r.name) != ("Failed", str(r.reason))
    ]
    return applied + failed


def retry_reason(results: Sequence[TargetResult]) -> Reason | None:
    """None when every target is fine; a transient target reason if one failed so (backoff), else TargetFailed."""
    failures = [r.reason for r in results if r.failed]
    if not failures:
        return None
    return next((reason for reason in failures if reason.transient), Reason.TARGET_FAILED)
