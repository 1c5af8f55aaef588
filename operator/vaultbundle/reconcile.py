"""One VaultBundle reconcile: read sources, verify the bundle, plan and apply every target, report status.

Plain async code over small interfaces (Kube, S3Objects, CryptoPool), testable without kopf. The kopf layer
(controller.py) only schedules calls and posts the Events this returns.

Cheap path: when the sources, the spec and the pointer's ETag are unchanged and the last cycle succeeded, a
cycle is one conditional S3 GET (304): no key derivation, no decryption, no API write.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import bundles, metrics, statusbounds, targets
from . import spec as spec_module
from .bundles import Bundle, Pointer
from .crypto import configblob
from .digest import Digester
from .errors import Reason, RollbackRefusedError, SpecError, TargetError, VSyncError
from .kube import Kube, KubeError
from .pool import CryptoPool
from .remote import S3ClientCache, S3Objects
from .spec import TargetSpec, VaultBundleSpec
from .targets.base import Owner, Target, TargetContext

FORCE_SYNC_ANNOTATION = "vaultbundle.io/force-sync"
ERROR_RETRY_SECONDS = 30.0
_TIME_FIELDS = frozenset({"lastSyncTime", "lastAttemptTime", "lastTransitionTime", "lastChangeTime"})
_TRANSIENT = frozenset({"S3Unreachable", "KubernetesAPIError"})


@dataclass(frozen=True)
class Observed:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str] = field(default_factory=dict)

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


@dataclass
class Outcome:
    retry_after: float | None
    status_written: bool = False
    events: list[Event] = field(default_factory=list)
    secret_refs: frozenset[str] = frozenset()  # Secrets whose change should trigger a resync
    idle: bool = False
    ready: bool = False
    reason: str = ""
    message: str = ""
    status: dict[str, Any] = field(default_factory=dict)  # the status this cycle computed


@dataclass
class _Memory:
    """What the last successful cycle saw, in process memory only."""

    source_digest: str
    generation: int
    force_token: str
    pointer: Pointer


class Failure(Exception):
    """A cycle stops here; `reason` goes into the conditions. `verified` says how far verification got."""

    def __init__(self, reason: str, message: str, *, verified: bool | None = None) -> None:
        super().__init__(message)
        self.reason, self.verified = reason, verified


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strip_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items() if k not in _TIME_FIELDS}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def _conditions(
    old: Mapping[str, Any], generation: int, **states: tuple[bool | None, str, str]
) -> list[dict[str, Any]]:
    """Standard conditions; lastTransitionTime only moves when a condition's status does."""
    previous = {c.get("type"): c for c in old.get("conditions") or []}
    result = []
    for kind, (ok, reason, message) in states.items():
        status = "Unknown" if ok is None else "True" if ok else "False"
        before = previous.get(kind) or {}
        result.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message[:1024],
                "observedGeneration": generation,
                "lastTransitionTime": before.get("lastTransitionTime") if before.get("status") == status else _now(),
            }
        )
    return result


def content_items(bundle: Bundle) -> dict[str, bytes]:
    """What the content digest covers: every key/value and every file of the bundle."""
    return {
        **{f"kv:{k}": v.encode() for k, v in bundle.vault.kv.items()},
        **{f"file:{k}": v for k, v in bundle.vault.files.items()},
    }


def _timestamp_epoch(timestamp: str) -> float:
    return datetime.strptime(timestamp, "%Y%m%d-%H%M%S").replace(tzinfo=UTC).timestamp()


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        pool: CryptoPool,
        digester: Digester,
        s3_factory: Callable[[configblob.BootstrapConfig], S3Objects] | None = None,
        min_refresh: float = spec_module.MIN_REFRESH_SECONDS,
        write_status: bool = True,
    ) -> None:
        self.kube, self.pool, self.digester = kube, pool, digester
        self.s3_factory = s3_factory or S3ClientCache()
        self.min_refresh = min_refresh
        self.write_status = write_status  # False for one-shot CLI runs (`vaultbundle plan|sync`)
        self._memory: dict[str, _Memory] = {}

    def forget(self, uid: str) -> None:
        self._memory.pop(uid, None)

    async def reconcile(self, observed: Observed) -> Outcome:
        with metrics.RECONCILE_SECONDS.time():
            return await self._reconcile(observed)

    async def _reconcile(self, observed: Observed) -> Outcome:
        try:
            parsed = spec_module.parse(observed.spec, min_refresh=self.min_refresh, namespace=observed.namespace)
        except SpecError as exc:
            metrics.SYNCS.labels(exc.reason).inc()
            return await self._report(
                observed,
                None,
                retry=None,
                ready=(False, exc.reason, str(exc)),
                verified=(None, exc.reason, "spec is invalid"),
                synced=(None, exc.reason, ""),
            )
        refs = frozenset({parsed.config_ref.name, parsed.passphrase_ref.name})
        if parsed.suspend:
            message = "syncing is suspended; targets keep their content"
            outcome = await self._report(
                observed,
                None,
                retry=None,
                ready=(False, "Suspended", message),
                verified=(None, "Suspended", message),
                synced=(None, "Suspended", message),
            )
        else:
            try:
                outcome = await self._sync(observed, parsed)
            except (Failure, VSyncError) as exc:
                self.forget(observed.uid)  # the cheap unchanged path only ever follows a success
                reason = exc.reason
                verified = exc.verified if isinstance(exc, Failure) else False
                metrics.SYNCS.labels(reason).inc()
                retry = (
                    min(parsed.refresh_seconds, ERROR_RETRY_SECONDS) if reason in _TRANSIENT else parsed.refresh_seconds
                )
                outcome = await self._report(
                    observed,
                    None,
                    retry=retry,
                    ready=(False, reason, str(exc)),
                    verified=(verified, reason if verified is not None else "NotChecked", str(exc)),
                    synced=(None, "NotAttempted", "targets keep their content"),
                )
        outcome.secret_refs = refs
        return outcome

    async def report_timeout(self, observed: Observed, seconds: float) -> Outcome:
        """The scheduler cancelled a cycle that ran past its deadline (`--reconcile-timeout`): say so in status."""
        self.forget(observed.uid)
        message = f"the reconcile took longer than {seconds:g}s and was cancelled; targets may be partly synced"
        metrics.SYNCS.labels(Reason.RECONCILE_TIMEOUT).inc()
        return await self._report(
            observed,
            None,
            retry=ERROR_RETRY_SECONDS,
            ready=(False, Reason.RECONCILE_TIMEOUT, message),
            verified=(None, "NotChecked", message),
            synced=(None, Reason.RECONCILE_TIMEOUT, message),
        )

    async def _read_secret_value(self, namespace: str, ref: spec_module.SecretRef, what: str) -> str:
        try:
            secret = await self.kube.get_secret(namespace, ref.name)
        except KubeError as exc:
            raise Failure("KubernetesAPIError", f"reading the {what} Secret failed: {exc}") from None
        if secret is None:
            raise Failure("SecretNotFound", f"{what} Secret {ref.name!r} not found in namespace {namespace!r}")
        raw = (secret.get("data") or {}).get(ref.key)
        if raw is None:
            raise Failure("SecretKeyNotFound", f"{what} Secret {ref.name!r} has no key {ref.key!r}")
        try:
            text = base64.b64decode(raw, validate=True).decode("utf-8").rstrip("\r\n\t ")
        except (binascii.Error, UnicodeDecodeError):
            raise Failure("SecretInvalid", f"{what} Secret {ref.name!r} key {ref.key!r} is not UTF-8 text") from None
        if not text:
            raise Failure("SecretInvalid", f"{what} Secret {ref.name!r} key {ref.key!r} is empty")
        return text

    async def _sync(self, observed: Observed, parsed: VaultBundleSpec) -> Outcome:
        blob = await self._read_secret_value(observed.namespace, parsed.config_ref, "config")
        passphrase = await self._read_secret_value(observed.namespace, parsed.passphrase_ref, "passphrase")
        config = configblob.decode(blob)
        self.pool.check_iterations(config.iterations)  # before any download or derivation
        objects = self.s3_factory(config)
        source_digest = self.digester.digest(
            {
                "config": blob,
                "passphrase": passphrase,
                "layout": parsed.layout.value,
                "version": parsed.version,
                "envFile": parsed.env_file or "",
            }
        )
        force_token = observed.annotations.get(FORCE_SYNC_ANNOTATION, "")
        memory = self._memory.get(observed.uid)
        try:
            if (
                memory
                and memory.source_digest == source_digest
                and memory.generation == observed.generation
                and memory.force_token == force_token
            ):
                if parsed.version:  # a pinned bundle is immutable: nothing to look at
                    metrics.SYNCS.labels("Idle").inc()
                    return Outcome(retry_after=parsed.refresh_seconds, idle=True, ready=True)
                changed = await asyncio.to_thread(
                    bundles.read_pointer, objects, config, memory.pointer.layout, known_etag=memory.pointer.etag
                )
                if changed is None:
                    metrics.SYNCS.labels("Idle").inc()
                    return Outcome(retry_after=parsed.refresh_seconds, idle=True, ready=True)
            bundle, pointer = await self._open(observed, parsed, config, objects, passphrase)
        finally:
            metrics.S3_REQUESTS.inc(objects.requests)
        results = [await self._sync_target(observed, parsed, target, bundle) for target in parsed.targets]
        failed = [r["name"] for r in results if r["state"] == "Failed"]
        if not failed:
            self._memory[observed.uid] = _Memory(source_digest, observed.generation, force_token, pointer)
        else:
            self.forget(observed.uid)
        floor = observed.status.get("lastAppliedTimestamp") or ""
        if not failed and not parsed.dry_run:
            floor = max(floor, bundle.timestamp)
            metrics.BUNDLE_AGE.applied[(observed.namespace, observed.name)] = _timestamp_epoch(bundle.timestamp)
        content_digest = await asyncio.to_thread(lambda: self.digester.digest(content_items(bundle)))
        extra = {
            "bundle": {
                "layout": bundle.layout.value,
                "timestamp": bundle.timestamp,
                "generation": bundle.generation,
                "digest": content_digest,
            },
            "pointerETag": pointer.etag,
            "lastAppliedTimestamp": floor or None,
            "targets": results,
        }
        verified = (
            True,
            "Verified",
            f"bundle {bundle.timestamp} authenticated"
            + (" and its sealed timestamp matches the pointer" if bundle.layout.value == "cli" else ""),
        )
        if parsed.dry_run:
            synced = (False, "DryRun", f"{len(results)} target(s) planned; nothing written (see status.targets[].plan)")
        elif failed:
            synced = (False, "TargetFailed", f"failed: {', '.join(failed)}; the other targets are in sync")
        else:
            synced = (True, "Synced", f"{len(results)} target(s) hold bundle {bundle.timestamp}")
        metrics.SYNCS.labels(synced[1]).inc()
        events = [
            Event("Normal", "Applied", f"target {r['name']}: {r['message']}")
            for r in results
            if r.pop("_changed", False)
        ]
        before = {t.get("name"): (t.get("state"), t.get("reason")) for t in observed.status.get("targets") or []}
        events += [  # one Warning per new failure, not one per retry
            Event("Warning", r["reason"], f"target {r['name']}: {r['message']}")
            for r in results
            if r["state"] == "Failed" and before.get(r["name"]) != ("Failed", r["reason"])
        ]
        retry = parsed.refresh_seconds if not failed else min(parsed.refresh_seconds, ERROR_RETRY_SECONDS)
        outcome = await self._report(
            observed,
            extra,
            retry=retry,
            ready=synced,
            verified=verified,
            synced=synced,
            synced_now=not failed and not parsed.dry_run,
        )
        outcome.events = events + outcome.events
        return outcome

    async def _open(
        self,
        observed: Observed,
        parsed: VaultBundleSpec,
        config: configblob.BootstrapConfig,
        objects: S3Objects,
        passphrase: str,
    ) -> tuple[Bundle, Pointer]:
        # a pinned version is an explicit rollback by whoever may edit the spec; the floor guards the pointer
        refuse = parsed.rollback_policy == "Refuse" and not parsed.version
        floor = observed.status.get("lastAppliedTimestamp") if refuse else None
        pointer = await asyncio.to_thread(
            bundles.locate, objects, config, parsed.layout, version=parsed.version or None
        )
        if floor and pointer.timestamp < floor:
            raise RollbackRefusedError(
                f"bundle {pointer.timestamp} is older than the last applied {floor}; nothing was changed "
                "(pin spec.source.version, or set rollbackPolicy: Allow, to roll back on purpose)"
            )
        envelope = await asyncio.to_thread(bundles.fetch, objects, config, pointer)
        plaintext = await self.pool.aopen_envelope(envelope, passphrase, config.salt, config.iterations)
        generation = await asyncio.to_thread(bundles.read_generation, objects, config, pointer.layout)
        # ZIP inflation, CRCs and HMACs run without the GIL: a large bundle is parsed off the event loop
        bundle = await asyncio.to_thread(
            bundles.finish, pointer, plaintext, generation, env=config.env, env_file=parsed.env_file
        )
        return bundle, pointer

    async def _sync_target(
        self, observed: Observed, parsed: VaultBundleSpec, target: TargetSpec, bundle: Bundle
    ) -> dict[str, Any]:
        """Plan and (unless dry run) apply one target; its failure stays in its own status entry."""
        previous: Mapping[str, Any] = next(
            (t for t in observed.status.get("targets") or [] if t.get("name") == target.name), {}
        )
        result: dict[str, Any] = {"name": target.name, "kind": target.kind}

        async def read_secret(name: str, key: str) -> str:
            return await self._read_secret_value(observed.namespace, spec_module.SecretRef(name, key), "credentials")

        store: Target | None = None
        try:
            kind = targets.load(target.kind)
            # selection, naming and digests are per-key Python loops: off the event loop
            desired = await asyncio.to_thread(kind.desired, bundle.vault, target.selection, target.body)
            context = TargetContext(
                self.kube, Owner(observed.namespace, observed.name, observed.uid), self.digester, previous, read_secret
            )
            store = await kind.connect(target.body, context)
            plan = await store.plan(desired)
            changed = plan.changed and not parsed.dry_run
            if changed:
                await store.apply(plan, desired)
            digest = await asyncio.to_thread(self.digester.digest, desired)
            counts = f"{len(plan.create)} created, {len(plan.update)} updated, {len(plan.delete)} removed"
            result.update(
                state="Planned" if parsed.dry_run else "Synced",
                reason="DryRun" if parsed.dry_run else "Synced",
                message=(
                    f"{store.describe()}: would be {counts}"
                    if parsed.dry_run
                    else f"{store.describe()}: {len(desired)} key(s)" + (f" ({counts})" if changed else "")
                ),
                keys=len(desired),
                digest=digest,
                plan=statusbounds.plan(plan.as_status()),
                lastSyncTime=_now(),
                lastChangeTime=_now() if changed else previous.get("lastChangeTime"),
                _changed=changed,
                **store.status_extra(),
            )
        except (SpecError, TargetError, Failure) as exc:
            result.update(state="Failed", reason=exc.reason, message=statusbounds.message(str(exc)))
        except KubeError as exc:
            result.update(state="Failed", reason="KubernetesAPIError", message=statusbounds.message(str(exc)))
        except Exception as exc:  # noqa: BLE001 - one broken store must not stop the others; SDK text may hold data
            result.update(state="Failed", reason="InternalError", message=f"unexpected {type(exc).__name__}")
        metrics.TARGET_SYNCS.labels(target.kind, result["reason"]).inc()
        if result["state"] == "Failed":  # the store still holds what the last success wrote: keep its record,
            # updated with whatever a partly applied plan recorded (e.g. secrets created before the failure)
            partial = store.status_extra() if store is not None else {}
            result = {**{k: v for k, v in previous.items() if k != "plan"}, **partial, **result}
        return {k: v for k, v in result.items() if v is not None}

    async def _report(
        self,
        observed: Observed,
        extra: dict[str, Any] | None,
        *,
        retry: float | None,
        ready: tuple[bool | None, str, str],
        verified: tuple[bool | None, str, str],
        synced: tuple[bool | None, str, str],
        synced_now: bool = False,
    ) -> Outcome:
        """Patch status only when something other than timestamps changed: idle cycles write nothing."""
        old = observed.status
        status: dict[str, Any] = {**{k: v for k, v in old.items() if k != "conditions"}, **(extra or {})}
        status["observedGeneration"] = observed.generation
        status["conditions"] = _conditions(old, observed.generation, Ready=ready, Verified=verified, Synced=synced)
        if synced_now:
            status["lastSyncTime"] = _now()
        status = {k: v for k, v in status.items() if v is not None}
        metrics.READY.labels(observed.namespace, observed.name).set(1 if ready[0] else 0)
        outcome = Outcome(retry_after=retry, ready=bool(ready[0]), reason=ready[1], message=ready[2], status=status)
        if _strip_times(status) == _strip_times(dict(old)) or not self.write_status:
            return outcome
        status["lastAttemptTime"] = _now()
        try:
            await self.kube.patch_status(observed.namespace, observed.name, status)
            outcome.status_written = True
        except KubeError as exc:
            outcome.retry_after = ERROR_RETRY_SECONDS
            outcome.events.append(Event("Warning", "StatusUpdateFailed", str(exc)))
        if not ready[0]:
            outcome.events.append(Event("Warning", ready[1], ready[2]))
        return outcome
