"""The peer bench's pure parts: ratios ours ÷ ESO, the result shape and tables, the 10k targets, the audit-log
and moto-log counts (a rotated audit log is followed), the Ready condition reader and the load sampler."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from bench import peer_report, tenk
from bench.peer import moto_requests
from bench.readiness import ready_reason
from bench.scale import audit_mark, audit_requests, audit_writes
from bench.stats import LoadSampler


def _run(operator: str, setting: str, n: int, **over: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "operator": operator,
        "setting": setting,
        "args": [],
        "n": n,
        "ready_s": 20.0,
        "rss": {"main_mib": 160.0},
        "cpu_s_during_ready": {"operator": 4.0, "kube-apiserver": 8.0, "bench": 1.0, "total": 13.0},
        "cpu_s_during_idle": {"operator": 1.0, "kube-apiserver": 2.0, "bench": 0.0, "total": 3.0},
        "idle_window_s": 30.0,
        "idle_api_writes": 400,
        "idle_provider_requests": 200,
        "idle_moto_requests": 210,
        "change_propagation_s": 12.0,
        "change_after_detection_s": 0.5,
    }
    run.update(over)
    return run


def _result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "machine": {"cpu_model": "x", "cpus": 2, "mem_total_mib": 1, "git_commit": "abc", "load_note": "unit test"},
        "eso_version": "v0.20.4",
        "refresh_interval_s": 30.0,
        "load": {"every_s": 5.0, "loadavg_1m": {"median": 3.0, "min": 2.0, "max": 4.0}, "samples": [[0, 3, 3, 3]]},
        "runs": runs,
    }


def test_ratio_is_ours_over_eso_and_refuses_a_zero_or_missing_denominator() -> None:
    assert peer_report.ratio(10.0, 40.0) == 0.25
    assert peer_report.ratio(1.0, 3.0) == 0.333  # 3 significant digits
    assert peer_report.ratio(0.0, 800.0) == 0.0
    assert peer_report.ratio(0.0, 0.0) is None and peer_report.ratio(5.0, 0.0) is None
    assert peer_report.ratio(None, 1.0) is None and peer_report.ratio(1.0, None) is None


def test_ratio_rows_pair_the_same_n_and_setting_and_read_every_metric() -> None:
    runs = [
        _run("eso", "default", 200),
        _run(
            "vaultbundle",
            "default",
            200,
            ready_s=5.0,
            idle_api_writes=0,
            idle_moto_requests=200,
            rss=None,
            rss_after_ready={"main_mib": 80.0},
        ),
        _run("eso", "tuned", 200, idle_api_writes=0),
        _run("vaultbundle", "tuned", 200, idle_api_writes=0, idle_moto_requests=-1, idle_provider_requests=190),
        _run("vaultbundle", "fairness-off", 200),  # no ESO peer: no ratio row
        _run("eso", "default", 1000, ready_s=None, error="not all Ready within 600s"),
    ]
    rows = peer_report.ratio_rows(_result(runs))
    assert [(r["n"], r["setting"]) for r in rows] == [(200, "default"), (200, "tuned")]
    default, tuned = rows[0]["metrics"], rows[1]["metrics"]
    assert set(default) == {key for key, _ in peer_report.METRICS}
    assert default["ready_s"] == {"ours": 5.0, "eso": 20.0, "ratio": 0.25}
    assert default["rss_mib"] == {"ours": 80.0, "eso": 160.0, "ratio": 0.5}  # after-Ready RSS when no final one
    assert default["apiserver_cpu_ready_s"]["eso"] == 8.0 and default["operator_cpu_idle_s"]["ours"] == 1.0
    assert default["idle_provider_requests"] == {"ours": 200.0, "eso": 210.0, "ratio": 0.952}  # moto's count
    assert tuned["idle_provider_requests"]["ours"] == 190.0  # moto log unreadable (-1): the operator's metric
    assert tuned["idle_api_writes"] == {"ours": 0.0, "eso": 0.0, "ratio": None}

    result = _result(runs)
    result["ratios"] = rows
    json.loads(json.dumps(result))  # the JSON as written
    table = peer_report.markdown(result)
    assert "| 200 | default | 0.25 | 0.5 |" in table
    assert "both 0" in table  # tuned idle writes: neither wrote
    assert "eso default N=1000: not all Ready within 600s" in table
    assert table.count("\n| 200 | vaultbundle |") == 3  # default, tuned, fairness-off rows


def test_plot_writes_a_png(tmp_path: Path) -> None:
    runs = [_run("eso", "default", 50), _run("vaultbundle", "default", 50, ready_s=None)]
    peer_report.plot(_result(runs), tmp_path / "peer.png")
    assert (tmp_path / "peer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ten_thousand_targets_per_phase_and_table() -> None:
    phase1: dict[str, Any] = {
        "n": 10_000,
        "ready_s": 100.0,
        "rss_mib": 390.0,
        "idle_cycle_api_writes": 0,
        "idle_cycle_kdf_calls": 0,
        "change_after_detection_s": 0.4,
    }
    then = {
        "unrelated_secrets": 10_000,
        "create_s": 80.0,
        "cpu_s_during_create": {"operator": 0.3},
        "operator_writes_during_create": 0,
        "idle_cycle_api_writes": 3,
        "idle_cycle_kdf_calls": 0,
        "rss_mib": 395.0,
        "restart_rss": {"main_mib": 410.0},  # the fresh process is the larger one: that RSS counts
        "restart_all_synced_s": 180.0,
        "change_after_detection_s": 0.5,
    }
    assert [r["met"] for r in tenk.evaluate(phase1)] == [True, True, True, True]
    both = tenk.evaluate({**phase1, "then": then})
    assert [r["met"] for r in both] == [True, True, True, True, False, False, False, True]
    assert both[4]["case"] == "N=10,000 + 10,000 unrelated Secrets"
    assert both[4]["target"].startswith("fresh operator") and both[5]["value"] == 410.0
    assert [r["met"] for r in tenk.evaluate({"n": 10_000, "ready_s": None})] == [None, None, None, None]
    result = {**_result([{**phase1, "then": then}]), "targets": both}
    table = tenk.markdown(result)
    assert "| N=10,000 + 10,000 unrelated Secrets | fresh operator: all synced < 120 s | 180.0 | **no** |" in table
    assert "the operator used 0.3 core-s meanwhile and wrote 0 times" in table
    assert "Fresh operators among the same objects" not in table  # one fresh operator: no comparison to show

    variants = [
        {"variant": "base", "restart_all_synced_s": 200.0, "restart_rss": {"main_mib": 430.0, "main_peak_mib": 431.0}},
        {"variant": "this, again", "restart_all_synced_s": 181.0, "restart_cpu_s": {"operator": 90.5}},
    ]
    compared = tenk.markdown({**_result([{**phase1, "then": {**then, "restart_variants": variants}}]), "targets": both})
    rows = [line for line in compared.splitlines() if line.startswith(("| this |", "| base |", "| this, again |"))]
    assert rows == [
        "| this | — | 180.0 | — / — | 410.0 / — |",
        "| base | — | 200.0 | — / — | 430.0 / 431.0 |",
        "| this, again | — | 181.0 | 90.5 / — | — / — |",
    ]


def _audit_line(verb: str, namespace: str | None, resource: str = "secrets", group: str = "") -> str:
    ref: dict[str, str] = {"resource": resource, "apiGroup": group}
    if namespace:
        ref["namespace"] = namespace
    return json.dumps({"stage": "ResponseComplete", "verb": verb, "objectRef": ref}) + "\n"


def test_audit_counts_follow_a_rotated_log(tmp_path: Path) -> None:
    log = tmp_path / "kube-apiserver-audit.log"
    log.write_text(_audit_line("update", "a"))  # before the mark: not counted
    env = {"KUBE_AUDIT_LOG": str(log)}
    mark = audit_mark(env)
    with log.open("a") as out:
        out.write(_audit_line("patch", "a") + _audit_line("get", "a") + _audit_line("update", "other"))
    os.rename(log, tmp_path / "kube-apiserver-audit-2026-12-03T09-00-00.000.log")  # what the apiserver does
    log.write_text(
        _audit_line("update", None, "clustersecretstores", "external-secrets.io")
        + _audit_line("update", None, "namespaces")
        + _audit_line("create", "b")
    )
    assert audit_writes(env, mark, {"a", "b"}) == {"patch secrets": 1, "create secrets": 1}
    groups = frozenset({"external-secrets.io"})
    assert audit_requests(env, mark, {"a"}, groups) == {
        "patch secrets": 1,
        "get secrets": 1,
        "update clustersecretstores": 1,
    }
    os.remove(tmp_path / "kube-apiserver-audit-2026-12-03T09-00-00.000.log")
    with pytest.raises(RuntimeError, match="rotated"):
        audit_writes(env, mark, {"a"})


def test_moto_requests_counts_access_lines_after_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "moto.log"
    log.write_bytes(b'127.0.0.1 - - [x] "GET /b/k HTTP/1.1" 200 -\n')
    offset = log.stat().st_size
    with log.open("ab") as out:
        out.write(
            b'127.0.0.1 - - [x] "POST / HTTP/1.1" 200 -\nsome other line\n'
            b'127.0.0.1 - - [x] "\x1b[36mGET /b/k HTTP/1.1\x1b[0m" 304 -\n'  # werkzeug colours a 304
            b'127.0.0.1 - - [x] "GET /moto-api/data.json HTTP/1.1" 200 -\n'  # the bed's health probe
        )
    assert moto_requests(log, offset) == 2
    assert moto_requests(tmp_path / "missing.log", 0) == -1


def test_ready_reason_reads_the_ready_condition() -> None:
    ready = {
        "status": {
            "conditions": [
                {"type": "Other", "status": "False"},
                {"type": "Ready", "status": "True", "reason": "SecretSynced"},
            ]
        }
    }
    assert ready_reason(ready) == (True, "SecretSynced")
    assert ready_reason({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}) == (False, "Unknown")
    assert ready_reason({}) == (False, "Pending") and ready_reason({"status": {"conditions": ["junk"]}}) == (
        False,
        "Pending",
    )


def test_load_sampler_summary_shape() -> None:
    with LoadSampler(every=0.01) as sampler:
        pass
    summary = sampler.summary()
    assert summary["every_s"] == 0.01 and len(summary["samples"]) >= 1
    assert set(summary["loadavg_1m"]) == {"median", "min", "max"}
    assert len(summary["samples"][0]) == 4


def test_a_scale_case_can_spread_n_vaultbundles_over_fewer_bundles() -> None:
    from bench.scale import Case, ScaleCase
    from kubernetes import client as k8s

    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    case = Case(env, k8s.ApiClient(), ScaleCase(7, "shared", bundles=3), 10.0)
    assert [name for _, name, _, _ in case.items] == [f"b{j:05d}" for j in range(7)]  # one object each
    assert [config.prefix for _, _, config, _ in case.items] == [f"b{j % 3:05d}/" for j in range(7)]
    plain = Case(env, k8s.ApiClient(), ScaleCase(3, "shared"), 10.0)
    assert [config.prefix for _, _, config, _ in plain.items] == ["b00000/", "b00001/", "b00002/"]
