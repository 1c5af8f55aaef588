"""`python -m bench.tenk` (`make bench-10k`): 10,000 VaultBundles (one shared passphrase) on the test bed, then
the same with 10,000 unrelated Secrets in the cluster (the operator must not pay for Secrets it does not
manage).

Phase 1 is one scale.run_case (fresh operator, namespaces and bucket): time to all Ready (watched), RSS, one
idle refresh cycle (API writes from the audit log, KDF and S3 requests from /metrics), change propagation.
Phase 2 (`with_unrelated`, same objects): 10,000 unrelated Secrets are created while the operator runs (its
CPU and writes meanwhile), one more idle cycle and RSS with them present; then a fresh operator process
starts among them (time until it has synced every VaultBundle once, its RSS) and one change after detection.
The load average is sampled through the run: the machine is shared.

Targets: Ready < 120 s, RSS < 400 MiB, idle 0 writes / 0 KDF, change < 5 s after detection.
Writes bench/results/peer-10k.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaultbundle.pool import CryptoPool

from . import scale
from .operator_proc import OperatorProcess
from .peer_report import machine_line
from .plot import require_matplotlib
from .run import RESULTS, finish, machine_info, write_json
from .scale import ScaleCase
from .stats import LoadSampler

TARGETS = {"ready_s": 120.0, "rss_mib": 400.0, "change_after_detection_s": 5.0}


def _phases(run: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, measurements) of phase 1 and, when it ran, phase 2 (its Ready is the fresh operator's full sync)."""
    phases = [(f"N={run['n']:,}", run)]
    then = run.get("then")
    if then:
        phase2 = {
            **then,
            "ready_s": then.get("restart_all_synced_s"),
            "cpu_s_during_ready": then.get("restart_cpu_s"),
            "rss_mib": max(then.get("rss_mib") or 0, (then.get("restart_rss") or {}).get("main_mib") or 0) or None,
        }
        phases.append((f"N={run['n']:,} + {then['unrelated_secrets']:,} unrelated Secrets", phase2))
    return phases


def evaluate(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The four targets per phase: (case, target, measured, met); met is None when the run did not get there.
    In phase 2 "Ready" is a fresh operator's first full sync among the unrelated Secrets."""
    rows: list[dict[str, Any]] = []
    for label, m in _phases(run):
        ready, rss, change = m.get("ready_s"), m.get("rss_mib"), m.get("change_after_detection_s")
        writes, kdf = m.get("idle_cycle_api_writes"), m.get("idle_cycle_kdf_calls")
        ready_target = "all Ready < 120 s" if m is run else "fresh operator: all synced < 120 s"
        for target, value, met in (
            (ready_target, ready, None if ready is None else ready < TARGETS["ready_s"]),
            ("RSS < 400 MiB", rss, None if rss is None else rss < TARGETS["rss_mib"]),
            (
                "idle cycle: 0 API writes, 0 KDF",
                None if writes is None else f"{writes} writes, {kdf} KDF",
                None if writes is None else writes == 0 and kdf == 0,
            ),
            (
                "change < 5 s after detection",
                change,
                None if change is None else change < TARGETS["change_after_detection_s"],
            ),
        ):
            rows.append({"case": label, "target": target, "value": value, "met": met})
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        machine_line(result, f"refreshInterval {result['refresh_interval_s']:g} s"),
        "",
        "| case | Ready (s) | RSS (MiB) | CPU until Ready: operator / apiserver / etcd / moto (core-s) "
        "| idle cycle (s, syncs) | idle writes / KDF / S3 req | change: refresh path / after detection (s) |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(value: Any) -> str:
        return "—" if value is None else str(value)

    for run in result["runs"]:
        for label, p in _phases(run):
            cpu = p.get("cpu_s_during_ready") or {}
            lines.append(
                f"| {label} | {cell(p.get('ready_s'))} | {cell(p.get('rss_mib'))} "
                f"| {cell(cpu.get('operator'))} / {cell(cpu.get('kube-apiserver'))} / {cell(cpu.get('etcd'))} "
                f"/ {cell(cpu.get('moto'))} "
                f"| {cell(p.get('idle_cycle_s'))} ({cell(p.get('idle_cycle_syncs'))}) "
                f"| {cell(p.get('idle_cycle_api_writes'))} / {cell(p.get('idle_cycle_kdf_calls'))} "
                f"/ {cell(p.get('idle_cycle_s3_requests'))} "
                f"| {cell(p.get('change_propagation_s'))} / {cell(p.get('change_after_detection_s'))} |"
            )
        then = run.get("then")
        if then:
            create_cpu = then.get("cpu_s_during_create") or {}
            lines += [
                "",
                f"Creating the {then['unrelated_secrets']:,} unrelated Secrets took {then.get('create_s')} s; the "
                f"operator used {create_cpu.get('operator', '—')} core-s meanwhile and wrote "
                f'{then.get("operator_writes_during_create", "—")} times. Phase 2\'s "Ready" is a fresh operator '
                "process among them: from its start to every VaultBundle synced once.",
                "",
            ]
            restarts = (
                [{"variant": "this", **then}, *(then.get("restart_variants") or [])] if "restart_rss" in then else []
            )
            if len(restarts) > 1:
                lines += [
                    "Fresh operators among the same objects, one after another:",
                    "",
                    "| fresh operator | /readyz (s) | all synced (s) | CPU operator / apiserver (core-s) "
                    "| RSS / peak (MiB) |",
                    "|---|---|---|---|---|",
                ]
                for r in restarts:
                    cpu, rss = r.get("restart_cpu_s") or {}, r.get("restart_rss") or {}
                    lines.append(
                        f"| {r['variant']} | {cell(r.get('restart_ready_s'))} | {cell(r.get('restart_all_synced_s'))} "
                        f"| {cell(cpu.get('operator'))} / {cell(cpu.get('kube-apiserver'))} "
                        f"| {cell(rss.get('main_mib'))} / {cell(rss.get('main_peak_mib'))} |"
                    )
                lines.append("")
    lines += ["", "| case | target | measured | met |", "|---|---|---|---|"]
    for row in result.get("targets") or []:
        met = {True: "yes", False: "**no**", None: "not reached"}[row["met"]]
        lines.append(f"| {row['case']} | {row['target']} | {cell(row['value'])} | {met} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (curve_ax, load_ax) = plt.subplots(1, 2, figsize=(13, 4.8))
    for run in result["runs"]:
        points = run.get("ready_curve") or []
        label = f"N={run['n']:,}"
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


def fresh_operator(
    bench: scale.Case,
    operators: list[OperatorProcess],
    env: dict[str, str],
    log: Path,
    bed: dict[str, int],
    refresh_s: float,
    checkout: Path | None = None,
) -> dict[str, Any]:
    """Stop operators[0], start a fresh one (*checkout*'s operator code via PYTHONPATH, else this one's) and
    measure it until it has synced every VaultBundle once: /readyz, all synced, CPU, KDF calls, RSS."""
    n = bench.case.n
    operators[0].stop()
    cpu_before, started = scale.cpu_now([], bed), time.perf_counter()
    extra = {"PYTHONPATH": str(checkout / "operator")} if checkout else None
    operators[0] = OperatorProcess(env["KUBECONFIG"], log, extra_args=bench.case.operator_args, env=extra)
    out: dict[str, Any] = {"restart_ready_s": round(time.perf_counter() - started, 2)}  # process start to /readyz
    deadline = started + max(600.0, 8 * refresh_s)
    while time.perf_counter() < deadline and scale.totals(operators)["syncs"] < n:
        time.sleep(scale.scrape_every(n))
    done = scale.totals(operators)["syncs"] >= n
    out["restart_all_synced_s"] = round(time.perf_counter() - started, 2) if done else None
    out["restart_cpu_s"] = scale.cpu_used(cpu_before, scale.cpu_now(operators, bed))
    out["restart_kdf_calls"] = int(scale.totals(operators)["kdf"])
    out["restart_rss"] = operators[0].rss()
    return out


def with_unrelated(
    count: int,
    env: dict[str, str],
    refresh_s: float,
    logs: Path,
    bed: dict[str, int],
    say: Callable[[str], None],
    save: Callable[[dict[str, Any]], None],
    variants: tuple[tuple[str, Path | None], ...] = (),
) -> Callable[[scale.Case, list[OperatorProcess], CryptoPool, dict[str, Any]], dict[str, Any]]:
    """Phase 2 (see the module docstring), as a `run_case(then=...)` step; *save* keeps phase 1's figures
    before phase 2 starts (a long run may be stopped). *variants*: (label, checkout) whose fresh operators are
    measured the same way after this one's, among the same objects, then this one's once more."""

    def run(
        bench: scale.Case, operators: list[OperatorProcess], pool: CryptoPool, phase1: dict[str, Any]
    ) -> dict[str, Any]:
        save(phase1)
        n = bench.case.n
        out: dict[str, Any] = {"unrelated_secrets": count}
        bench.unrelated_namespace = f"vbb-{bench.run_id}-unrelated"  # deleted by the case's cleanup
        say(f"[{bench.run_id}] creating {count} unrelated Secrets while the operator runs")
        before, cpu_before, started = scale.totals(operators), scale.cpu_now(operators, bed), time.perf_counter()
        scale.create_unrelated_secrets(bench.core, bench.unrelated_namespace, {scale.RUN_LABEL: bench.run_id}, count)
        out["create_s"] = round(time.perf_counter() - started, 2)
        out["cpu_s_during_create"] = scale.cpu_used(cpu_before, scale.cpu_now(operators, bed))
        after = scale.totals(operators)
        out["operator_writes_during_create"] = int(after["writes"] - before["writes"])
        out.update(scale.idle_cycle(env, bench, operators, refresh_s=refresh_s, bed=bed, say=say))
        out["rss"] = operators[0].rss()
        out["rss_mib"] = out["rss"]["main_mib"]

        say(f"[{bench.run_id}] a fresh operator among {n} VaultBundles and {count} unrelated Secrets")
        out.update(fresh_operator(bench, operators, env, logs / f"operator-{bench.run_id}-restart.log", bed, refresh_s))
        bench.push(pool, n // 3, "v4")
        started = time.perf_counter()
        bench.force_sync(n // 3, f"bench-{time.time_ns()}")
        waited = bench.wait_value(n // 3, "v4", timeout=60.0, started=started)
        out["change_after_detection_s"] = None if waited is None else round(waited, 3)
        if variants:  # other checkouts' fresh operators among the same objects, then this one's again (noise)
            out["restart_variants"] = []
            for label, root in [*variants, ("this, again", None)]:
                say(f"[{bench.run_id}] a fresh operator of {label} among them")
                log = logs / f"operator-{bench.run_id}-restart-{len(out['restart_variants'])}.log"
                measured = fresh_operator(bench, operators, env, log, bed, refresh_s, root)
                out["restart_variants"].append({"variant": label, "checkout": str(root or ""), **measured})
        say(
            f"[{bench.run_id}] with unrelated Secrets: idle writes {out['idle_cycle_api_writes']}, KDF "
            f"{out['idle_cycle_kdf_calls']}, RSS {out['rss_mib']} MiB; fresh operator synced all in "
            f"{out['restart_all_synced_s']} s; change after detection {out['change_after_detection_s']} s"
        )
        return out

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tenk", description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--unrelated", type=int, default=10_000, help="unrelated Secrets in phase 2 (0: skip it)")
    parser.add_argument("--refresh", type=float, default=60.0, help="refreshInterval, s")
    parser.add_argument(
        "--bundles",
        type=int,
        help="distinct bundles in S3 (default N); VaultBundle j reads bundle j %% bundles. Pushing 10,000 bundles "
        "takes ~15 min on a loaded 2-core bed (3 S3 requests each); the operator's work is the same either way",
    )
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument("--operator-arg", action="append", default=[], help="extra `vaultbundle run` flag")
    parser.add_argument(
        "--testbed-env",
        type=Path,
        default=Path(os.environ.get("VAULTBUNDLE_TESTBED_ENV") or scale.REPO / ".testbed" / "env"),
    )
    parser.add_argument(
        "--restart-variant",
        action="append",
        default=[],
        metavar="LABEL=CHECKOUT",
        help="phase 2: also a fresh operator of another checkout (its operator/ first on PYTHONPATH) among the same "
        "objects, measured like this one's; then this one's again (repeatable)",
    )
    parser.add_argument("--name", default="peer-10k")
    parser.add_argument("--load-note", default="2-core machine shared with other engineers; see the load samples")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(f"[10k {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    require_matplotlib()
    env, api = scale.open_bed(args.testbed_env)
    bed = scale.bed_pids(args.testbed_env)
    logs = Path(tempfile.mkdtemp(prefix=f"vaultbundle-bench-{args.name}-"))
    case = ScaleCase(args.n, "shared", operator_args=tuple(args.operator_arg), bundles=args.bundles)
    result: dict[str, Any] = {
        "machine": machine_info(args.load_note),
        "mode": args.name,
        "refresh_interval_s": args.refresh,
        "distinct_bundles": args.bundles or args.n,
        "logs_dir": str(logs),
        "runs": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with LoadSampler() as load:
        say(f"N={case.n} shared passphrase, then {args.unrelated} unrelated Secrets")

        def save(phase1: dict[str, Any]) -> None:
            write_json({**result, "runs": [phase1], "load": load.summary()}, args.name)

        variants = tuple(
            (label, Path(root).resolve()) for label, _, root in (v.partition("=") for v in args.restart_variant)
        )
        then = (
            with_unrelated(args.unrelated, env, args.refresh, logs, bed, say, save, variants)
            if args.unrelated
            else None
        )
        run = scale.run_case(
            env,
            api,
            case,
            refresh_s=args.refresh,
            logs=logs,
            ready_timeout=args.ready_timeout,
            say=say,
            bed=bed,
            then=then,
            cleanup_timeout=60.0,  # 30,000+ objects: the namespace controller goes on deleting after we stop waiting
        )
        result["runs"].append(run)
    result["load"] = load.summary()
    result["targets"] = [row for run in result["runs"] for row in evaluate(run)]
    finish(result, args.name, plot, markdown)
    say(f"wrote {RESULTS / (args.name + '.json')}, .png, .md; operator logs in {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
