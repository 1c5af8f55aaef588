"""What the scheduler keeps per VaultBundle between cycles: nothing of the kopf event that created or woke it."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import gc
import json
import time
import weakref
from typing import Any, ClassVar

from prometheus_client import generate_latest

from tests.kit import World
from tests.unit.test_scheduler_backoff import FAST, body, until
from vaultbundle import metrics
from vaultbundle.controller import Scheduler
from vaultbundle.digest import Digester
from vaultbundle.keptbody import SharedStrings, kept_body
from vaultbundle.reconcile import FORCE_SYNC_ANNOTATION, Reconciler
from vaultbundle.status import Observed, Outcome


class Cause:
    """Stands for kopf's per-event state (its cause: the raw body, a patch, a logger) set in a context variable
    while a handler runs."""


async def test_workers_do_not_keep_the_handler_context_of_each_event_alive() -> None:
    world = World()
    world.push(b"A=1\n")
    scheduler = Scheduler(world.reconciler, 4, backoff=FAST)
    cause: contextvars.ContextVar[Cause] = contextvars.ContextVar("cause")
    seen: list[weakref.ref[Cause]] = []

    def handle(index: int) -> None:  # what kopf does around our on.event handler
        event = Cause()
        seen.append(weakref.ref(event))
        cause.set(event)
        item = copy.deepcopy(body(world))
        item["metadata"]["uid"] = f"uid-{index}"  # type: ignore[index]
        scheduler.upsert(item)

    try:
        for index in range(1, 4):
            contextvars.copy_context().run(handle, index)
        assert len(scheduler.workers) == 3
        assert all(worker.task is not None for worker in scheduler.workers.values())
        gc.collect()
        # the first handler's context is kept once (kopf's event poster lives in it), the later ones are not
        assert [ref() is not None for ref in seen] == [True, False, False]
    finally:
        await scheduler.stop()


async def test_an_idle_worker_is_one_task() -> None:
    world = World()
    world.push(b"A=1\n")
    scheduler = Scheduler(world.reconciler, 4, backoff=FAST)
    before = asyncio.all_tasks()
    try:
        scheduler.upsert(body(world))
        worker = scheduler.workers["uid-1"]
        await until(lambda: world.kube.secrets.get(("ns", "out")) is not None)
        await asyncio.sleep(0.2)  # past its cycle: waiting for its refresh interval (1m) or a wake
        assert worker.retry.failures == 0
        assert asyncio.all_tasks() - before == {worker.task}  # no helper task per waiting worker
        worker.wake.set()  # and a wake still ends the wait at once
        requests = world.objects.requests
        await until(lambda: world.objects.requests > requests)
    finally:
        await scheduler.stop()


def _event_body(name: str) -> dict[str, Any]:
    """A VaultBundle as a watch event carries it: what the operator reads and what it does not."""
    return json.loads(
        json.dumps(
            {
                "apiVersion": "vaultbundle.io/v1alpha1",
                "kind": "VaultBundle",
                "metadata": {
                    "name": name,
                    "namespace": "tenant",
                    "uid": f"uid-{name}",
                    "generation": 3,
                    "resourceVersion": "4242",
                    "creationTimestamp": "2026-12-03T17:35:25Z",
                    "labels": {"team": "a"},
                    "annotations": {FORCE_SYNC_ANNOTATION: "t1"},
                    "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                },
                "spec": {"refreshInterval": "1m", "targets": [{"name": "app", "kubernetesSecret": {"name": "s"}}]},
                "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Synced"}]},
            }
        )
    )


def test_a_kept_body_holds_what_a_cycle_and_an_event_read() -> None:
    body = _event_body("b")
    kept = kept_body(body, SharedStrings())
    assert Observed.from_body(kept) == Observed.from_body(body)
    assert kept == {
        "apiVersion": "vaultbundle.io/v1alpha1",
        "kind": "VaultBundle",
        "metadata": {
            "name": "b",
            "namespace": "tenant",
            "uid": "uid-b",
            "generation": 3,
            "annotations": {FORCE_SYNC_ANNOTATION: "t1"},
        },
        "spec": body["spec"],
        "status": body["status"],
    }
    kept["spec"]["targets"][0]["name"] = "changed"
    assert body["spec"]["targets"][0]["name"] == "app"  # a copy: the event's own body is left alone
    assert "managedFields" in body["metadata"]


def test_kept_bodies_share_their_strings_and_the_table_is_bounded() -> None:
    strings = SharedStrings()
    first, second = kept_body(_event_body("b"), strings), kept_body(_event_body("b"), strings)
    assert first == second
    reason = [c["reason"] for c in (first["status"]["conditions"][0], second["status"]["conditions"][0])]
    assert reason[0] is reason[1]  # one object, not one per body
    key = [next(iter(b["status"]["conditions"][0])) for b in (first, second)]
    assert key[0] is key[1]
    strings = SharedStrings(limit=8)
    long = "x" * 65
    assert strings.share(long) is long and len(strings) <= 8  # long strings are not kept in the table
    for index in range(100):  # churning values: the table never grows past its limit
        strings.share(f"value-{index}")
        assert len(strings) <= 8


class Remembered(Reconciler):
    """A reconciler whose every outcome (carrying the status it computed) is watched through a weak reference."""

    outcomes: ClassVar[list[weakref.ref[Outcome]]] = []

    async def reconcile(self, observed: Observed) -> Outcome:
        outcome = Outcome(refresh_seconds=60.0, status={"conditions": [{"type": "Ready", "status": "True"}]})
        self.outcomes.append(weakref.ref(outcome))
        return outcome


async def test_a_waiting_worker_keeps_nothing_of_its_last_cycle() -> None:
    world = World()
    reconciler = Remembered(world.kube, world.pool, Digester(b"k" * 32))
    scheduler = Scheduler(reconciler, 4, backoff=FAST)
    try:
        scheduler.upsert(body(world))
        await until(lambda: len(reconciler.outcomes) == 1)
        await asyncio.sleep(0.05)  # the cycle is over: the worker waits for its refresh interval
        gc.collect()
        assert reconciler.outcomes[0]() is None
    finally:
        await scheduler.stop()


def test_per_bundle_gauges_render_one_sample_each_and_are_forgotten() -> None:
    metrics.READY.values[("ns-x", "b-x")] = 1.0
    metrics.BUNDLE_AGE.values[("ns-x", "b-x")] = time.time() - 100
    text = generate_latest(metrics.REGISTRY).decode()
    assert "# TYPE vaultbundle_ready gauge" in text and "# TYPE vaultbundle_bundle_age_seconds gauge" in text
    assert 'vaultbundle_ready{name="b-x",namespace="ns-x"} 1.0' in text
    age = next(
        line
        for line in text.splitlines()
        if line.startswith('vaultbundle_bundle_age_seconds{name="b-x",namespace="ns-x"')
    )
    assert 100 <= float(age.rsplit(" ", 1)[1]) < 200  # computed at scrape time from the sealed timestamp
    metrics.forget("ns-x", "b-x")
    assert 'name="b-x"' not in generate_latest(metrics.REGISTRY).decode()
