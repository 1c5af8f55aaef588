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
retry re-runs only the fan-out: no download, no key derivation, no decryption. A dotsec source follows the
same path, with the ConfigMap's resourceVersion or the S3 object's ETag in the pointer's place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from . import dotsec_source, metrics, schemas, sources, targets
from .bundles import Bundle, Pointer
from .crypto import configblob
from .digest import Digester
from .egress import SECURE_DEFAULT, EgressPolicy
from .errors import DotsecError, Reason, SpecError, VaultBundleError, VSyncError
from .fanout import FanOut, TargetResult, events, retry_reason
from .kube import KubeAPI, KubeError
from .pool import CryptoPool
from .remote import ObjectStore, S3ClientCache
from .settings import DEFAULTS
from .spec import SecretRef, VaultBundleSpec
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
    ) -> None:
        self.kube, self.pool, self._operator_digester = kube, pool, digester
        self.egress = egress or SECURE_DEFAULT  # every tenant URL (S3 endpoint, store URLs) is checked against it
        self.s3_factory: Callable[[configblob.BootstrapConfig], ObjectStore] = s3_factory or S3ClientCache()
        self.min_refresh = min_refresh
        self.write_status = write_status  # False for one-shot CLI runs (`vaultbundle plan|sync`)
        self._memory: dict[str, _Memory] = {}
        self._digesters: dict[str, Digester] = {}  # per namespace; HKDF is cheap, but once per namespace is enough

    def digester(self, namespace: str) -> Digester:
        """Digests for a VaultBundle of *namespace*: under that namespace's own key (L1)."""
        digester = self._digesters.get(namespace)
        if digester is None:
            digester = self._digesters[namespace] = self._operator_digester.for_namespace(namespace)
        return digester

    def forget(self, uid: str) -> None:
        self._memory.pop(uid, None)

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

    def _parse(self, observed: Observed) -> VaultBundleSpec:
        return targets.parse_spec(observed.spec, min_refresh=self.min_refresh, namespace=observed.namespace)

    async def report_timeout(self, observed: Observed, seconds: float) -> Outcome:
        """The scheduler cancelled a cycle that ran past its deadline (`--reconcile-timeout`): say so in status."""
        self.forget(observed.uid)
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
        self.forget(observed.uid)  # the cheap unchanged path only ever follows a verified bundle
        metrics.SYNCS.labels(exc.reason).inc()
        checked = isinstance(exc, VSyncError | DotsecError)  # a bundle error: verification ran and failed
        conditions = Conditions(
            Condition("Ready", False, exc.reason, str(exc)),
            Condition("Verified", False if checked else None, exc.reason if checked else Reason.NOT_CHECKED, str(exc)),
            Condition("Synced", None, Reason.NOT_ATTEMPTED, "targets keep their content"),
        )
        return await self._report(observed, None, conditions, refresh=parsed.refresh_seconds, failure=exc.reason)

    async def _sync(self, observed: Observed, parsed: VaultBundleSpec) -> Outcome:
        if parsed.dotsec is not None:
            return await self._sync_dotsec(observed, parsed)
        schema = await schemas.read(self.kube, observed.namespace, parsed.schema)
        source = await sources.read(self.kube, observed.namespace, parsed)
        self.pool.check_iterations(source.config.iterations)  # a tenant's count: refused before any download
        objects = self.s3_factory(source.config)
        source_digest = source.digest(self.digester(observed.namespace), parsed, schema)
        force_token = observed.annotations.get(FORCE_SYNC_ANNOTATION, "")
        memory = self._memory.get(observed.uid)
        if memory and not memory.same_input(source_digest, observed.generation, force_token):
            memory = None
        warnings: list[Event] = []  # the schema's, when the bundle was opened this cycle
        try:
            # a pinned bundle is immutable: nothing to look at; else one conditional GET of the pointer
            if memory and (
                parsed.version or await pointer_unchanged(objects, source.config, memory.pointer, self.egress)
            ):
                if memory.bundle is None:
                    metrics.SYNCS.labels(Reason.IDLE).inc()
                    return Outcome(refresh_seconds=parsed.refresh_seconds, idle=True, ready=True)
                verified = Verified(memory.bundle, memory.pointer)  # a target failed last time: retry the targets
            else:
                floor = rollback_floor(parsed, observed.status)
                verified = await open_bundle(
                    self.pool, objects, source.config, parsed, source.passphrase, floor, self.egress
                )
                warnings = schemas.warning_events(await schemas.enforce(verified.bundle, schema))
        finally:
            metrics.S3_REQUESTS.inc(objects.requests)
        results = await self._fan_out(observed, parsed, verified.bundle)
        outcome = await self._report_sync(observed, parsed, verified, results)
        outcome.events += warnings
        retry = outcome.failure is not None  # a target or the status patch failed: keep the bundle for the retry
        self._memory[observed.uid] = _Memory(
            source_digest, observed.generation, force_token, verified.pointer, verified.bundle if retry else None
        )
        return outcome

    async def _sync_dotsec(self, observed: Observed, parsed: VaultBundleSpec) -> Outcome:
        """The same cycle over a dotsec `.sec` source: an unchanged file (and key, schema, spec) is not opened."""
        source = parsed.dotsec
        assert source is not None
        digester = self.digester(observed.namespace)
        schema = await schemas.read(self.kube, observed.namespace, parsed.schema)
        inputs = await dotsec_source.read_inputs(self.kube, observed.namespace, source, schema)
        source_digest = inputs.digest(digester, source)
        force_token = observed.annotations.get(FORCE_SYNC_ANNOTATION, "")
        memory = self._memory.get(observed.uid)
        if memory and not memory.same_input(source_digest, observed.generation, force_token):
            memory = None
        known = memory.pointer.etag if memory else None
        sec = await dotsec_source.fetch(
            self.kube, observed.namespace, source, inputs, self.s3_factory, self.egress, known
        )
        if sec is None and memory is not None:
            if memory.opened is None:
                metrics.SYNCS.labels(Reason.IDLE).inc()
                return Outcome(refresh_seconds=parsed.refresh_seconds, idle=True, ready=True)
            opened, new_events = memory.opened, []  # a target failed last time: retry the targets
        else:
            assert sec is not None
            opened = await dotsec_source.open_file(sec, inputs, parsed, digester, observed.status, self.egress)
            new_events = list(opened.events)
        results = await self._fan_out(observed, parsed, opened.bundle)
        applied = not parsed.dry_run and not any(r.failed for r in results)
        outcome = await self._report_sync(
            observed,
            parsed,
            Verified(opened.bundle, opened.pointer),
            results,
            source_status={
                "source": "dotsec",
                "dotsec": dotsec_source.status_entry(opened, observed.status, applied=applied),
            },
            verified_text=dotsec_source.verified_message(opened),
            label=f"dotsec file {opened.file_digest}",
        )
        outcome.events += new_events
        retry = outcome.failure is not None
        self._memory[observed.uid] = _Memory(
            source_digest, observed.generation, force_token, opened.pointer, opened=opened if retry else None
        )
        return outcome

    async def _fan_out(self, observed: Observed, parsed: VaultBundleSpec, bundle: Bundle) -> list[TargetResult]:
        async def read_secret(name: str, key: str) -> str:
            return await sources.read_secret_value(self.kube, observed.namespace, SecretRef(name, key), "credentials")

        fan_out = FanOut(
            self.kube,
            self.digester(observed.namespace),
            Owner(observed.namespace, observed.name, observed.uid),
            observed.status.get("targets") or [],
            read_secret,
            parsed.dry_run,
            self.egress,
        )
        return await fan_out.run(parsed.targets, bundle)

    async def _report_sync(
        self,
        observed: Observed,
        parsed: VaultBundleSpec,
        verified: Verified,
        results: list[TargetResult],
        *,
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
            metrics.BUNDLE_AGE.applied[(observed.namespace, observed.name)] = timestamp_epoch(bundle.timestamp)
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
            failure=retry_reason(results),
            synced_now=synced_now,
        )
        outcome.events = events(results, observed.status.get("targets") or []) + outcome.events
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
        metrics.READY.labels(observed.namespace, observed.name).set(1 if ready.ok else 0)
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
