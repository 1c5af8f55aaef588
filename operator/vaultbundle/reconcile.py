"""One VaultBundle reconcile: read sources, verify the bundle, plan and apply every target, report status.

Plain async code over small interfaces (Kube, S3Objects, CryptoPool), testable without kopf. The kopf layer
(controller.py) only schedules calls and posts the Events this returns.

Cheap path: when the sources, the spec and the pointer's ETag are unchanged and the last sync succeeded, a
cycle is one conditional S3 GET (304), no key derivation, no decryption and no API write.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import bundles, selection
from . import spec as spec_module
from .bundles import Bundle, Pointer
from .crypto import configblob
from .digest import Digester
from .errors import RollbackRefusedError, VSyncError
from .kube import Kube, KubeError
from .pool import CryptoPool
from .remote import S3Objects
from .spec import SpecError, TargetSpec, VaultBundleSpec
from .targets.base import Plan, TargetError
from .targets.kubernetes_secret import KubernetesSecretTarget, Owner

FORCE_SYNC_ANNOTATION = "vaultbundle.io/force-sync"
ERROR_RETRY_SECONDS = 30.0
_TIME_FIELDS = ("lastSyncTime", "lastAttemptTime", "lastTransitionTime", "lastChangeTime", "nextRefreshTime")


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


@dataclass
class _Memory:
    """What a previous successful cycle saw, kept in process memory only."""

    source_digest: str
    generation: int
    force_token: str
    pointer: Pointer
    bundle: Bundle


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strip_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items() if k not in _TIME_FIELDS}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def _condition(old: Mapping[str, Any], ready: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    previous: Mapping[str, Any] = next((c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {})
    status = "True" if ready else "False"
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message[:1024],
        "observedGeneration": generation,
        "lastTransitionTime": previous.get("lastTransitionTime") if previous.get("status") == status else _now(),
    }


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        pool: CryptoPool,
        digester: Digester,
        s3_factory: Callable[[configblob.BootstrapConfig], S3Objects] = S3Objects,
        min_refresh: float = spec_module.MIN_REFRESH_SECONDS,
    ) -> None:
        self.min_refresh = min_refresh
        self.kube, self.pool, self.digester, self.s3_factory = kube, pool, digester, s3_factory
        self._memory: dict[str, _Memory] = {}
        self.s3_requests = 0

    def forget(self, uid: str) -> None:
        self._memory.pop(uid, None)

    async def _read_secret_value(self, namespace: str, ref: spec_module.SecretRef, what: str) -> str:
        secret = await self.kube.get_secret(namespace, ref.name)
        if secret is None:
            raise _Failure("SecretNotFound", f"{what} Secret {ref.name!r} not found in namespace {namespace!r}")
        raw = (secret.get("data") or {}).get(ref.key)
        if raw is None:
            raise _Failure("SecretKeyNotFound", f"{what} Secret {ref.name!r} has no key {ref.key!r}")
        try:
            text = base64.b64decode(raw, validate=True).decode("utf-8").rstrip("\r\n\t ")
        except (binascii.Error, UnicodeDecodeError):
            raise _Failure("SecretInvalid", f"{what} Secret {ref.name!r} key {ref.key!r} is not UTF-8 text") from None
        if not text:
            raise _Failure("SecretInvalid", f"{what} Secret {ref.name!r} key {ref.key!r} is empty")
        return text

    async def reconcile(self, observed: Observed) -> Outcome:
        try:
            parsed = spec_module.parse(observed.spec, min_refresh=self.min_refresh)
        except SpecError as exc:
            return await self._report(observed, None, False, exc.reason, str(exc), retry=None)
        refs = frozenset({parsed.config_ref.name, parsed.passphrase_ref.name})
        if parsed.suspend:
            outcome = await self._report(observed, None, False, "Suspended", "syncing is suspended", retry=None)
            outcome.secret_refs = refs
            return outcome
        try:
            outcome = await self._sync(observed, parsed)
        except _Failure as failure:
            self.forget(observed.uid)  # the cheap unchanged path only ever follows a success
            outcome = await self._report(
                observed,
                None,
                False,
                failure.reason,
                str(failure),
                retry=min(parsed.refresh_seconds, ERROR_RETRY_SECONDS),
            )
        except VSyncError as exc:
            self.forget(observed.uid)
            retry = ERROR_RETRY_SECONDS if exc.reason in ("S3Unreachable",) else parsed.refresh_seconds
            outcome = await self._report(observed, None, False, exc.reason, str(exc), retry=retry)
        outcome.secret_refs = refs
        return outcome

    async def _sync(self, observed: Observed, parsed: VaultBundleSpec) -> Outcome:
        blob = await self._read_secret_value(observed.namespace, parsed.config_ref, "config")
        passphrase = await self._read_secret_value(observed.namespace, parsed.passphrase_ref, "passphrase")
        config = configblob.decode(blob)
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
                if parsed.version:
                    return Outcome(retry_after=parsed.refresh_seconds, idle=True)
                unchanged = await asyncio.to_thread(
                    bundles.read_pointer, objects, config, memory.pointer.layout, known_etag=memory.pointer.etag
                )
                if unchanged is None:
                    return Outcome(retry_after=parsed.refresh_seconds, idle=True)
            bundle, pointer = await self._open(observed, parsed, config, objects, passphrase)
        finally:
            self.s3_requests += objects.requests
        results = [await self._sync_target(observed, parsed, target, bundle) for target in parsed.targets]
        all_ok = all(result["ready"] for result in results)
        if all_ok:
            self._memory[observed.uid] = _Memory(source_digest, observed.generation, force_token, pointer, bundle)
        else:
            self._memory.pop(observed.uid, None)
        events = [
            Event("Warning" if not r["ready"] else "Normal", r["reason"], f"target {r['name']}: {r['message']}")
            for r in results
            if r.pop("_changed", False) or not r["ready"]
        ]
        failed = [r["name"] for r in results if not r["ready"]]
        reason = "DryRun" if parsed.dry_run else ("Synced" if all_ok else "TargetFailed")
        message = f"bundle {bundle.timestamp}: {len(results)} target(s) " + (
            "planned, nothing written" if parsed.dry_run else "in sync" if all_ok else f"failed: {', '.join(failed)}"
        )
        applied_floor = observed.status.get("lastAppliedTimestamp") or ""
        if all_ok and not parsed.dry_run:
            applied_floor = max(applied_floor, bundle.timestamp)
        extra = {
            "layout": bundle.layout.value,
            "bundleTimestamp": bundle.timestamp,
            "bundleGeneration": bundle.generation,
            "pointerETag": pointer.etag,
            "lastAppliedTimestamp": applied_floor or None,
            "contentDigest": self.digester.digest(
                {
                    **{f"kv:{k}": v.encode() for k, v in bundle.vault.kv.items()},
                    **{f"file:{k}": v for k, v in bundle.vault.files.items()},
                }
            ),
            "targets": results,
        }
        outcome = await self._report(
            observed,
            extra,
            all_ok,
            reason,
            message,
            retry=parsed.refresh_seconds if all_ok else min(parsed.refresh_seconds, ERROR_RETRY_SECONDS),
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
                "(set rollbackPolicy: Allow or pin spec.source.version to roll back on purpose)"
            )
        envelope = await asyncio.to_thread(bundles.fetch, objects, config, pointer)
        plaintext = await self.pool.aopen_envelope(envelope, passphrase, config.salt, config.iterations)
        generation = await asyncio.to_thread(bundles.read_generation, objects, config, pointer.layout)
        bundle = bundles.finish(pointer, plaintext, generation, env=config.env, env_file=parsed.env_file)
        return bundle, pointer

    async def _sync_target(
        self, observed: Observed, parsed: VaultBundleSpec, target: TargetSpec, bundle: Bundle
    ) -> dict[str, Any]:
        previous: Mapping[str, Any] = next(
            (t for t in observed.status.get("targets") or [] if t.get("name") == target.name), {}
        )
        result: dict[str, Any] = {"name": target.name, "kind": target.kind}
        try:
            assert target.kubernetes_secret is not None
            desired = selection.kubernetes_secret_data(bundle.vault, target.selection, target.kubernetes_secret)
            store = KubernetesSecretTarget(
                self.kube,
                Owner(observed.namespace, observed.name, observed.uid),
                target.kubernetes_secret,
                self.digester,
            )
            plan: Plan = await store.plan(desired)
            if plan.changed and not parsed.dry_run:
                await store.apply(plan, desired)
            digest = self.digester.digest(desired)
            changed = plan.changed and not parsed.dry_run
            result.update(
                ready=True,
                reason="DryRun" if parsed.dry_run else "Synced",
                message=(
                    f"would create {len(plan.create)}, update {len(plan.update)}, delete {len(plan.delete)} key(s)"
                    if parsed.dry_run
                    else f"{len(desired)} key(s) in Secret {target.kubernetes_secret.name}"
                ),
                keys=len(desired),
                digest=digest,
                plan=plan.as_status(),
                lastSyncTime=_now(),
                lastChangeTime=_now() if changed else previous.get("lastChangeTime"),
                _changed=changed,
            )
        except SpecError as exc:
            result.update(ready=False, reason=exc.reason, message=str(exc))
        except TargetError as exc:
            result.update(ready=False, reason=exc.reason, message=str(exc))
        except KubeError as exc:
            result.update(ready=False, reason="KubernetesAPIError", message=str(exc))
        if not result["ready"]:
            result.update(
                {k: previous[k] for k in ("digest", "keys", "lastSyncTime", "lastChangeTime") if k in previous}
            )
        return {k: v for k, v in result.items() if v is not None}

    async def _report(
        self,
        observed: Observed,
        extra: dict[str, Any] | None,
        ready: bool,
        reason: str,
        message: str,
        *,
        retry: float | None,
    ) -> Outcome:
        """Patch status only when something other than timestamps changed (idle cycles write nothing)."""
        old = observed.status
        status: dict[str, Any] = {**{k: v for k, v in old.items() if k != "conditions"}, **(extra or {})}
        status["observedGeneration"] = observed.generation
        status["conditions"] = [_condition(old, ready, reason, message, observed.generation)]
        if ready:
            status["lastSyncTime"] = _now()
        status = {k: v for k, v in status.items() if v is not None}
        outcome = Outcome(retry_after=retry)
        if _strip_times(status) != _strip_times(dict(old)):
            status["lastAttemptTime"] = _now()
            try:
                await self.kube.patch_status(observed.namespace, observed.name, status)
                outcome.status_written = True
            except KubeError as exc:
                outcome.retry_after = ERROR_RETRY_SECONDS
                outcome.events.append(Event("Warning", "StatusUpdateFailed", str(exc)))
            if not ready:
                outcome.events.append(Event("Warning", reason, message))
        return outcome


class _Failure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
