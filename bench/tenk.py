"""`python -m bench.tenk` (`make bench-10k`): 10,000 VaultBundles (one shared passphrase) on the test bed, then
the same with 10,000 unrelated Secrets in the cluster (the operator must not pay for Secrets it does not
manage). Each case is one scale.run_case (fresh operator, namespaces and bucket): time to all Ready (watched),
RSS, one idle refresh cycle (API writes from the audit log, KDF and S3 requests from /metrics), change
propagation. The load average is sampled through the run: the machine is shared.

Targets: Ready < 120 s, RSS < 400 MiB, idle 0 writes / 0 KDF, change < 5 s after detection.
Writes bench/results/peer-10k.{json,md,png}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import scale
from .plot import require_matplotlib
from .run import RESULTS, machine_info
from .scale import ScaleCase, TestBedDown
from .stats import LoadSampler

TARGETS = {"ready_s": 120.0, "rss_mib": 400.0, "change_after_detection_s": 5.0}


def evaluate(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The four targets of one case: (target, measured, met); met is None when the run did not get there."""
    label = f"N={run['n']:,}" + (
        f" + {run['unrelated_secrets']:,} unrelated Secrets" if run.get("unrelated_secrets") else ""
    )

    def row(target: str, value: Any, met: bool | None) -> dict[str, Any]:
        return {"case": label, "target": target, "value": value, "met": met}

    ready, rss, change = run.get("ready_s"), run.get("rss_mib"), run.get("change_after_detection_s")
    writes, kdf = run.get("idle_cycle_api_writes"), run.get("idle_cycle_kdf_calls")
    return [
        row("all Ready < 120 s", ready, None if ready is None else ready < TARGETS["ready_s"]),
        row("RSS < 400 MiB", rss, None if rss is None else rss < TARGETS["rss_mib"]),
        row(
            "idle cycle: 0 API writes, 0 KDF",
            None if writes is None else f"{writes} writes, {kdf} KDF",
            None if writes is None else writes == 0 and kdf == 0,
        ),
        row(
            "change < 5 s after detection",
            change,
            None if change is None else change < TARGETS["change_after_detection_s"],
        ),
    ]


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    load = (result.get("load") or {}).get("loadavg_1m") or {}
    lines = [
        f"Machine: {m['cpu_model']}, {m['cpus']} cores, {m['mem_total_mib']} MiB; commit {m['git_commit']}; "
        f"refreshInterval {result['refresh_interval_s']:g} s; 1-min load average during the run: median "
        f"{load.get('median', '—')} [{load.get('min', '—')}–{load.get('max', '—')}]. {m['load_note']}",
        "",
        "| case | Ready (s) | RSS (MiB) | CPU until Ready: operator / apiserver / etcd / moto (core-s) "
        "| idle cycle (s, syncs) | idle writes / KDF / S3 req | change: refresh path / after detection (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        cpu = run.get("cpu_s_during_ready") or {}
        extra = f" + {run['unrelated_secrets']:,} unrelated Secrets" if run.get("unrelated_secrets") else ""
        lines.append(
            f"| {run['n']:,}{extra} | {run.get('ready_s', '—')} | {run.get('rss_mib', '—')} "
            f"| {cpu.get('operator', '—')} / {cpu.get('kube-apiserver', '—')} / {cpu.get('etcd', '—')} "
            f"/ {cpu.get('moto', '—')} "
            f"| {run.get('idle_cycle_s', '—')} ({run.get('idle_cycle_syncs', '—')}) "
            f"| {run.get('idle_cycle_api_writes', '—')} / {run.get('idle_cycle_kdf_calls', '—')} "
            f"/ {run.get('idle_cycle_s3_requests', '—')} "
            f"| {run.get('change_propagation_s', '—')} / {run.get('change_after_detection_s', '—')} |"
        )
    lines += ["", "| case | target | measured | met |", "|---|---|---|---|"]
    for row in result.get("targets") or []:
        met = {True: "yes", False: "**no**", None: "not reached"}[row["met"]]
        lines.append(f"| {row['case']} | {row['target']} | {row['value']} | {met} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (curve_ax, load_ax) = plt.subplots(1, 2, figsize=(13, 4.8))
    for run in result["runs"]:
        points = run.get("ready_curve") or []
        label = f"N={run['n']:,}" + (
            f" + {run['unrelated_secrets']:,} unrelated" if run.get("unrelated_secrets") else ""
        )
        curve_ax.plot([p[0] for p in points], [p[1] for p in points], label=label)
    curve_ax.axvline(TARGETS["ready_s"], color="red", linestyle="--", label="target 120 s")
    curve_ax.set_xlabel("seconds since the first VaultBundle was created")
    curve_ax.set_ylabel("VaultBundles Ready")
    curve_ax.set_title("time to Ready")
    curve_ax.legend(fontsize=8)
    samples = (result.get("load") or {}).get("samples") or []
    load_ax.plot([s[0] for s in samples], [s[1] for s in samples], color="#777")
    load_ax.axhline(result["machine"]["cpus"] or 1, color="red", linestyle=":", label="cores")
    load_ax.set_xlabel("seconds since the bench started")
    load_ax.set_ylabel("1-min load average")
    load_ax.set_title("machine load during the run (shared machine)")
    load_ax.legend(fontsize=8)
    figure.suptitle(f"10,000 VaultBundles on the test bed — {result['machine']['cpus']} cores", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tenk", description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--unrelated", type=int, default=10_000, help="unrelated Secrets in the second case (0: skip)")
    parser.add_argument("--refresh", type=float, default=60.0, help="refreshInterval, s")
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument("--only-unrelated", action="store_true", help="run only the case with unrelated Secrets")
    parser.add_argument("--operator-arg", action="append", default=[], help="extra `vaultbundle run` flag")
    parser.add_argument(
        "--testbed-env",
        type=Path,
        default=Path(os.environ.get("VAULTBUNDLE_TESTBED_ENV") or scale.REPO / ".testbed" / "env"),
    )
    parser.add_argument("--name", default="peer-10k")
    parser.add_argument("--load-note", default="2-core machine shared with other engineers; see the load samples")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(f"[10k {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    require_matplotlib()
    try:
        env, api = scale.connect(args.testbed_env)
    except TestBedDown as exc:
        print(f"bench: test bed is down: {exc}", file=sys.stderr)
        return 2
    scale.install_crds(env)
    bed = scale.bed_pids(args.testbed_env)
    logs = Path(tempfile.mkdtemp(prefix=f"vaultbundle-bench-{args.name}-"))
    extra = tuple(args.operator_arg)
    cases = [] if args.only_unrelated else [ScaleCase(args.n, "shared", operator_args=extra)]
    if args.unrelated:
        cases.append(ScaleCase(args.n, "shared", unrelated_secrets=args.unrelated, operator_args=extra))
    result: dict[str, Any] = {
        "machine": machine_info(args.load_note),
        "mode": args.name,
        "refresh_interval_s": args.refresh,
        "logs_dir": str(logs),
        "runs": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with LoadSampler() as load:
        for case in cases:
            say(f"N={case.n} shared passphrase, {case.unrelated_secrets} unrelated Secrets")
            run = scale.run_case(
                env, api, case, refresh_s=args.refresh, logs=logs, ready_timeout=args.ready_timeout, say=say, bed=bed
            )
            result["runs"].append(run)
            result["load"] = load.summary()
            _write(result, args.name)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["machine"]["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result["load"] = load.summary()
    result["targets"] = [row for run in result["runs"] for row in evaluate(run)]
    _write(result, args.name)
    plot(result, RESULTS / f"{args.name}.png")
    table = markdown(result)
    (RESULTS / f"{args.name}.md").write_text(table)
    print(table)
    say(f"wrote {RESULTS / (args.name + '.json')}, .png, .md; operator logs in {logs}")
    return 0


def _write(result: dict[str, Any], name: str) -> None:
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
