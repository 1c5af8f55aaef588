"""Drift repair over the in-memory kit: a managed Secret edited, deleted or stripped of its labels behind our back
is put back by a check cycle (named by the watch), a key of another field manager stays, our own writes are
recognised, and a store's driftCheckInterval schedules read-only checks that write only on a difference.

The scheduler's part (debounce, ignoring our own resourceVersion) is tested at the bottom; the real apiserver,
moto and OpenBao are in tests/e2e/test_drift.py."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from tests.kit import World
from vaultbundle import metrics, targets
from vaultbundle.controller import Scheduler
from vaultbundle.drift import Known, SecretVersions
from vaultbundle.errors import SpecError
from vaultbundle.fields import Selection
from vaultbundle.selection import select
from vaultbundle.status import Outcome
from vaultbundle.targets.base import Plan, StoreKind, TargetContext, diff
from vaultbundle.vault import Vault

CANARY = "CANARY-drift-value"


def repairs(kind: str) -> float:
    return float(metrics.DRIFT_REPAIRS.labels(kind)._value.get())


@pytest.fixture
async def synced() -> World:
    world = World()
    world.push(f"A={CANARY}\nB=2\n".encode())
    assert (await world.cycle()).ready and world.secret() == {"A": CANARY, "B": "2"}
    world.objects.downloads.clear()
    return world


async def check(world: World, *names: str) -> Outcome:
    return await world.reconciler.reconcile(replace(world.observed(), drifted=frozenset(names)))


def versions(world: World) -> str:
    known = world.reconciler.secret_versions.get("ns", "out")
    assert known is not None and known.uid == "uid-1" and known.target == "app"
    return known.version


async def test_our_own_write_is_remembered_by_its_resource_version(synced: World) -> None:
    assert versions(synced) == synced.kube.secrets[("ns", "out")]["metadata"]["resourceVersion"]


async def test_a_hand_edited_key_is_put_back_with_one_event_naming_the_key(synced: World) -> None:
    before, derivations, writes = repairs("kubernetesSecret"), synced.derivations, len(synced.kube.writes)
    edited = synced.kube.edit_secret("ns", "out", A="hand-edited")
    outcome = await check(synced, "app")
    assert synced.secret() == {"A": CANARY, "B": "2"}
    assert synced.kube.writes[writes:].count("apply_secret") == 1
    assert synced.target()["plan"]["update"] == ["A"]
    assert [(e.type, e.reason) for e in outcome.events] == [("Normal", "DriftRepaired")]
    message = outcome.events[0].message
    assert "keys A" in message and CANARY not in message and "hand-edited" not in message
    assert repairs("kubernetesSecret") == before + 1
    assert synced.derivations == derivations  # the bundle was re-opened without a key derivation
    assert synced.objects.downloads == ["p/latest", next(k for k in synced.objects.objects if "/versions/" in k)]
    assert versions(synced) != edited  # the repair's own version is now the known one


async def test_a_check_that_finds_nothing_writes_nothing(synced: World) -> None:
    writes, requests = list(synced.kube.writes), synced.objects.requests
    outcome = await check(synced, "app")
    assert outcome.idle and synced.kube.writes == writes and outcome.events == []
    # the cost README.md states: the idle cycle's conditional GET, then pointer, bundle, generation, layout probe
    assert synced.objects.requests == requests + 5


async def test_a_key_of_another_field_manager_stays_and_is_not_drift(synced: World) -> None:
    secret = synced.kube.secrets[("ns", "out")]
    secret["data"]["THEIRS"] = base64.b64encode(b"x").decode()  # not in our managedFields
    secret["metadata"]["resourceVersion"] = "theirs-1"
    writes = list(synced.kube.writes)
    outcome = await check(synced, "app")
    assert outcome.idle and synced.kube.writes == writes
    assert synced.secret()["THEIRS"] == "x"
    assert versions(synced) == "theirs-1"  # found in sync: its next event is not drift either


async def test_a_deleted_secret_is_recreated(synced: World) -> None:
    del synced.kube.secrets[("ns", "out")]
    outcome = await check(synced, "app")
    assert synced.secret() == {"A": CANARY, "B": "2"}
    assert "DriftRepaired" in [e.reason for e in outcome.events]


async def test_removed_labels_and_annotations_are_restored(synced: World) -> None:
    meta = synced.kube.secrets[("ns", "out")]["metadata"]
    meta["labels"], meta["annotations"] = {}, {}
    outcome = await check(synced, "app")
    meta = synced.kube.secrets[("ns", "out")]["metadata"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "vaultbundle"
    assert meta["annotations"]["vaultbundle.io/owner-uid"] == "uid-1"
    assert "labels/annotations" in outcome.events[0].message


async def test_only_the_owner_annotation_removed_is_restored_too(synced: World) -> None:
    del synced.kube.secrets[("ns", "out")]["metadata"]["annotations"]["vaultbundle.io/owner"]
    await check(synced, "app")
    assert synced.kube.secrets[("ns", "out")]["metadata"]["annotations"]["vaultbundle.io/owner"] == "ns/web"


async def test_a_secret_made_again_by_someone_else_is_not_taken(synced: World) -> None:
    del synced.kube.secrets[("ns", "out")]
    synced.kube.put_secret("ns", "out", {"A": "theirs"})  # another object (another uid), no owner annotation
    await check(synced, "app")
    assert synced.secret() == {"A": "theirs"} and synced.target()["reason"] == "SecretNotOwned"


async def test_a_vaultbundle_being_deleted_does_not_recreate_its_secret(synced: World) -> None:
    synced.kube.vaultbundles[("ns", "web")] = {"metadata": {"name": "web", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    del synced.kube.secrets[("ns", "out")]
    outcome = await check(synced, "app")
    assert outcome.idle and ("ns", "out") not in synced.kube.secrets


async def test_a_suspended_or_dry_run_vaultbundle_repairs_nothing(synced: World) -> None:
    synced.edit_spec(dryRun=True)
    await synced.cycle()  # the spec changed: a full (planning) cycle
    synced.kube.edit_secret("ns", "out", A="hand-edited")
    writes = list(synced.kube.writes)
    await check(synced, "app")
    assert synced.secret()["A"] == "hand-edited" and "apply_secret" not in synced.kube.writes[len(writes) :]


async def test_idle_cycles_without_drift_stay_free(synced: World) -> None:
    writes, requests = list(synced.kube.writes), synced.objects.requests
    for _ in range(3):
        assert (await synced.cycle()).idle
    assert synced.kube.writes == writes and synced.objects.requests == requests + 3 and synced.objects.downloads == []


# --- timed checks of an external store (a store kind kept in memory) ----------------------------------------


class MemoryStore:
    """A store holding name -> value; counts its reads and writes."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.reads = 0
        self.writes = 0


STORE = MemoryStore()


class MemoryTarget:
    def __init__(self, context: TargetContext) -> None:
        self.resync = context.resync

    def describe(self) -> str:
        return "memory store"

    def status_extra(self) -> dict[str, Any]:
        return {}

    async def plan(self, desired: Mapping[str, bytes]) -> Plan[Any]:
        STORE.reads += 1
        return diff(STORE.values, desired, prune=True)

    async def apply(self, plan: Plan[Any], desired: Mapping[str, bytes]) -> None:
        STORE.writes += 1
        STORE.values = dict(desired)


class MemoryKind(StoreKind):
    name = "memoryStore"

    def parse(self, raw: Mapping[str, Any], path: str) -> dict[str, Any]:
        return dict(raw)

    def desired(self, vault: Vault, selection: Selection, spec: Any) -> dict[str, bytes]:
        return select(vault, selection)

    async def connect(self, spec: Any, context: TargetContext) -> MemoryTarget:
        return MemoryTarget(context)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(monkeypatch: pytest.MonkeyPatch) -> tuple[World, Clock]:
    monkeypatch.setitem(targets.KINDS, "memoryStore", MemoryKind())
    monkeypatch.setitem(targets.CHECK_FIELDS, "memoryStore", ("driftCheckInterval", 3600.0))
    STORE.__init__()  # type: ignore[misc]
    world = World()
    clock = Clock()
    world.reconciler.clock = clock
    world.spec["targets"] = [
        {"name": "app", "kubernetesSecret": {"name": "out"}},
        {"name": "mem", "memoryStore": {"driftCheckInterval": "2m"}},
    ]
    world.push(f"A={CANARY}\n".encode())
    first = await world.cycle()
    assert first.ready and STORE.values == {"A": CANARY.encode()}
    assert first.check_in == 120.0  # the worker wakes for the check even with a longer refreshInterval
    return world, clock


async def test_a_store_is_not_read_before_its_check_is_due(store: tuple[World, Clock]) -> None:
    world, clock = store
    reads = STORE.reads
    clock.now += 119
    outcome = await world.cycle()
    assert outcome.idle and STORE.reads == reads and outcome.check_in == pytest.approx(1.0)


async def test_a_due_check_without_drift_reads_only_that_store_and_writes_nothing(store: tuple[World, Clock]) -> None:
    world, clock = store
    reads, writes, kube_calls, derivations = STORE.reads, STORE.writes, len(world.kube.calls), world.derivations
    clock.now += 120
    outcome = await world.cycle()
    assert outcome.idle and STORE.reads == reads + 1 and STORE.writes == writes
    # the two source Secrets, read by every cycle; the Kubernetes Secret target was not looked at
    assert world.kube.calls[kube_calls:] == ["get_secret", "get_secret"]
    assert world.kube.writes.count("patch_status") == 1  # only the first sync's
    assert world.derivations == derivations and outcome.check_in == 120.0


async def test_drift_in_a_store_is_rewritten_once_with_the_event_and_metric(store: tuple[World, Clock]) -> None:
    world, clock = store
    before = repairs("memoryStore")
    STORE.values["A"] = b"changed by hand"
    clock.now += 120
    outcome = await world.cycle()
    assert STORE.values == {"A": CANARY.encode()}
    assert [(e.reason, "keys A" in e.message) for e in outcome.events] == [("DriftRepaired", True)]
    assert repairs("memoryStore") == before + 1
    assert {t["name"]: t["state"] for t in world.kube.status["targets"]} == {"app": "Synced", "mem": "Synced"}
    writes = STORE.writes
    assert (await world.cycle()).idle and STORE.writes == writes  # repaired: the next cycle is idle again


async def test_check_intervals_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    def interval(kind: str, value: str | None) -> float:
        body: dict[str, Any] = {"name": "x", "repository": "o/r"} if kind == "githubActions" else {}
        if value is not None:
            body["driftCheckInterval" if kind != "githubActions" else "resyncInterval"] = value
        return targets.check_interval(body, kind, "t", 60.0)

    assert interval("awsSecretsManager", None) == 3600.0
    assert interval("hashicorpVault", "0") == 0.0 and interval("hashicorpVault", "0s") == 0.0
    assert interval("azureKeyVault", "1m30s") == 90.0
    assert interval("githubActions", None) == 0.0  # a re-PUT is opt-in
    assert interval("kubernetesSecret", "5m") == 0.0  # repaired from the watch, never on a timer
    with pytest.raises(SpecError, match="below the operator's minimum of 60s"):
        interval("gcpSecretManager", "10s")
    with pytest.raises(SpecError, match="not a duration"):
        interval("gcpSecretManager", "often")


# --- the scheduler: debounce, bursts, our own writes ---------------------------------------------------------


def body(world: World) -> dict[str, object]:
    observed = world.observed()
    return {
        "metadata": {"namespace": observed.namespace, "name": observed.name, "uid": observed.uid, "generation": 1},
        "spec": dict(observed.spec),
    }


async def until(condition: Any, timeout: float = 30.0) -> None:  # a deadline, generous for a loaded machine
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def event(world: World) -> dict[str, Any]:
    return dict(world.kube.secrets[("ns", "out")]["metadata"])


async def test_the_scheduler_repairs_a_burst_once_and_ignores_its_own_writes() -> None:
    world = World()
    world.push(f"A={CANARY}\n".encode())
    scheduler = Scheduler(world.reconciler, 4, drift_debounce=0.05)
    cycles: list[Outcome] = []
    reconcile = world.reconciler.reconcile

    async def counted(observed: Any) -> Outcome:
        outcome = await reconcile(observed)
        cycles.append(outcome)
        return outcome

    world.reconciler.reconcile = counted  # type: ignore[method-assign]
    scheduler.upsert(body(world))
    try:
        await until(lambda: len(cycles) == 1)
        assert scheduler.managed_secret_changed("ns", "out", event(world)) == "uid-1"  # our own write's event
        for value in ("x", "y", "z"):  # a burst of three hand edits
            world.kube.edit_secret("ns", "out", A=value)
            scheduler.managed_secret_changed("ns", "out", event(world))
        await until(lambda: len(cycles) == 2)
        assert world.secret() == {"A": CANARY}
        assert [e.reason for e in cycles[1].events] == ["DriftRepaired"]
        scheduler.managed_secret_changed("ns", "out", event(world))  # the repair's own event: nothing queued
        worker = scheduler.workers["uid-1"]
        assert not worker.drift and worker.drift_timer is None and not worker.wake.is_set()
        assert len(cycles) == 2
    finally:
        await scheduler.stop()


async def synced_by_a_scheduler(debounce: float) -> tuple[World, Scheduler]:
    world = World()
    world.push(b"A=1\n")
    scheduler = Scheduler(world.reconciler, 4, drift_debounce=debounce)
    scheduler.upsert(body(world))
    await until(lambda: world.reconciler.secret_versions.get("ns", "out") is not None)
    return world, scheduler


async def test_an_event_that_turns_out_to_be_our_own_write_wakes_nobody() -> None:
    world, scheduler = await synced_by_a_scheduler(0.05)
    try:
        worker = scheduler.workers["uid-1"]
        # the watch delivered the write's event before the apply's answer: unknown version at first
        world.kube.edit_secret("ns", "out", A="1")
        scheduler.managed_secret_changed("ns", "out", event(world))
        assert worker.drift
        known = world.reconciler.secret_versions.get("ns", "out")
        assert known is not None
        world.reconciler.secret_versions.note("ns", "out", "uid-1", "app", event(world)["resourceVersion"])
        await until(lambda: worker.drift_timer is None)
        assert not worker.wake.is_set() and not worker.drift
    finally:
        await scheduler.stop()


async def test_a_deleted_vaultbundles_secrets_wake_nothing() -> None:
    world, scheduler = await synced_by_a_scheduler(0.01)
    metadata = event(world)
    await scheduler.remove("uid-1")
    metadata["resourceVersion"] = "gone"
    assert scheduler.managed_secret_changed("ns", "out", metadata) is None
    assert world.reconciler.secret_versions.get("ns", "out") is None


# --- GitHub Actions: write-only, so its timer re-PUTs -------------------------------------------------------


async def _no_secret(name: str, key: str) -> str:
    raise AssertionError("no Secret is read")


def _github_plan(resync: bool, monkeypatch: pytest.MonkeyPatch) -> Plan[Any]:
    from vaultbundle.digest import Digester
    from vaultbundle.targets import github_actions
    from vaultbundle.targets.base import Owner

    spec = github_actions.KIND.parse({"repository": "acme/web", "auth": {"tokenSecretRef": {"name": "gh"}}}, "t")
    digester = Digester(b"k" * 32)
    previous = {"remoteScope": spec.scope, "remoteDigests": {"A": digester.digest({"A": b"1"})}}
    context = TargetContext(None, Owner("ns", "web", "u"), digester, previous, _no_secret, resync=resync)  # type: ignore[arg-type]
    target = github_actions.GitHubActionsTarget(None, spec, context)  # type: ignore[arg-type]
    remote = github_actions.StoreState("https://api.invalid/repos/acme/web/actions/secrets", {"A": None})
    monkeypatch.setattr(target, "_read_remote", lambda: remote)
    return target._plan({"A": b"1"})


def test_github_secrets_are_rewritten_only_on_a_resync(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _github_plan(False, monkeypatch).changed  # the digest in status matches: nothing to PUT
    assert _github_plan(True, monkeypatch).update == ["A"]  # resyncInterval passed: PUT again (values unreadable)


async def test_our_own_delete_and_reapply_of_a_secret_queues_no_check() -> None:
    """A type change deletes and re-applies the Secret: the delete's event is unknown, the apply's is ours."""
    world, scheduler = await synced_by_a_scheduler(0.05)
    try:
        worker = scheduler.workers["uid-1"]
        deleted = {**event(world), "resourceVersion": "deleted-by-us"}
        scheduler.managed_secret_changed("ns", "out", deleted)
        assert worker.drift
        scheduler.managed_secret_changed("ns", "out", event(world))  # the re-apply: the version we know
        await until(lambda: worker.drift_timer is None)
        assert not worker.drift and not worker.wake.is_set()
    finally:
        await scheduler.stop()


def test_forgetting_a_vaultbundle_drops_only_the_secrets_it_still_owns() -> None:
    versions = SecretVersions()
    versions.note("ns", "a-env", "uid-a", "app", "1")
    versions.note("ns", "shared-env", "uid-a", "app", "2")
    versions.note("ns", "shared-env", "uid-b", "app", "3")  # another VaultBundle wrote it since
    versions.note("ns", "b-env", "uid-b", "app", "4")
    versions.forget("uid-a")
    assert versions.get("ns", "a-env") is None
    assert versions.get("ns", "shared-env") == Known("uid-b", "app", "3", "")
    versions.forget("uid-b")
    assert versions.get("ns", "shared-env") is None and versions.get("ns", "b-env") is None
