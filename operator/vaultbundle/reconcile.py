"""One VaultBundle reconcile: read sources, verify the bundle, plan and apply every target, report status.

This module only orchestrates; each step has its own module: `sources` (the two Secrets), `verify` (find,
fetch, open and check the bundle), `dotsec_source` (the same for a dotsec `.sec` source), `schemas`
(`spec.schema`, checked before any target is planned), `fanout` (the targets) and `status` (conditions, and
whether to patch).
It runs over the `KubeAPI` and `ObjectStore` seams, so it is testable without kopf, a cluster or S3
(tests/kit/). The kopf layer (controller.py) schedules calls, decides the next run from the `Outcome`
(backoff.py) and posts the Events this returns.

Cheap path: when the sources, the spec and the pointer's ETag are unchanged and the last cycle succeeded, a
cycle is one conditional S3 GET (304): no key derivation, no decryption, no API write. When the last cycle
verified the bundle but a target failed, the verified bundle is kept in memory (by pointer ETag), so the
retry re-runs only the fan-out: no download, no key derivation, no decryption.

Drift (drift.py) rides on the cheap path: when the scheduler names targets whose managed Secret was edited, or
a store's `driftCheckInterval` has passed, the unchanged cycle re-opens the bundle (no key derivation) and
runs only those targets' plans; a target is written only when its plan finds a difference.
Never silently empty: a verified bundle with no keys and no files, or one that would remove every key a target
holds (fanout.py), is refused with `BundleEmpty` before any target is written, unless `spec.source.allowEmpty`.
Rollout restarts (`rollout.py`) follow the fan-out, and run on the cheap path too while one is pending.
A dotsec source follows the same path, with the ConfigMap's resourceVersion or the S3 object's ETag in the
pointer's place.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import dotsec_source, drift, metrics, rollout, schemas, sources, targets
from .bundles import Bundle, Pointer, check_not_empty
from .crypto import configblob
from .digest import Digester
from .egress import SECURE_DEFAULT, EgressPolicy
from .errors import BundleEmptyError, DotsecError, Reason, SpecError, VaultBundleError, VSyncError
from .fanout import FanOut, TargetResult, events, retry_reason
from .kube import KubeAPI, KubeError
from .pool import CryptoPool
from .remote import ObjectStore, S3ClientCache
from .settings import DEFAULTS
from .spec import SecretRef, TargetSpec, VaultBundleSpec
from .status import Condition, Conditions, Event, Observed, Outcome, build, failure_events, needs_patch, now
from .targets.base import Owner
from .verify import (
    Verified,
    content_items,
    open_bundle,
    pointer_unchanged,
    rollback_floor,
    timestamp_epoch,
    verified_message,
)

__all__ = ["FORCE_SYNC_ANNOTATION", "Event", "Observed", "Outcome", "Reconciler"]

FORCE_SYNC_ANNOTATION = "vaultbundle.io/force-sync"


@dataclass(frozen=True)
class _Memory:
    """What the last cycle that verified a bundle saw, in process memory only.

    `bundle` is kept only when a target or the status patch failed (so the retry skips download and
    decryption); after a full success the pointer's ETag is all the cheap path needs."""

    source_digest: str
    generation: int
    force_token: str
    pointer: Pointer
    bundle: Bundle | None = None
    checked: dict[str, float] = field(default_factory=dict)  # target name -> monotonic time of its last check
    opened: dotsec_source.Opened | None = None  # a dotsec source: the bundle and what status says of it

    def same_input(self, source_digest: str, generation: int, force_token: str) -> bool:
        return (source_digest, generation, force_token) == (self.source_digest, self.generation, self.force_token)


class Reconciler:
    """Runs cycles for any number of VaultBundles; remembers per uid what the cheap path needs."""

    def __init__(
        self,
        kube: KubeAPI,
        pool: CryptoPool,
        digester: Digester,
        s3_factory: Callable[[configblob.BootstrapConfig], ObjectStore] | None = None,
        min_refresh: float = DEFAULTS.min_refresh_seconds,
        write_status: bool = True,
        egress: EgressPolicy | None = None,
        min_drift_check: float = DEFAULTS.min_drift_check_seconds,
        clock: Callable[[], float] = time.monotonic,
        source_reads: sources.SourceReader | None = None,
    ) -> None:
        self.kube, self.pool, self._operator_digester = kube, pool, digester
        # source Secrets and ConfigMaps: the watch's copies when labelled (sourcecache.CachedReads), else GETs
        self.reads: sources.SourceReader = source_reads or kube
        self.egress = egress or SECURE_DEFAULT  # every tenant URL (S3 endpoint, store URLs) is checked against it
        self.s3_factory: Callable[[configblob.BootstrapConfig], ObjectStore] = s3_factory or S3ClientCache()
        self.min_refresh, self.min_drift_check, self.clock = min_refresh, min_drift_check, clock
        self.secret_versions = drift.SecretVersions()  # what our own writes of managed Secrets look like
        self.write_status = write_status  # False for one-shot CLI runs (`vaultbundle plan|sync`)
        self._memory: dict[str, _Memory] = {}
        # per uid: the status.rollouts this process last computed (newer than a status event still on its way)
        self._rollouts: dict[str, list[dict[str, Any]]] = {}
        self.wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # rollout windows (tests set their own)
        self._digesters: dict[str, Digester] = {}  # per namespace; HKDF is cheap, but once per namespace is enough

    def digester(self, namespace: str) -> Digester:
        """Digests for a VaultBundle of *namespace*: under that namespace's own key (L1)."""
        digester = self._digesters.get(namespace)
        if digester is None:
            digester = self._digesters[namespace] = self._operator_digester.for_namespace(namespace)
        return digester

    def forget(self, uid: str) -> None:
        """Drop what the cheap path keeps for *uid*, and its managed Secrets' versions: until its next full cycle
        (or ever, once it is deleted: the garbage collector's deletions are nobody's drift) their events wake
        nothing."""
        self._memory.pop(uid, None)
        self.secret_versions.forget(uid)
        self._rollouts.pop(uid, None)

    async def reconcile(self, observed: Observed) -> Outcome:
        with metrics.RECONCILE_SECONDS.time():
            return await self._reconcile(observed)

    async def _reconcile(self, observed: Observed) -> Outcome:
        try:
            parsed = self._parse(observed)
        except SpecError as exc:
            metrics.SYNCS.labels(exc.reason).inc()
            conditions = Conditions(
                Condition("Ready", False, exc.reason, str(exc)),
                Condition("Verified", None, exc.reason, "spec is invalid"),
                Condition("Synced", None, exc.reason, ""),
            )
            return await self._report(observed, None, conditions, refresh=None, failure=exc.reason)
        if parsed.suspend:
            message = "syncing is suspended; targets keep their content"
            conditions = Conditions(
                Condition("Ready", False, Reason.SUSPENDED, message),
                Condition("Verified", None, Reason.SUSPENDED, message),
                Condition("Synced", None, Reason.SUSPENDED, message),
            )
            outcome = await self._report(observed, None, conditions, refresh=None, failure=None)
        else:
            try:
                outcome = await self._sync(observed, parsed)
            except VaultBundleError as exc:
                outcome = await self._failed(observed, parsed, exc)
        outcome.secret_refs, outcome.config_map_refs = _secret_refs(parsed), parsed.source_config_maps()
        return outcome

    def source_refs(self, observed: Observed) -> tuple[frozenset[str], frozenset[str]]:
        """The Secrets and ConfigMaps *observed*'s spec reads (no I/O; nothing for an invalid spec): the scheduler
        watches them before a cycle whose spec it has not seen, so a change during that cycle still wakes it."""
        try:
            parsed = self._parse(observed)
        except SpecError:
            return frozenset(), frozenset()
        return _secret_refs(parsed), parsed.source_config_maps()

    def _parse(self, observed: Observed) -> VaultBundleSpec:
        return targets.parse_spec(
            observed.spec,
            min_refresh=self.min_refresh,
            namespace=observed.namespace,
            min_drift_check=self.min_drift_check,
        )

    async def report_timeout(self, observed: Observed, seconds: float) -> Outcome:
        """The scheduler cancelled a cycle that ran past its deadline (`--reconcile-timeout`): say so in status."""
        self._memory.pop(observed.uid, None)
        message = f"the reconcile took longer than {seconds:g}s and was cancelled; targets may be partly synced"
        metrics.SYNCS.labels(Reason.RECONCILE_TIMEOUT).inc()
        conditions = Conditions(
            Condition("Ready", False, Reason.RECONCILE_TIMEOUT, message),
            Condition("Verified", None, Reason.NOT_CHECKED, message),
            Condition("Synced", None, Reason.RECONCILE_TIMEOUT, message),
        )
        # ReconcileTimeout is transient: the next try follows the backoff, not the refresh interval
        outcome = await self._report(observed, None, conditions, refresh=None, failure=Reason.RECONCILE_TIMEOUT)
        with contextlib.suppress(SpecError):  # a source Secret that changes meanwhile still wakes the worker
            parsed = self._parse(observed)
            outcome.secret_refs, outcome.config_map_refs = _secret_refs(parsed), parsed.source_config_maps()
        return outcome

    async def _failed(self, observed: Observed, parsed: VaultBundleSpec, exc: VaultBundleError) -> Outcome:
        """The cycle stopped before any target was touched: a bundle error, or a source Secret problem."""
        self._memory.pop(observed.uid, None)  # the cheap unchanged path only ever follows a verified bundle
        metrics.SYNCS.labels(exc.reason).inc()
        checked = isinstance(exc, VSyncError | DotsecError)  # a bundle error: verification ran and failed
        if isinstance(exc, BundleEmptyError):  # verified, then refused for what it holds
            verified = Condition("Verified", True, Reason.VERIFIED, f"verified; refused: {exc}")
        else:
            reason = exc.reason if checked else Reason.NOT_CHECKED
            verified = Condition("Verified", False if checked else None, reason, str(exc))
        conditions = Conditions(
            Condition("Ready", False, exc.reason, str(exc)),
            verified,
            Condition("Synced", None, Reason.NOT_ATTEMPTED, "targets keep their content"),
        )
        restarts = await self._pending_rollouts(observed, parsed)  # due restarts do not wait for the bundle
        extra: dict[str, object] | None = {"rollouts": restarts.entries} if restarts else None
        outcome = await self._report(observed, extra, conditions, refresh=parsed.refresh_seconds, failure=exc.reason)
        return _with_restarts(outcome, restarts)

    async def _sync(self, observed: Observed, parsed: VaultBundleSpec) -> Outcome:
        if parsed.dotsec is not None:
            return await self._sync_dotsec(observed, parsed)
        schema = await schemas.read(self.reads, observed.namespace, parsed.schema)
        source = await sources.read(self.reads, observed.namespace, parsed)
        self.pool.check_iterations(source.config.iterations)  # a tenant's count: refused before any download
        objects = self.s3_factory(source.config)
        source_digest = source.digest(self.digester(observed.namespace), parsed, schema)
        force_token = observed.annotations.get(FORCE_SYNC_ANNOTATION, "")
        memory = self._memory.get(observed.uid)
        if memory and not memory.same_input(source_digest, observed.generation, force_token):
            memory = None
        checking: set[str] = set()
        warnings: list[Event] = []  # the schema's, when the bundle was opened this cycle
        try:
            # a pinned bundle is immutable: nothing to look at; else one conditional GET of the pointer
            if memory and (
                parsed.version or await pointer_unchanged(objects, source.config, memory.pointer, self.egress)
            ):
                if memory.bundle is None:
                    checking = drift.due(parsed.targets, memory.checked, self.clock(), observed.drifted)
                    if not checking:
                        return await self._idle(observed, parsed, memory)
                    # no key derivation (the pool keeps derived keys): one bundle download and AES-GCM
                    floor = rollback_floor(parsed, observed.status)
                    verified = await open_bundle(
                        self.pool, objects, source.config, parsed, source.passphrase, floor, self.egress
                    )
                    if verified.pointer.etag != memory.pointer.etag:  # pushed meanwhile: a full cycle after all
                        checking = set()
                        warnings = schemas.warning_events(await schemas.enforce(verified.bundle, schema))
                else:
                    verified = Verified(memory.bundle, memory.pointer)  # a target failed last time: retry the targets
            else:
                floor = rollback_floor(parsed, observed.status)
                verified = await open_bundle(
                    self.pool, objects, source.config, parsed, source.passphrase, floor, self.egress
                )
                warnings = schemas.warning_events(await schemas.enforce(verified.bundle, schema))
        finally:
            metrics.S3_REQUESTS.inc(objects.requests)
        if checking and memory is not None:
            return await self._check(observed, parsed, verified, memory, checking)
        check_not_empty(verified.bundle, allow=parsed.allow_empty)
        results = await self._fan_out(observed, parsed, verified.bundle)
        restarts = await self._rollout(observed, parsed, results)
        outcome = await self._report_sync(observed, parsed, verified, results, restarts)
        outcome.events += warnings
        checked = dict.fromkeys((t.name for t in parsed.targets), self.clock())  # a full sync checked every target
        self._remember(observed, source_digest, force_token, verified, outcome, checked)
        return self._scheduled(outcome, parsed, checked)

    async def _sync_dotsec(self, observed: Observed, parsed: VaultBundleSpec) -> Outcome:
        """The same cycle over a dotsec `.sec` source: an unchanged file (and key, schema, spec) is not opened."""
        source = parsed.dotsec
        assert source is not None
        digester = self.digester(observed.namespace)
        schema = await schemas.read(self.reads, observed.namespace, parsed.schema)
        owner = Owner(observed.namespace, observed.name, observed.uid)
        inputs = await dotsec_source.read_inputs(self.kube, self.reads, owner, digester, source, schema, self.egress)
        source_digest = inputs.digest(digester, source)
        force_token = observed.annotations.get(FORCE_SYNC_ANNOTATION, "")
        memory = self._memory.get(observed.uid)
        if memory and not memory.same_input(source_digest, observed.generation, force_token):
            memory = None
        checking: set[str] = set()
        if memory is not None and memory.opened is None:
            checking = drift.due(parsed.targets, memory.checked, self.clock(), observed.drifted)
        # a drift check needs the values: then the whole file, else a read that is None when it is unchanged
        known = memory.pointer.etag if memory and not checking else None
        sec = await dotsec_source.fetch(
            self.reads, observed.namespace, source, inputs, self.s3_factory, self.egress, known
        )
        if sec is None:  # unchanged since the last cycle (`known` was set, so there is a memory)
            assert memory is not None
            if memory.opened is None:
                return await self._idle(observed, parsed, memory)
            opened, new_events = memory.opened, []  # a target failed last time: retry the targets
        else:
            # no key derivation in dotsec: opening is an age or KMS unwrap and AES-GCM per value
            opened = await dotsec_source.open_file(sec, inputs, parsed, digester, observed.status, self.egress)
            new_events = list(opened.events)
            if checking and memory is not None and opened.pointer.etag == memory.pointer.etag:
                verified = Verified(opened.bundle, opened.pointer)
                report = _dotsec_report(opened, observed, applied=True)
                return await self._check(observed, parsed, verified, memory, checking, report, opened)
        check_not_empty(opened.bundle, allow=parsed.allow_empty)
        results = await self._fan_out(observed, parsed, opened.bundle)
        restarts = await self._rollout(observed, parsed, results)
        applied = not parsed.dry_run and not any(r.failed for r in results)
        verified = Verified(opened.bundle, opened.pointer)
        report = _dotsec_report(opened, observed, applied=applied)
        outcome = await self._report_sync(observed, parsed, verified, results, restarts, **report)
        outcome.events += new_events
        checked = dict.fromkeys((t.name for t in parsed.targets), self.clock())
        self._remember(observed, source_digest, force_token, verified, outcome, checked, opened)
        return self._scheduled(outcome, parsed, checked)

    async def _idle(self, observed: Observed, parsed: VaultBundleSpec, memory: _Memory) -> Outcome:
        """The cheap path: nothing changed. A pending rollout restart that is due now still happens."""
        metrics.SYNCS.labels(Reason.IDLE).inc()
        outcome = await self._idle_rollouts(observed, parsed)
        return self._scheduled(outcome, parsed, memory.checked)

    def _scheduled(self, outcome: Outcome, parsed: VaultBundleSpec, checked: dict[str, float]) -> Outcome:
        outcome.check_in = drift.next_due_in(parsed.targets, checked, self.clock())
        return outcome

    def _remember(
        self,
        observed: Observed,
        source_digest: str,
        force_token: str,
        verified: Verified,
        outcome: Outcome,
        checked: dict[str, float],
        opened: dotsec_source.Opened | None = None,
    ) -> None:
        """Keep what the next cycle needs. After a failure (a target or the status patch) the bundle stays for the
        retry; for a dotsec source the opened file does (its retry path reads `opened`, not `bundle`)."""
        retry = outcome.failure is not None
        self._memory[observed.uid] = _Memory(
            source_digest,
            observed.generation,
            force_token,
            verified.pointer,
            verified.bundle if retry else None,
            checked,
            opened if retry else None,
        )

    async def _check(
        self,
        observed: Observed,
        parsed: VaultBundleSpec,
        verified: Verified,
        memory: _Memory,
        names: set[str],
        report: dict[str, Any] | None = None,
        opened: dotsec_source.Opened | None = None,
    ) -> Outcome:
        """Plan (and, on a difference, apply) only the targets due for a drift check; the others keep their status
        entry as it is. A check that finds nothing writes nothing."""
        specs = [t for t in parsed.targets if t.name in names]
        memory.checked.update(dict.fromkeys(names, self.clock()))
        # a VaultBundle being deleted: its Secrets go with it (deletionPolicy Delete) or stay; none is recreated
        if any(t.kind == "kubernetesSecret" for t in specs) and not await self._still_wanted(observed):
            return await self._idle(observed, parsed, memory)
        for spec in specs:
            metrics.DRIFT_CHECKS.labels(spec.kind).inc()
        results = {r.name: r for r in await self._fan_out(observed, parsed, verified.bundle, specs, resync=True)}
        touched = {name: r for name, r in results.items() if r.changed or r.failed}
        if not touched:
            return await self._idle(observed, parsed, memory)
        previous = {t.get("name"): t for t in observed.status.get("targets") or []}
        merged = [
            touched.get(t.name) or drift.kept(previous.get(t.name) or {}, results.get(t.name), t)
            for t in parsed.targets
        ]
        restarts = await self._rollout(observed, parsed, merged)  # a repaired Secret restarts its workloads too
        outcome = await self._report_sync(observed, parsed, verified, merged, restarts, repairs=True, **(report or {}))
        self._remember(observed, memory.source_digest, memory.force_token, verified, outcome, memory.checked, opened)
        return self._scheduled(outcome, parsed, memory.checked)

    async def _still_wanted(self, observed: Observed) -> bool:
        """The VaultBundle exists and is not being deleted (a Secret the garbage collector removed stays gone)."""
        try:
            live = await self.kube.get_vaultbundle(observed.namespace, observed.name)
        except KubeError:
            return True  # unknown: repair (a VaultBundle being deleted stops its worker anyway)
        return live is not None and not (live.get("metadata") or {}).get("deletionTimestamp")

    async def _fan_out(
        self,
        observed: Observed,
        parsed: VaultBundleSpec,
        bundle: Bundle,
        specs: list[TargetSpec] | None = None,
        *,
        resync: bool = False,
    ) -> list[TargetResult]:
        def book_for(target: str) -> drift.Book:
            return self.secret_versions.book(observed.namespace, observed.uid, target)

        once = sources.SecretsOnce(self.reads)  # a credentials Secret of several keys is one read per cycle

        async def read_secret(name: str, key: str) -> str:
            return await sources.read_secret_value(once, observed.namespace, SecretRef(name, key), "credentials")

        fan_out = FanOut(
            self.kube,
            self.digester(observed.namespace),
            Owner(observed.namespace, observed.name, observed.uid),
            observed.status.get("targets") or [],
            read_secret,
            parsed.dry_run,
            self.egress,
            book_for,
            allow_empty=parsed.allow_empty,
        )
        return await fan_out.run(parsed.targets if specs is None else specs, bundle, resync=resync)

    def _previous_rollouts(self, observed: Observed) -> list[dict[str, Any]]:
        remembered = self._rollouts.get(observed.uid)
        return remembered if remembered is not None else list(observed.status.get("rollouts") or [])

    async def _rollout(
        self, observed: Observed, parsed: VaultBundleSpec, results: list[TargetResult] | None = None
    ) -> rollout.Step | None:
        """Mark the workloads pending when a Kubernetes Secret target got new content; restart the due ones.
        None when there is nothing to do: a dry run, a one-shot `plan`/`sync` (it keeps no status, so it could
        not keep a window either: restarts are the operator's), or no workloads now and none recorded."""
        previous = self._previous_rollouts(observed)
        if parsed.dry_run or not self.write_status or not (parsed.rollout_targets or previous):
            return None
        changed = [
            secret
            for spec, result in zip(parsed.targets, results or [], strict=results is not None)
            if result.restarts_workloads
            for secret in spec.writes_secrets
        ]
        step = await rollout.step(
            self.kube,
            observed.namespace,
            parsed.rollout_targets,
            parsed.rollout_min_interval,
            previous,
            changed,
            now=self.wall_clock(),
        )
        self._rollouts[observed.uid] = step.entries
        return step

    async def _pending_rollouts(self, observed: Observed, parsed: VaultBundleSpec) -> rollout.Step | None:
        """The rollout step when a restart is pending (no new change to add), else None."""
        if not rollout.has_pending(self._previous_rollouts(observed)):
            return None
        return await self._rollout(observed, parsed)

    async def _idle_rollouts(self, observed: Observed, parsed: VaultBundleSpec) -> Outcome:
        """The idle outcome, after a pending rollout restart that is due now."""
        previous = self._previous_rollouts(observed)
        outcome = Outcome(refresh_seconds=parsed.refresh_seconds, idle=True, ready=True)
        step = await self._pending_rollouts(observed, parsed)
        if step is None:
            return outcome
        outcome.failure = step.retry
        if step.events:  # a restart (or its failure) is worth the operator's log line, unlike an idle cycle
            outcome.idle, outcome.reason = False, step.events[0].reason
            outcome.message = "; ".join(event.message for event in step.events)
        if self.write_status and step.entries != previous:
            try:  # a merge patch of this one field: the rest of the status is unchanged
                await self.kube.patch_status(observed.namespace, observed.name, {"rollouts": step.entries})
                outcome.status_written = True
            except KubeError as exc:
                outcome.failure = Reason.STATUS_UPDATE_FAILED
                outcome.events.append(Event("Warning", Reason.STATUS_UPDATE_FAILED, str(exc)))
        return _with_restarts(outcome, step)

    async def _report_sync(
        self,
        observed: Observed,
        parsed: VaultBundleSpec,
        verified: Verified,
        results: list[TargetResult],
        restarts: rollout.Step | None,
        *,
        repairs: bool = False,
        source_status: dict[str, object] | None = None,
        verified_text: str | None = None,
        label: str | None = None,
    ) -> Outcome:
        """Status after the fan-out. *source_status* replaces the vsync pointer and floor fields (a dotsec
        source has neither); *verified_text* and *label* word the Verified and Synced messages for it."""
        bundle, pointer = verified.bundle, verified.pointer
        failed = [r.name for r in results if r.failed]
        synced_now = not failed and not parsed.dry_run
        floor = observed.status.get("lastAppliedTimestamp") or ""
        if synced_now and source_status is None:
            floor = max(floor, bundle.timestamp)
            metrics.BUNDLE_AGE.values[(observed.namespace, observed.name)] = timestamp_epoch(bundle.timestamp)
        extra: dict[str, object] = {
            "bundle": {
                "layout": bundle.layout.value,
                "timestamp": bundle.timestamp,
                "generation": bundle.generation,
                # the items are built in the thread too: at 10,000 keys that loop is not free
                "digest": await asyncio.to_thread(
                    lambda: self.digester(observed.namespace).digest(content_items(bundle))
                ),
            },
            **(source_status or {"pointerETag": pointer.etag, "lastAppliedTimestamp": floor or None}),
            "targets": [r.to_status() for r in results],
        }
        if restarts is not None and (restarts.entries or observed.status.get("rollouts")):
            extra["rollouts"] = restarts.entries  # an empty list only to clear what was recorded
        synced = _synced_condition(parsed, results, failed, label or f"bundle {bundle.timestamp}")
        metrics.SYNCS.labels(synced.reason).inc()
        conditions = Conditions(
            Condition("Ready", synced.ok, synced.reason, synced.message),
            Condition("Verified", True, Reason.VERIFIED, verified_text or verified_message(bundle)),
            synced,
        )
        outcome = await self._report(
            observed,
            extra,
            conditions,
            refresh=parsed.refresh_seconds,
            failure=retry_reason(results) or (restarts.retry if restarts else None),
            synced_now=synced_now,
        )
        found = events(results, observed.status.get("targets") or [])
        if repairs:  # a drift check: what it rewrote is a repair, not a new bundle applied
            found = drift.repair_events(results) + [e for e in found if e.reason != Reason.APPLIED]
        outcome.events = found + outcome.events
        _with_restarts(outcome, restarts)
        return outcome

    async def _report(
        self,
        observed: Observed,
        extra: dict[str, object] | None,
        conditions: Conditions,
        *,
        refresh: float | None,
        failure: Reason | None,
        synced_now: bool = False,
    ) -> Outcome:
        """Patch status only when something other than timestamps changed: idle cycles write nothing."""
        status = build(observed, extra, conditions, synced_now=synced_now)
        ready = conditions.ready
        metrics.READY.values[(observed.namespace, observed.name)] = 1.0 if ready.ok else 0.0
        outcome = Outcome(
            refresh_seconds=refresh,
            failure=failure,
            ready=bool(ready.ok),
            reason=str(ready.reason),
            message=ready.message,
            status=status,
        )
        if not self.write_status or not needs_patch(status, observed.status):
            return outcome
        status["lastAttemptTime"] = now()
        try:
            await self.kube.patch_status(observed.namespace, observed.name, status)
            outcome.status_written = True
        except KubeError as exc:  # retried with backoff, like any transient failure
            outcome.failure = Reason.STATUS_UPDATE_FAILED
            outcome.events.append(Event("Warning", Reason.STATUS_UPDATE_FAILED, str(exc)))
        outcome.events.extend(failure_events(conditions))
        return outcome


def _with_restarts(outcome: Outcome, restarts: rollout.Step | None) -> Outcome:
    """The rollout step's Events, and when its next pending restart is due (the worker wakes no later)."""
    if restarts is not None:
        outcome.events += restarts.events
        outcome.wake_seconds = restarts.wake_seconds
    return outcome


def _secret_refs(parsed: VaultBundleSpec) -> frozenset[str]:
    """The Secrets whose change should wake this VaultBundle's worker (the scheduler watches them)."""
    return parsed.source_secrets()


def _synced_condition(parsed: VaultBundleSpec, results: list[TargetResult], failed: list[str], what: str) -> Condition:
    if parsed.dry_run:
        message = f"{len(results)} target(s) planned; nothing written (see status.targets[].plan)"
        return Condition("Synced", False, Reason.DRY_RUN, message)
    if failed:
        return Condition(
            "Synced", False, Reason.TARGET_FAILED, f"failed: {', '.join(failed)}; the other targets are in sync"
        )
    return Condition("Synced", True, Reason.SYNCED, f"{len(results)} target(s) hold {what}")


def _dotsec_report(opened: dotsec_source.Opened, observed: Observed, *, applied: bool) -> dict[str, Any]:
    """What `_report_sync` says of a dotsec source instead of a vsync bundle."""
    return {
        "source_status": {
            "source": "dotsec",
            "dotsec": dotsec_source.status_entry(opened, observed.status, applied=applied),
        },
        "verified_text": dotsec_source.verified_message(opened),
        "label": f"dotsec file {opened.file_digest}",
    }
