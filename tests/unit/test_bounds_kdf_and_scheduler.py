"""Issue #13 item 3, H1/H2/L3: KDF bounds, typed derivation errors, fair slots, robust step-down, cleanup on delete.

Each test reproduces a finding of the security review against the real `CryptoPool`, `Scheduler`, `FairSlots`
and `LeaderElector`; only the reconcile itself and the Kubernetes API are fakes.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from prometheus_client import generate_latest

from tests.conftest import load_vectors
from tests.kit import MemoryKube, MemoryObjects, World, add_source_secrets
from vaultbundle import metrics
from vaultbundle import pool as pool_module
from vaultbundle.controller import Scheduler, kept_body
from vaultbundle.crypto import configblob
from vaultbundle.crypto.kdf import IterationLimits, derive_key
from vaultbundle.digest import Digester
from vaultbundle.errors import KdfLimitError, KeyDerivationFailedError, Reason
from vaultbundle.fairness import FairSlots
from vaultbundle.leader import LeaderElector
from vaultbundle.pool import CryptoPool
from vaultbundle.reconcile import Observed, Outcome, Reconciler

SALT = "0123456789abcdef"


def _panic() -> BaseException:
    """A real pyo3 PanicException from the crypto library (OpenSSL's iteration count overflows a C int)."""
    try:
        PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=SALT.encode(), iterations=2**32 + 1).derive(b"x")
    except BaseException as exc:  # noqa: BLE001 - that is the point
        return exc
    raise AssertionError("the crypto library no longer panics; pick another BaseException")


PANIC = _panic()
PanicException = type(PANIC)


def test_the_crypto_library_panic_is_not_an_exception() -> None:
    assert not isinstance(PANIC, Exception) and type(PANIC).__name__ == "PanicException"


def _blob(iterations: int) -> str:
    document = {
        "v": 1,
        **dict.fromkeys(("endpoint", "region", "bucket", "accessKeyId", "secretAccessKey", "prefix", "env"), "x"),
        "salt": SALT,
        "iterations": iterations,
    }
    body = base64.urlsafe_b64encode(gzip.compress(json.dumps(document).encode(), mtime=0)).rstrip(b"=")
    return configblob.PREFIX + body.decode()


@pytest.mark.parametrize("iterations", [2**31, 2**32 + 1, 2**63, 10**12])
def test_config_blob_beyond_the_crypto_library_is_a_typed_error(iterations: int) -> None:
    with pytest.raises(KdfLimitError, match="at most 2147483647"):
        configblob.decode(_blob(iterations))


def test_the_vsync_vectors_fit_the_default_limits() -> None:
    limits = IterationLimits()
    decoded = [
        configblob.decode(v.data.decode())
        for v in load_vectors("config-blob")
        if v.data and v.name.startswith("positive")
    ]
    assert decoded and all(limits.minimum <= c.iterations <= limits.maximum for c in decoded)
    for config in decoded:
        limits.check(config.iterations)


@pytest.mark.parametrize(("iterations", "flag"), [(2_000_001, "--max-kdf-iterations"), (9_999, "--min-kdf-iterations")])
async def test_limits_are_enforced_before_any_derivation(iterations: int, flag: str) -> None:
    with CryptoPool(workers=1, limits=IterationLimits()) as pool:
        with pytest.raises(KdfLimitError, match=flag):
            await pool.aderive("pw", SALT, iterations)
        with pytest.raises(KdfLimitError, match=flag):
            pool.derive("pw", SALT, iterations)
        assert pool.cache.stats.derivations == 0 and pool.cache.stats.misses == 0


async def test_the_reconciler_refuses_the_count_before_touching_s3() -> None:
    kube, objects = MemoryKube(), MemoryObjects()
    add_source_secrets(kube, config=_blob(1_000_000_000))
    reconciler = Reconciler(
        kube,
        CryptoPool(workers=0, limits=IterationLimits()),
        Digester(b"k" * 32),
        s3_factory=lambda _config: objects,
    )
    outcome = await reconciler.reconcile(World().observed({}))
    assert outcome.reason == "KdfLimit" and "--max-kdf-iterations" in outcome.message
    assert objects.requests == 0 and reconciler.pool.cache.stats.derivations == 0


def _panicking_derive(passphrase: str, salt: str, iterations: int) -> Any:
    if passphrase == "evil":
        PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt.encode(), iterations=2**32 + 1).derive(b"x")
    return derive_key(passphrase, salt, iterations)


def _crypto_threads() -> set[int]:
    return {t.ident or 0 for t in threading.enumerate() if t.name.startswith("vaultbundle-crypto")}


async def test_a_panic_in_the_crypto_library_is_typed_and_the_worker_survives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "derive_key", _panicking_derive)
    with CryptoPool(workers=1) as pool:
        pool.warm()
        before = _crypto_threads()
        with pytest.raises(KeyDerivationFailedError, match=r"\(PanicException\)$"):
            await pool.aderive("evil", SALT, 1000)
        with pytest.raises(KeyDerivationFailedError):
            pool.derive("evil", SALT, 1000)
        assert await pool.aderive("good", SALT, 1000) == pool.derive("good", SALT, 1000)  # same thread still works
        assert _crypto_threads() == before and not pool._inflight


# -- the Scheduler ------------------------------------------------------------------------------------------


def _body(uid: str, namespace: str = "ns") -> dict[str, Any]:
    return {"metadata": {"uid": uid, "namespace": namespace, "name": uid, "generation": 1}, "spec": {}}


@dataclass
class FakeReconciler:
    """Stands in for `Reconciler`: counts the "writes" of each object; may be slow, hang or die."""

    seconds: dict[str, float] = field(default_factory=dict)  # per namespace
    retry: float | None = 0.01
    die: set[str] = field(default_factory=set)  # uids whose reconcile raises a PanicException
    writes: dict[str, int] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    forgotten: list[str] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)
    cycles: list[tuple[str, int]] = field(default_factory=list)  # (uid, generation seen), in the order they started

    async def reconcile(self, observed: Observed) -> Outcome:
        self.cycles.append((observed.uid, observed.generation))
        if observed.uid in self.die:
            raise PANIC
        await asyncio.sleep(self.seconds.get(observed.namespace, 0.0))
        self.writes[observed.uid] = self.writes.get(observed.uid, 0) + 1
        self.finished.setdefault(observed.uid, time.monotonic())
        return Outcome(refresh_seconds=self.retry, idle=True)

    async def report_timeout(self, observed: Observed, seconds: float) -> Outcome:
        self.timeouts.append(observed.uid)
        return Outcome(refresh_seconds=None, failure=Reason.RECONCILE_TIMEOUT, reason="ReconcileTimeout")

    def forget(self, uid: str) -> None:
        self.forgotten.append(uid)

    def source_refs(self, observed: Observed) -> tuple[frozenset[str], frozenset[str]]:
        return frozenset(), frozenset()


class LeaseKube:
    """The three Lease calls of `LeaderElector`, over one dict; `steal()` hands the Lease to another replica."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return json.loads(json.dumps(self.lease)) if self.lease else None

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> None:
        self.lease = body

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        self.lease = body

    def steal(self) -> None:
        assert self.lease is not None
        self.lease["spec"].update(
            holderIdentity="the-other-replica",
            renewTime=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            leaseDurationSeconds=3600,
        )


async def test_a_replica_that_loses_the_lease_stops_writing_even_after_a_worker_died_of_a_panic() -> None:
    reconciler = FakeReconciler(seconds={"ns": 0.3}, die={"evil"})  # a write lands 0.3 s into each cycle
    scheduler = Scheduler(reconciler, 16, active=False)  # type: ignore[arg-type]
    for uid in ("evil", "good"):  # the dead worker comes first: the old deactivate() stopped at it
        scheduler.upsert(_body(uid))
    kube = LeaseKube()
    stopping: list[asyncio.Task[None]] = []
    elector = LeaderElector(
        kube,  # type: ignore[arg-type]
        "ns",
        on_started=scheduler.activate,
        on_stopped=lambda: stopping.append(asyncio.create_task(scheduler.deactivate())),
        lease_seconds=0.6,
        renew_seconds=0.1,
    )
    campaign = asyncio.create_task(elector.run())
    try:
        for _ in range(200):
            if reconciler.writes.get("good", 0) >= 2:
                break
            await asyncio.sleep(0.01)
        assert elector.leading and reconciler.writes["good"] >= 2
        evil = scheduler.workers["evil"].task
        assert evil is not None and evil.done() and isinstance(evil.exception(), PanicException)

        kube.steal()
        for _ in range(300):
            if stopping and stopping[0].done():
                break
            await asyncio.sleep(0.01)
        assert stopping and stopping[0].done() and stopping[0].exception() is None  # step-down did not fail
        assert not elector.leading
        writes = reconciler.writes["good"]
        await asyncio.sleep(0.6)  # two cycles: an uncancelled worker (the old code) writes in this window
        assert reconciler.writes["good"] == writes  # no write after losing the Lease
        assert all(worker.task is None for worker in scheduler.workers.values())
    finally:
        campaign.cancel()
        await asyncio.gather(campaign, return_exceptions=True)
        await scheduler.stop()


async def test_stop_survives_a_dead_worker(caplog: pytest.LogCaptureFixture) -> None:
    reconciler = FakeReconciler(die={"a"})
    scheduler = Scheduler(reconciler, 4)  # type: ignore[arg-type]
    scheduler.upsert(_body("a"))
    scheduler.upsert(_body("b"))
    await asyncio.sleep(0.05)
    assert "worker vaultbundle:a stopped: PanicException" in caplog.text  # said at once, not only at stop
    await scheduler.stop()  # the old code raised PanicException here and left "b" running
    assert scheduler.workers == {}
    writes = reconciler.writes.get("b", 0)
    await asyncio.sleep(0.05)
    assert reconciler.writes.get("b", 0) == writes


async def _first_sync_of(reconciler: FakeReconciler, uid: str, started: float, limit: float) -> float:
    while uid not in reconciler.finished:
        assert time.monotonic() - started < limit, f"{uid} was not reconciled within {limit}s"
        await asyncio.sleep(0.01)
    return reconciler.finished[uid] - started


@pytest.mark.parametrize(("total", "bound"), [(16, 0.5), (4, 1.6)])
async def test_sixteen_slow_bundles_in_one_namespace_do_not_starve_another(total: int, bound: float) -> None:
    """16 one-second reconciles in namespace a; namespace b's single VaultBundle must not wait for the queue.

    Per-namespace limit 4: with 16 slots b starts at once; with 4 slots (all held by a) b gets the first freed
    slot, i.e. after one slow cycle, not after four (the old single FIFO semaphore)."""
    reconciler = FakeReconciler(seconds={"a": 1.0}, retry=None)
    scheduler = Scheduler(reconciler, total, max_per_namespace=4)  # type: ignore[arg-type]
    started = time.monotonic()
    try:
        for index in range(16):
            scheduler.upsert(_body(f"a{index}", "a"))
        scheduler.upsert(_body("b0", "b"))
        waited = await _first_sync_of(reconciler, "b0", started, 6.0)
        assert waited < bound
        assert max(scheduler.slots.running.values(), default=0) <= 4
    finally:
        await scheduler.stop()


async def test_a_reconcile_waiting_on_the_kdf_gives_its_slot_back(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()

    def slow_derive(passphrase: str, salt: str, iterations: int) -> Any:
        gate.wait(10)
        return derive_key(passphrase, salt, iterations)

    monkeypatch.setattr(pool_module, "derive_key", slow_derive)
    with CryptoPool(workers=1) as pool:
        done: dict[str, float] = {}

        class KdfReconciler(FakeReconciler):
            async def reconcile(self, observed: Observed) -> Outcome:
                if observed.namespace == "a":
                    await pool.aderive("pw", SALT, 1000)
                done[observed.uid] = time.monotonic()
                return Outcome(refresh_seconds=None, idle=True)

        scheduler = Scheduler(KdfReconciler(), 1, max_per_namespace=1)  # type: ignore[arg-type]
        try:
            scheduler.upsert(_body("waits-for-kdf", "a"))
            await asyncio.sleep(0.1)
            scheduler.upsert(_body("cheap", "b"))
            for _ in range(200):
                if "cheap" in done:
                    break
                await asyncio.sleep(0.01)
            assert "cheap" in done and "waits-for-kdf" not in done  # b ran in the only slot while a waited
            gate.set()
            for _ in range(500):
                if "waits-for-kdf" in done:
                    break
                await asyncio.sleep(0.01)
            assert "waits-for-kdf" in done and scheduler.slots.running == {}
        finally:
            gate.set()
            await scheduler.stop()


async def test_a_derivation_outlives_a_cancelled_waiter(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    calls: list[int] = []

    def slow_derive(passphrase: str, salt: str, iterations: int) -> Any:
        calls.append(iterations)
        gate.wait(10)
        return derive_key(passphrase, salt, iterations)

    monkeypatch.setattr(pool_module, "derive_key", slow_derive)
    with CryptoPool(workers=2) as pool:
        first = asyncio.create_task(pool.aderive("pw", SALT, 1000))
        await asyncio.sleep(0.05)
        first.cancel()  # e.g. the reconcile deadline
        await asyncio.gather(first, return_exceptions=True)
        second = asyncio.create_task(pool.aderive("pw", SALT, 1000))  # the next cycle joins the same derivation
        await asyncio.sleep(0.05)
        gate.set()
        await second
        assert calls == [1000] and pool.cache.stats.derivations == 1


async def test_a_cycle_past_the_deadline_is_cancelled_and_reported() -> None:
    reconciler = FakeReconciler(seconds={"ns": 3600})
    scheduler = Scheduler(reconciler, 4, reconcile_timeout=0.2)  # type: ignore[arg-type]
    scheduler.upsert(_body("stuck"))
    try:
        for _ in range(100):
            if reconciler.timeouts:
                break
            await asyncio.sleep(0.01)
        assert reconciler.timeouts == ["stuck"] and scheduler.slots.running == {}
    finally:
        await scheduler.stop()


async def test_report_timeout_writes_a_typed_status() -> None:
    world = World()
    outcome = await world.reconciler.report_timeout(world.observed({}), 300)
    # retried like every transient failure: by the scheduler's backoff (outcome.failure), not a fixed delay
    assert outcome.reason == "ReconcileTimeout" and not outcome.ready and outcome.failure == Reason.RECONCILE_TIMEOUT
    assert outcome.failure.transient
    assert world.kube.status["conditions"][0]["reason"] == "ReconcileTimeout" and "300s" in outcome.message
    assert outcome.secret_refs == {"cfg", "pass"}  # a source Secret changing during the backoff still wakes it


async def test_deleting_a_vaultbundle_drops_its_metrics_and_maps() -> None:
    reconciler = FakeReconciler(retry=None)
    scheduler = Scheduler(reconciler, 4)  # type: ignore[arg-type]
    scheduler.upsert(_body("gone", "tenant"))
    await asyncio.sleep(0.05)
    metrics.READY.values[("tenant", "gone")] = 1.0
    metrics.BUNDLE_AGE.values[("tenant", "gone")] = time.time()
    scheduler.watch("gone", "tenant", "cfg")
    assert b'name="gone"' in generate_latest(metrics.REGISTRY)
    await scheduler.remove("gone")
    assert b'name="gone"' not in generate_latest(metrics.REGISTRY)
    assert ("tenant", "gone") not in metrics.BUNDLE_AGE.values and ("tenant", "gone") not in metrics.READY.values
    assert dict(scheduler.secret_watchers) == {} and scheduler.workers == {} and "gone" in reconciler.forgotten


def test_a_worker_keeps_the_body_without_its_field_managers() -> None:
    body = {
        "apiVersion": "vaultbundle.io/v1alpha1",
        "kind": "VaultBundle",
        "metadata": {"name": "b", "namespace": "ns", "uid": "u", "managedFields": [{"manager": "kubectl"}]},
        "spec": {"refreshInterval": "1m"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    kept = kept_body(body)
    assert kept == {**body, "metadata": {"name": "b", "namespace": "ns", "uid": "u"}}
    assert body["metadata"]["managedFields"] == [{"manager": "kubectl"}]  # the event's own body is left alone


async def _slot_order(queued: list[tuple[str, str, bool]], hurried: tuple[str, ...] = ()) -> list[str]:
    """One slot, held by "holder" of namespace a while *queued* (name, namespace, urgent) queue in this order
    (each keyed by its name) and then *hurried* are hurried; the order in which everything got the slot."""
    slots = FairSlots(1, 1)
    order: list[str] = []
    release = asyncio.Event()

    async def run(name: str, namespace: str, urgent: bool = False) -> None:
        async with slots.slot(namespace, urgent=urgent, key=name):
            order.append(name)
            if name == "holder":
                await release.wait()

    tasks = [asyncio.create_task(run("holder", "a"))]
    await asyncio.sleep(0)
    for name, namespace, urgent in queued:
        tasks.append(asyncio.create_task(run(name, namespace, urgent)))
        await asyncio.sleep(0)
    for name in hurried:
        slots.hurry(name)
    slots.hurry("holder")  # holds the slot, queues nowhere: nothing to move
    release.set()
    await asyncio.gather(*tasks)
    return order


async def test_a_change_queues_ahead_of_the_timed_refreshes() -> None:
    """Refreshes of two namespaces queue, then a woken reconcile of namespace a (first in the round robin): it
    runs first."""
    order = await _slot_order(
        [("refresh-a1", "a", False), ("refresh-b1", "b", False), ("refresh-a2", "a", False), ("change-a", "a", True)]
    )
    assert order[:2] == ["holder", "change-a"]
    assert sorted(order[2:]) == ["refresh-a1", "refresh-a2", "refresh-b1"]
    assert order.index("refresh-a1") < order.index("refresh-a2")  # the refreshes keep their order


async def test_a_change_does_not_take_another_namespaces_turn() -> None:
    """Urgency reorders a namespace's own queue only: a tenant that causes changes at will (annotations, its own
    Secrets) must not push its namespace ahead of another namespace already waiting."""
    order = await _slot_order([("refresh-b1", "b", False), ("refresh-a1", "a", False), ("change-a", "a", True)])
    assert order == ["holder", "refresh-b1", "change-a", "refresh-a1"]


async def test_a_change_to_an_already_queued_reconcile_moves_it_to_its_namespaces_front() -> None:
    """A refresh already queued when its change arrives is hurried: first of its namespace, still after the
    namespace whose turn it is."""
    order = await _slot_order(
        [("refresh-b1", "b", False), ("refresh-a1", "a", False), ("queued-a2", "a", False)], hurried=("queued-a2",)
    )
    assert order == ["holder", "refresh-b1", "queued-a2", "refresh-a1"]
    assert await _slot_order([("a1", "a", False), ("a2", "a", False)], hurried=("gone",)) == ["holder", "a1", "a2"]


async def test_a_change_while_the_first_cycles_queue_runs_next_and_sees_the_change() -> None:
    """A fresh operator queues every first cycle; a spec edit of the last one must not wait behind the others,
    and the cycle it gets must see the edit (the body is read once the slot is held), not run the old spec
    first and queue once more."""
    reconciler = FakeReconciler(seconds={"ns": 0.02}, retry=None)
    scheduler = Scheduler(reconciler, 1, max_per_namespace=1)  # type: ignore[arg-type]
    try:
        for index in range(20):
            scheduler.upsert(_body(f"b{index}"))
        await asyncio.sleep(0.03)  # b0 holds the slot; the others queue
        edited = _body("b19")
        edited["metadata"]["generation"] = 2
        scheduler.upsert(edited)
        while ("b19", 2) not in reconciler.cycles:
            await asyncio.sleep(0.01)
        started = [uid for uid, _ in reconciler.cycles]
        assert started.index("b19") <= 2, started  # after at most the one or two already granted a slot
        assert ("b19", 1) not in reconciler.cycles  # one cycle, with the edit
    finally:
        await scheduler.stop()
