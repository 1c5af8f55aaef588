"""Rollout restarts (issue #14, item 3) over the in-memory kit: when a Kubernetes Secret target's content changes,
the workloads of `spec.rolloutRestartTargets` get one `vaultbundle.io/restartedAt` pod template annotation per
`rolloutMinInterval` window; never at first creation; a missing or forbidden workload does not block the sync."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.kit.kube import MemoryKube
from tests.kit.world import World
from vaultbundle import rollout
from vaultbundle.digest import Digester
from vaultbundle.errors import Reason, SpecError
from vaultbundle.reconcile import Reconciler
from vaultbundle.rollout import RESTARTED_AT_ANNOTATION
from vaultbundle.settings import DEFAULTS
from vaultbundle.spec import Workload, parse_duration
from vaultbundle.status import Outcome
from vaultbundle.targets import parse_spec

START = datetime(2026, 12, 3, 9, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def world_with(*workloads: tuple[str, str], interval: str = "1m", present: bool = True) -> tuple[World, Clock]:
    world = World()
    clock = Clock()
    world.reconciler.wall_clock = clock
    world.spec["rolloutRestartTargets"] = [{"kind": kind, "name": name} for kind, name in workloads]
    world.spec["rolloutMinInterval"] = interval
    if present:
        for kind, name in workloads:
            world.kube.put_workload("ns", kind, name)
    return world, clock


async def create_then_change(world: World) -> Outcome:
    """The Secret is created (which restarts nothing), then its content changes once: the second cycle's outcome."""
    world.push(b"A=1\n")
    await world.cycle()
    world.push(b"A=2\n")
    return await world.cycle()


def restarts(world: World) -> int:
    return world.kube.calls.count("patch_pod_template")


def rollouts(world: World) -> dict[str, dict[str, Any]]:
    return {f"{e['kind']}/{e['name']}": e for e in world.kube.status.get("rollouts", [])}


async def test_no_restart_at_first_creation_then_one_restart_for_three_quick_pushes() -> None:
    world, clock = world_with(("Deployment", "web"), ("StatefulSet", "db"))
    world.push(b"A=1\n")
    first = await world.cycle()
    assert world.secret() == {"A": "1"} and first.ready
    assert restarts(world) == 0 and "rollouts" not in world.kube.status  # the Secret was only created
    for second, value in ((5, b"A=2\n"), (15, b"A=3\n"), (30, b"A=4\n")):
        clock.now = START + timedelta(seconds=second)
        world.push(value)
        outcome = await world.cycle()
        assert outcome.ready and restarts(world) == 0  # inside the window: coalesced
        assert outcome.wake_seconds == pytest.approx(60 - (second - 5))  # the worker wakes at the window's end
    entry = rollouts(world)["Deployment/web"]
    assert (entry["state"], entry["reason"], entry["secrets"]) == ("Pending", "RolloutPending", ["out"])
    assert entry["pendingSince"] == "2026-12-03T09:00:05Z"
    clock.now = START + timedelta(seconds=40)
    writes = list(world.kube.writes)
    waiting = await world.cycle()  # idle, not due yet: nothing written, the wake time kept
    assert waiting.idle and world.kube.writes == writes and waiting.wake_seconds == pytest.approx(25)
    clock.now = START + timedelta(seconds=65)
    derived = world.derivations
    due = await world.cycle()  # nothing else changed: the cheap path restarts
    assert restarts(world) == 2 and due.reason == "RolloutRestarted"  # one per workload
    assert world.derivations == derived and world.kube.writes[len(writes) :] == [
        "patch_pod_template",
        "patch_pod_template",
        "patch_status",
    ]  # the cheap path: no key derivation, no Secret write
    stamp = "2026-12-03T09:01:05Z"
    assert world.kube.workloads[("ns", "Deployment", "web")] == {RESTARTED_AT_ANNOTATION: stamp}
    assert world.kube.workloads[("ns", "StatefulSet", "db")] == {RESTARTED_AT_ANNOTATION: stamp}
    entry = rollouts(world)["Deployment/web"]
    assert (entry["state"], entry["reason"], entry["restartedAt"]) == ("Restarted", "RolloutRestarted", stamp)
    assert "pendingSince" not in entry and "Secret out" in entry["message"]
    assert [e.reason for e in due.events] == ["RolloutRestarted", "RolloutRestarted"]
    assert world.conditions()["Ready"] == ("True", "Synced")  # the partial status patch kept the rest
    clock.advance(600)
    writes = list(world.kube.writes)
    await world.cycle()
    assert world.kube.writes == writes  # an idle cycle after the restart writes nothing


async def test_a_change_after_the_window_waits_for_the_next_window_from_the_last_restart() -> None:
    world, clock = world_with(("Deployment", "web"), interval="30s")
    await create_then_change(world)
    clock.advance(30)
    await world.cycle()
    assert restarts(world) == 1
    clock.advance(10)  # a new change 10 s after the restart: due 30 s after it at the earliest
    world.push(b"A=3\n")
    outcome = await world.cycle()
    assert restarts(world) == 1 and outcome.wake_seconds == pytest.approx(30)
    clock.advance(30)
    await world.cycle()
    assert restarts(world) == 2


async def test_zero_interval_restarts_in_the_same_cycle() -> None:
    world, _clock = world_with(("DaemonSet", "agent"), interval="0s")
    outcome = await create_then_change(world)
    assert restarts(world) == 1 and outcome.wake_seconds is None
    assert rollouts(world)["DaemonSet/agent"]["state"] == "Restarted"


async def test_metadata_only_change_and_dry_run_restart_nothing() -> None:
    world, clock = world_with(("Deployment", "web"), interval="0s")
    world.push(b"A=1\n")
    await world.cycle()
    world.edit_spec(targets=[{"name": "app", "kubernetesSecret": {"name": "out", "labels": {"team": "a"}}}])
    await world.cycle()
    assert world.kube.writes.count("apply_secret") == 2 and restarts(world) == 0  # labels only
    world.edit_spec(dryRun=True)
    world.push(b"A=2\n")
    await world.cycle()
    assert restarts(world) == 0 and world.secret() == {"A": "1"}
    world.edit_spec(dryRun=False)
    clock.advance(1)
    await world.cycle()
    assert restarts(world) == 1 and world.secret() == {"A": "2"}


async def test_missing_workload_fails_alone_and_the_sync_goes_on() -> None:
    world, _clock = world_with(("Deployment", "web"), ("Deployment", "ghost"), interval="0s", present=False)
    world.kube.put_workload("ns", "Deployment", "web")
    outcome = await create_then_change(world)
    assert world.secret() == {"A": "2"} and outcome.ready and world.conditions()["Ready"] == ("True", "Synced")
    ghost, web = rollouts(world)["Deployment/ghost"], rollouts(world)["Deployment/web"]
    assert (ghost["state"], ghost["reason"]) == ("Failed", "NotFound") and "pendingSince" not in ghost
    assert "Deployment ghost does not exist in namespace ns" in ghost["message"]
    assert web["state"] == "Restarted"
    warnings = [e for e in outcome.events if e.type == "Warning"]
    assert [(e.reason, "ghost" in e.message) for e in warnings] == [("NotFound", True)]
    assert outcome.failure is None  # not retried: nothing to restart
    world.push(b"A=3\n")
    again = await world.cycle()
    assert not [e for e in again.events if e.type == "Warning"]  # one Warning per new failure, not per change


async def test_forbidden_names_the_chart_value() -> None:
    world, _clock = world_with(("StatefulSet", "db"), interval="0s")
    world.kube.failing["patch_pod_template"] = 403
    outcome = await create_then_change(world)
    entry = rollouts(world)["StatefulSet/db"]
    assert (entry["state"], entry["reason"]) == ("Failed", "Forbidden")
    assert "rbac.rolloutRestart=true" in entry["message"] and "statefulsets" in entry["message"]
    assert outcome.ready and world.secret() == {"A": "2"}
    assert [e.reason for e in outcome.events if e.type == "Warning"] == ["Forbidden"]


async def test_transient_failure_keeps_the_restart_pending_and_retries_with_backoff() -> None:
    world, _clock = world_with(("Deployment", "web"), interval="0s")
    world.push(b"A=1\n")
    await world.cycle()
    world.kube.failing["patch_pod_template"] = 503
    world.push(b"A=2\n")
    outcome = await world.cycle()
    assert outcome.failure == Reason.KUBERNETES_API_ERROR  # transient: the scheduler backs off and retries
    entry = rollouts(world)["Deployment/web"]
    assert (entry["state"], entry["reason"]) == ("Failed", "KubernetesAPIError") and "pendingSince" in entry
    del world.kube.failing["patch_pod_template"]
    retried = await world.cycle()
    assert retried.failure is None and rollouts(world)["Deployment/web"]["state"] == "Restarted"
    assert world.kube.workloads[("ns", "Deployment", "web")]


async def test_a_stale_status_never_causes_a_second_restart() -> None:
    """The status event of the restart may arrive after the next cycle: the reconciler's memory decides."""
    world, clock = world_with(("Deployment", "web"), interval="10s")
    await create_then_change(world)
    stale = dict(world.kube.status)  # still Pending
    clock.advance(10)
    await world.cycle()
    assert restarts(world) == 1
    clock.advance(10)
    await world.reconciler.reconcile(world.observed(status=stale))
    assert restarts(world) == 1


async def test_a_new_operator_finishes_a_pending_restart_from_status() -> None:
    world, clock = world_with(("Deployment", "web"), interval="20s")
    await create_then_change(world)
    assert rollouts(world)["Deployment/web"]["state"] == "Pending"
    world.reconciler = Reconciler(
        world.kube, world.pool, Digester(b"k" * 32), s3_factory=lambda _c: world.objects, min_refresh=0
    )
    world.reconciler.wall_clock = clock
    clock.advance(5)
    early = await world.cycle()  # a full cycle (new process): still inside the window
    assert restarts(world) == 0 and early.wake_seconds == pytest.approx(15)
    clock.advance(15)
    await world.cycle()
    assert restarts(world) == 1


async def test_removing_the_list_clears_the_status() -> None:
    world, _clock = world_with(("Deployment", "web"), interval="0s")
    await create_then_change(world)
    assert rollouts(world)
    world.edit_spec(rolloutRestartTargets=[])
    await world.cycle()
    assert world.kube.status["rollouts"] == []


async def test_one_shot_sync_restarts_nothing() -> None:
    """`vaultbundle sync` keeps no status, so it keeps no window either: restarts are the operator's."""
    world, _clock = world_with(("Deployment", "web"), interval="0s")
    world.reconciler.write_status = False
    await create_then_change(world)
    assert world.secret() == {"A": "2"} and restarts(world) == 0


async def test_no_rollout_targets_no_rollout_status_and_no_extra_calls() -> None:
    world = World()
    await create_then_change(world)
    assert "rollouts" not in world.kube.status and restarts(world) == 0


def test_spec_rollout_fields_parse_and_refuse() -> None:
    base: dict[str, Any] = {
        "source": {"configSecretRef": {"name": "cfg"}, "passphraseSecretRef": {"name": "pass"}},
        "targets": [{"name": "app", "kubernetesSecret": {"name": "out"}}],
    }
    parsed = parse_spec(base, namespace="ns")
    assert parsed.rollout_targets == () and parsed.rollout_min_interval == 60 and not parsed.allow_empty
    parsed = parse_spec(
        {
            **base,
            "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}, {"kind": "DaemonSet", "name": "web"}],
            "rolloutMinInterval": "1m30s",
        },
        namespace="ns",
    )
    assert parsed.rollout_targets == (Workload("Deployment", "web"), Workload("DaemonSet", "web"))
    assert parsed.rollout_min_interval == 90
    for bad, message in (
        ([{"kind": "Pod", "name": "web"}], "kind must be one of Deployment, StatefulSet, DaemonSet"),
        ([{"kind": "Deployment", "name": "Web_1"}], "must be a Deployment name"),
        ([{"kind": "Deployment", "name": "web", "namespace": "other"}], "unknown field"),
        ([{"kind": "Deployment", "name": "web"}] * 2, "listed twice"),
        ([{"kind": "Deployment"}], "name is required"),
        ({"kind": "Deployment", "name": "web"}, "must be a list"),
        ([{"kind": "Deployment", "name": f"w{i}"} for i in range(33)], "at most 32"),
    ):
        with pytest.raises(SpecError, match=message):
            parse_spec({**base, "rolloutRestartTargets": bad}, namespace="ns")
    with pytest.raises(SpecError, match=r"spec\.rolloutMinInterval"):
        parse_spec({**base, "rolloutMinInterval": "soon"}, namespace="ns")


async def test_a_hand_edited_status_is_tolerated() -> None:
    """status.rollouts is read back: garbage in it (a bad time, a non-list) never breaks the cycle."""
    kube = MemoryKube()
    kube.put_workload("ns", "Deployment", "web")
    garbage = [{"kind": "Deployment", "name": "web", "pendingSince": "yesterday", "secrets": 7}, "not-an-entry"]
    web = [Workload("Deployment", "web")]
    step = await rollout.step(kube, "ns", web, 60, garbage, ["out"], now=START)
    (entry,) = step.entries
    assert entry["state"] == "Pending" and entry["secrets"] == ["out"] and step.wake_seconds == 60
    assert entry["pendingSince"] == "2026-12-03T09:00:00Z"  # the window starts now, and ends
    later = await rollout.step(
        kube, "ns", [Workload("Deployment", "web")], 60, step.entries, [], now=START.replace(minute=1)
    )
    assert later.entries[0]["state"] == "Restarted"


async def test_a_due_restart_does_not_wait_for_a_failing_bundle() -> None:
    """S3 or the bundle failing when the window ends: the Secret already changed, so the restart still happens."""
    world, clock = world_with(("Deployment", "web"), interval="10s")
    await create_then_change(world)
    world.kube.put_secret("ns", "pass", {"passphrase": "a different passphrase"})  # the next cycle fails
    clock.advance(10)
    outcome = await world.cycle()
    assert outcome.reason == "WrongPassphrase" and restarts(world) == 1
    assert rollouts(world)["Deployment/web"]["state"] == "Restarted"
    assert world.conditions()["Ready"] == ("False", "WrongPassphrase")


def test_the_crd_default_is_the_settings_default() -> None:
    crd = yaml.safe_load((REPO / "crds" / "vaultbundle.io_vaultbundles.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert parse_duration(spec["rolloutMinInterval"]["default"], "default") == DEFAULTS.rollout_min_interval_seconds
    assert spec["source"]["properties"]["allowEmpty"]["default"] is False
