"""kopf wiring: watch VaultBundles (kopf) and a few labelled Secrets (secretwatch), one worker per VaultBundle.

Deliberately no kopf daemons/handlers with state: those add finalizers and annotations (writes, and stuck
deletions when the operator is gone). Event handlers only wake per-object workers; each worker calls
`Reconciler.reconcile` and sleeps until its refresh interval passes or something wakes it. The Secrets we
write carry an ownerReference (deletionPolicy: Delete) so Kubernetes' garbage collector cleans up.

Secrets are not watched through kopf: kopf would stream every Secret of the cluster (see secretwatch.py for why
its label filters cannot help). Only our own target Secrets (metadata only) and source Secrets and ConfigMaps
labelled `vaultbundle.io/source` are watched; the labelled sources are kept in memory (sourcecache.py), so a
refresh cycle reads them without a GET, while an unlabelled source is read by name on every refresh cycle.

Bounds, so that no tenant stalls the others: reconciles share `FairSlots` (a total and a per-namespace limit,
round-robin between namespaces), each cycle has a deadline (`--reconcile-timeout`), and stopping workers (on
losing the leader Lease, on shutdown) survives whatever a worker ended with, so a replica that lost its Lease
always stops writing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import kopf

from . import digest_key, kopfstate, metrics, observability, secretwatch, sourcecache
from .backoff import Backoff, Retry
from .crypto.kdf import IterationLimits
from .errors import Reason
from .fairness import FairSlots
from .keptbody import kept_body
from .kube import GROUP, PLURAL, VERSION, Kube, load_api_client
from .leader import LeaderElector
from .pool import CryptoPool
from .reconcile import FORCE_SYNC_ANNOTATION, Observed, Reconciler
from .remote import S3ClientCache
from .settings import DEFAULTS, Settings, Shard

__all__ = ["Scheduler", "Settings", "Shard", "build_registry", "kept_body"]

logger = logging.getLogger("vaultbundle")
OWNER_UID_ANNOTATION = "vaultbundle.io/owner-uid"  # written on every target Secret (targets/kubernetes_secret.py)
# ConfigMaps share the watcher table with Secrets: a Secret name never holds a '/', so the keys cannot collide
CONFIG_MAP_PREFIX = "configmap/"


@dataclass
class Worker:
    body: dict[str, Any]
    retry: Retry
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # managed Secrets edited behind our back: (namespace, name) -> (target, the event's resourceVersion)
    drift: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    drift_timer: asyncio.TimerHandle | None = None
    watched_generation: int | None = None  # the spec generation whose source refs are watched

    def take_drift(self) -> frozenset[str]:
        """The targets to check this cycle (what the watch queued since the last one)."""
        targets = frozenset(target for target, _ in self.drift.values())
        self.drift.clear()
        return targets


class Scheduler:
    def __init__(
        self,
        reconciler: Reconciler,
        max_concurrent: int,
        shard: Shard | None = None,
        *,
        active: bool = True,
        backoff: Backoff | None = None,
        max_per_namespace: int = DEFAULTS.max_concurrent_per_namespace,
        reconcile_timeout: float | None = None,
        drift_debounce: float = DEFAULTS.drift_debounce_seconds,
    ) -> None:
        self.reconciler = reconciler
        self.drift_debounce = drift_debounce
        self.backoff = backoff or Backoff()
        self.shard = shard
        self.active = active  # False on a standby replica: it knows every object but works on none
        self.workers: dict[str, Worker] = {}
        self._context: contextvars.Context | None = None
        self.secret_watchers: dict[tuple[str, str], set[str]] = defaultdict(set)  # and ConfigMaps (prefixed)
        # the reverse: the keys each uid watches, so forgetting one costs its own keys, not a scan of all
        self._watching: dict[str, set[tuple[str, str]]] = {}
        self.slots = FairSlots(max_concurrent, min(max_per_namespace, max_concurrent))
        self.reconcile_timeout = reconcile_timeout  # None: no deadline (tests)

    def upsert(self, body: dict[str, Any]) -> None:
        # kopf's event poster lives in the handlers' context; workers started later (e.g. on winning an
        # election) must run in it too, or posting an Event fails. Taken once, not per event: a handler's
        # context also holds the event being handled (kopf's cause: the whole raw body with its managedFields,
        # a patch, a logger), and a copy per worker kept one such event alive per VaultBundle for good.
        if self._context is None:
            self._context = contextvars.copy_context()
        meta = body["metadata"]
        if self.shard and not self.shard.owns(meta.get("namespace", ""), meta.get("name", "")):
            return
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if worker is None:
            self.workers[uid] = Worker(body, Retry(self.backoff))
            if self.active:
                self._start(uid)
            return
        old_meta, new_meta = worker.body.get("metadata", {}), body.get("metadata", {})
        worker.body = body
        if old_meta.get("generation") != new_meta.get("generation") or (old_meta.get("annotations") or {}).get(
            FORCE_SYNC_ANNOTATION
        ) != (new_meta.get("annotations") or {}).get(FORCE_SYNC_ANNOTATION):
            self._wake(uid)

    def _wake(self, uid: str) -> None:
        """Something changed for *uid*: run its next cycle now, and if that cycle is already queued for a slot
        (its timed refresh, a first cycle after a restart), at the front of its namespace's queue."""
        self.workers[uid].wake.set()
        self.slots.hurry(uid)

    def _start(self, uid: str) -> None:
        # a copy per task: each worker's context variables (e.g. the reconcile slot it holds) are its own
        context = self._context.copy() if self._context is not None else None
        task = asyncio.create_task(self._run(uid), name=f"vaultbundle:{uid}", context=context)
        task.add_done_callback(_log_unexpected_end, context=context)  # not the caller's (a handler's) context
        self.workers[uid].task = task

    def activate(self) -> None:
        """Became leader: start working on every known object at once."""
        self.active = True
        for uid, worker in self.workers.items():
            if worker.task is None:
                self._start(uid)

    async def deactivate(self) -> None:
        """Lost leadership: stop every worker; keep knowing the objects for a quick takeover later.

        Every worker is cancelled before any is awaited, so none keeps writing while another winds down."""
        self.active = False
        uids = list(self.workers)
        for uid in uids:
            self._cancel(uid)
        for uid in uids:
            await self._stop(uid)

    def watch(self, uid: str, namespace: str, name: str) -> None:
        """Wake *uid* when the Secret *name* (or a ConfigMap, `CONFIG_MAP_PREFIX` + name) changes."""
        self.secret_watchers[(namespace, name)].add(uid)
        self._watching.setdefault(uid, set()).add((namespace, name))

    def _watch_refs(self, uid: str, namespace: str, secrets: Iterable[str], config_maps: Iterable[str]) -> None:
        """Wake *uid* on a change of exactly these Secrets and ConfigMaps (what it watched before is dropped)."""
        self._unwatch(uid)
        for ref in secrets:
            self.watch(uid, namespace, ref)
        for ref in config_maps:
            self.watch(uid, namespace, CONFIG_MAP_PREFIX + ref)

    def _unwatch(self, uid: str) -> None:
        for key in self._watching.pop(uid, ()):
            watchers = self.secret_watchers.get(key)
            if watchers is not None:
                watchers.discard(uid)
                if not watchers:  # no empty entries left behind by deleted objects
                    del self.secret_watchers[key]

    def _cancel(self, uid: str) -> None:
        self.reconciler.forget(uid)
        self._unwatch(uid)
        worker = self.workers.get(uid)
        if worker:
            worker.watched_generation = None  # a restarted worker watches its refs again before its first cycle
        if worker and worker.drift_timer:
            worker.drift_timer.cancel()
            worker.drift_timer = None
        if worker and worker.task:
            worker.task.cancel()

    async def _stop(self, uid: str) -> None:
        """Cancel a worker and wait until it has ended, whatever it ended with (even a `BaseException` that is
        not an `Exception`, e.g. a Rust panic): stopping must never fail half-way."""
        self._cancel(uid)
        worker = self.workers.get(uid)
        if worker is None or worker.task is None:
            return
        task = worker.task
        await asyncio.wait([task])  # returns when the task is done; never raises what the task raised
        worker.task = None

    async def remove(self, uid: str) -> None:
        """The VaultBundle is gone: stop its worker and forget everything kept for it (memory, metrics)."""
        await self._stop(uid)
        worker = self.workers.pop(uid, None)
        if worker is not None:
            meta = worker.body.get("metadata", {})
            metrics.forget(meta.get("namespace", ""), meta.get("name", ""))

    def secret_changed(self, namespace: str, name: str, _metadata: dict[str, Any] | None = None) -> None:
        """A labelled source Secret changed: wake every VaultBundle whose last reconcile read it."""
        for uid in self.secret_watchers.get((namespace, name), set()):
            if uid in self.workers:
                self._wake(uid)

    def config_map_changed(self, namespace: str, name: str, _metadata: dict[str, Any] | None = None) -> None:
        """A labelled ConfigMap changed (a dotsec `.sec` text, a schema): wake every VaultBundle that read it."""
        self.secret_changed(namespace, CONFIG_MAP_PREFIX + name)

    def managed_secret_changed(self, namespace: str, name: str, metadata: dict[str, Any]) -> str | None:
        """A target Secret we wrote changed or was deleted (label-selected watch); returns its owner's uid.

        An event carrying the resourceVersion of our own last write (or in-sync read) is ignored. Any other queues
        the target for a drift check `drift_debounce` after the first such event: a burst of edits is one repair.
        The owner is found from what we wrote (so stripped annotations do not hide it), else from the owner-uid
        annotation.
        """
        known = self.reconciler.secret_versions.get(namespace, name)
        uid = known.uid if known else str((metadata.get("annotations") or {}).get(OWNER_UID_ANNOTATION, ""))
        worker = self.workers.get(uid)
        if worker is None:
            return None
        logger.debug("managed Secret %s/%s changed (owner uid %s)", namespace, name, uid)
        version = str(metadata.get("resourceVersion") or "")
        if known is None:  # not written by this process yet: its next full cycle reads it anyway
            return uid
        if version == known.version:  # our own write: whatever was queued before it is superseded
            worker.drift.pop((namespace, name), None)
            return uid
        logger.debug("managed Secret %s/%s: not our write, drift check queued", namespace, name)
        worker.drift[(namespace, name)] = (known.target, version)
        if worker.drift_timer is None and self.active:
            worker.drift_timer = asyncio.get_running_loop().call_later(self.drift_debounce, self._drift_quiet, uid)
        return uid

    def _drift_quiet(self, uid: str) -> None:
        """The debounce passed: wake the owner, unless every queued event turned out to be our own write (the
        watch may deliver it before the apply's answer told us its resourceVersion)."""
        worker = self.workers.get(uid)
        if worker is None:
            return
        worker.drift_timer = None
        for key, (_, version) in list(worker.drift.items()):
            known = self.reconciler.secret_versions.get(*key)
            if known is not None and known.version == version:
                del worker.drift[key]
        if worker.drift:
            self._wake(uid)

    async def _run(self, uid: str) -> None:
        while uid in self.workers and self.active:
            worker = self.workers[uid]
            delay = await self._cycle(uid, worker)
            # asyncio.timeout, not wait_for: wait_for would run wake.wait() in a Task of its own, one more Task and
            # coroutine kept per idle VaultBundle
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await worker.wake.wait()

    async def _cycle(self, uid: str, worker: Worker) -> float | None:
        """One reconcile and what follows from it (watches, Events, a log line); returns the delay until the next.
        A method of its own so that the cycle's objects (the observed body's copies, the outcome with the status
        it computed) are released before the worker waits, not kept per VaultBundle until its next cycle."""
        # woken by a change (not the timer, not the first cycle): queue ahead of the refreshes (fairness.py)
        namespace = str(worker.body.get("metadata", {}).get("namespace", ""))
        async with self.slots.slot(namespace, urgent=worker.wake.is_set(), key=uid):
            # what the cycle sees is taken once it holds the slot: a change that arrived while it queued (and
            # hurried it) is part of this cycle, not of one more behind it
            worker.wake.clear()
            observed = replace(Observed.from_body(worker.body), drifted=worker.take_drift())
            if worker.watched_generation != observed.generation:  # a spec not seen yet: watch what it reads
                self._watch_refs(uid, namespace, *self.reconciler.source_refs(observed))
                worker.watched_generation = observed.generation
            try:
                async with asyncio.timeout(self.reconcile_timeout):
                    outcome = await self.reconciler.reconcile(observed)
            except TimeoutError:
                outcome = await self.reconciler.report_timeout(observed, self.reconcile_timeout or 0.0)
            except Exception:
                logger.exception("reconcile of %s/%s crashed", observed.namespace, observed.name)
                outcome = None
        if outcome is None:  # a bug: retried with backoff like any transient failure
            delay = worker.retry.next_delay(Reason.INTERNAL_ERROR, None)
        else:
            delay = worker.retry.next_delay(outcome.failure, outcome.refresh_seconds)
            if outcome.check_in is not None:  # a target's timed drift check comes first
                delay = outcome.check_in if delay is None else min(delay, outcome.check_in)
            if outcome.wake_seconds is not None:  # a rollout restart is due: wake for it, whatever else happens
                delay = outcome.wake_seconds if delay is None else min(delay, outcome.wake_seconds)
        if outcome is not None:
            self._watch_refs(uid, observed.namespace, outcome.secret_refs, outcome.config_map_refs)
            for event in outcome.events:
                post = kopf.warn if event.type == "Warning" else kopf.info
                try:
                    post(cast(kopf.Body, worker.body), reason=event.reason, message=event.message)
                except (LookupError, RuntimeError):  # kopf's poster is gone (shutting down)
                    logger.debug("event %s not posted: the operator is stopping", event.reason)
            if not outcome.idle:  # messages name keys and reasons, never values
                level = logging.INFO if outcome.ready else logging.WARNING
                logger.log(level, "%s/%s: %s: %s", observed.namespace, observed.name, outcome.reason, outcome.message)
        return delay

    async def stop(self) -> None:
        for uid in list(self.workers):
            await self.remove(uid)


def _log_unexpected_end(task: asyncio.Task[None]) -> None:
    """A worker only ends by cancellation; anything else (e.g. a `BaseException` from a library) is logged at
    once, by type only, so a VaultBundle that silently stopped syncing shows in the log."""
    if not task.cancelled() and task.exception() is not None:
        logger.error(
            "worker %s stopped: %s (this VaultBundle is not synced until it changes or the operator restarts)",
            task.get_name(),
            type(task.exception()).__name__,
        )


def build_registry(config: Settings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    state: dict[str, Any] = {}

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # kopf's own readers: the in-cluster ServiceAccount, else $KUBECONFIG (read at call time)
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        kopfstate.configure(settings)  # no change-detecting handlers: kopf need not diff every event
        # S3 and Kubernetes calls run in threads; the default pool (CPU count + 4) would queue them at scale
        io_threads = max(8, config.max_concurrent * 2)
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="vaultbundle-io")
        )
        kube = Kube(load_api_client(config.kubeconfig, connections=io_threads))
        pool = CryptoPool(
            workers=config.workers,
            on_derive=metrics.observe_kdf,
            limits=IterationLimits(config.min_kdf_iterations, config.max_kdf_iterations),
        )
        await asyncio.to_thread(pool.warm)
        digester = await digest_key.load_digester(
            kube.core, config.digest_key_file, fallback_namespace=config.leader_election_namespace
        )
        state["pool"] = pool
        state["http"] = await observability.serve(
            config.metrics_host,
            config.metrics_port,
            lambda: "scheduler" in state and all(w.ready.is_set() for w in state["watches"]),
            observability.MetricsSecurity(
                config.metrics_tls_cert_file, config.metrics_tls_key_file, config.metrics_token_file
            ),
        )
        electing = config.leader_election_namespace is not None
        reads = sourcecache.CachedReads(kube)  # labelled sources from their watch's copies, the rest by GET
        scheduler = Scheduler(
            Reconciler(
                kube,
                pool,
                digester,
                S3ClientCache(timeout=config.s3_timeout_seconds, connections=config.max_concurrent),
                min_refresh=config.min_refresh_seconds,
                egress=config.egress_policy(),
                min_drift_check=config.min_drift_check_seconds,
                source_reads=reads,
            ),
            config.max_concurrent,
            config.shard,
            active=not electing,
            backoff=Backoff(config.backoff_base_seconds, config.backoff_cap_seconds, config.refresh_jitter),
            max_per_namespace=config.max_concurrent_per_namespace,
            reconcile_timeout=config.reconcile_timeout_seconds,
            drift_debounce=config.drift_debounce_seconds,
        )
        state["watches"] = secretwatch.start_watches(
            load_api_client(config.kubeconfig, connections=2 * max(1, len(config.namespaces))),  # one per watch
            config.namespaces,
            {
                secretwatch.SOURCE_SELECTOR: scheduler.secret_changed,
                secretwatch.MANAGED_SELECTOR: scheduler.managed_secret_changed,
            },
            asyncio.get_running_loop(),
            config_map_handlers={secretwatch.SOURCE_SELECTOR: scheduler.config_map_changed},
            caches={
                ("secrets", secretwatch.SOURCE_SELECTOR): reads.secrets,
                ("configmaps", secretwatch.SOURCE_SELECTOR): reads.config_maps,
            },
        )
        state["scheduler"] = scheduler
        if config.leader_election_namespace is None:
            metrics.LEADER.set(1)
            return
        elector = LeaderElector(
            kube,
            config.leader_election_namespace,
            on_started=scheduler.activate,
            on_stopped=lambda: state.setdefault("stopping", asyncio.create_task(_step_down())),
            name=f"vaultbundle-operator{'-shard-' + str(config.shard.index) if config.shard else ''}",
            lease_seconds=config.lease_seconds,
            renew_seconds=config.renew_seconds,
        )

        async def _step_down() -> None:
            await scheduler.deactivate()
            state.pop("stopping", None)

        state["elector"] = asyncio.create_task(elector.run(), name="vaultbundle:leader-election")

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        if "elector" in state:  # stop working first, then release the Lease for a standby
            await state["scheduler"].deactivate()
            state["elector"].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state["elector"]
        for watch in state.get("watches", []):
            watch.stop()
        await state["scheduler"].stop()
        state["pool"].close()
        await state["http"].cleanup()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def vaultbundle_event(event: Any, body: kopf.Body, uid: str, **_: Any) -> None:
        scheduler: Scheduler = state["scheduler"]
        if event.get("type") == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
            await scheduler.remove(uid)
        else:
            scheduler.upsert(kept_body(body))

    return registry
