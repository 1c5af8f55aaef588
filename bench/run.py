"""`python -m bench.run [--smoke]`: KDF throughput, event-loop lag, scale on the test bed, 1 vs 2 shards.

Writes bench/results/latest.json + latest.png (full sizes) or smoke.json + smoke.png (N=50, same code
paths), and a Markdown table beside them. Fails loudly when matplotlib is missing or the test bed is down.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import bundle_size, kdf, scale
from .plot import plot, require_matplotlib
from .scale import ScaleCase, TestBedDown
from .stats import spread

RESULTS = Path(__file__).resolve().parent / "results"
LOAD_NOTE = (
    "2-core machine shared with other engineers' builds and tests while this ran: absolute numbers are noisy "
    "(see loadavg at start and end); ratios measured in the same run are the meaningful part."
)


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(load_note: str) -> dict[str, Any]:
    cpu_model = ""
    try:
        cpu_model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
        mem_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kib = 0
    import cryptography  # noqa: PLC0415 - only for its version
    from cryptography.hazmat.backends.openssl.backend import backend  # noqa: PLC0415

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=RESULTS.parent)
        except OSError:
            return ""
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", "operator"))
    return {
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)),
        "mem_total_mib": mem_kib // 1024,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssl": backend.openssl_version_text(),
        "git_commit": commit,
        "operator_code_modified": dirty,  # uncommitted changes under operator/ when the run started
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_start": _loadavg(),
        "load_note": load_note,
    }


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target, the measured value and whether it is met (None: not measured in this run)."""
    cores = result["machine"]["cpus"] or 1
    single = result["kdf"]["single_derivation_s"]
    rows: list[dict[str, Any]] = []
    lag = result["loop_lag_ms"]["p99"]
    rows.append({"target": "loop lag p99 < 50 ms (100 distinct bundles)", "value": f"{lag} ms", "met": lag < 50})
    runs = result["scale"]
    shared_1000 = next((r for r in runs if r["n"] == 1000 and r["mode"] == "shared" and r["shards"] == 1), None)
    rows.append(
        {
            "target": "1,000 bundles, shared passphrase, Ready < 60 s",
            "value": "not run" if shared_1000 is None else _seconds(shared_1000.get("ready_s"), "not all Ready"),
            "met": None if shared_1000 is None else (shared_1000.get("ready_s") or 1e9) < 60,
        }
    )
    for r in runs:
        label = f"N={r['n']} {r['mode']} {r['shards']} shard(s)"
        if r["mode"] == "distinct" and r["shards"] == 1:
            bound = 1.25 * r["n"] * single / cores
            ready = r.get("ready_s")
            rows.append(
                {
                    "target": f"{label}: Ready ≤ 1.25 × N × t_derive ÷ cores = {bound:.1f} s",
                    "value": _seconds(ready, "not all Ready")
                    + (
                        f" (N ÷ this run's pool rate with {cores} workers = {r['n'] / pool_rate:.1f} s"
                        if (pool_rate := result["kdf"]["pool_per_s"].get(str(cores)))
                        else " ("
                    )
                    + f"{cpu_note(r)})",
                    "met": ready is not None and ready <= bound,
                }
            )
        if "idle_cycle_api_writes" in r:
            writes = r.get("idle_cycle_api_writes_max_over_runs", r["idle_cycle_api_writes"])
            kdf_calls = r.get("idle_cycle_kdf_calls_max_over_runs", r["idle_cycle_kdf_calls"])
            runs = f" (worst of {r['repeats']} runs)" if r.get("repeats", 1) > 1 else ""
            rows.append(
                {
                    "target": f"{label}: idle cycle 0 API writes, 0 KDF",
                    "value": f"{writes} writes, {kdf_calls} KDF{runs}",
                    "met": writes == 0 and kdf_calls == 0,
                }
            )
        if "change_after_detection_s" in r:
            value = r["change_after_detection_s"]
            rows.append(
                {
                    "target": f"{label}: change propagates < 5 s after detection",
                    "value": _seconds(value, "not within 60 s"),
                    "met": value is not None and value < 5,
                }
            )
        if r["n"] == 1000 and "rss" in r:  # per operator (the largest one when sharded), with any child process
            total = max(p["total_mib"] for p in r["rss"])
            children = max(p["children"] for p in r["rss"])
            per = " per operator" if r["shards"] > 1 else ""
            rows.append(
                {
                    "target": f"{label}: RSS{per} < 250 MiB (process and its {children} child processes)",
                    "value": f"{total} MiB",
                    "met": total < 250,
                }
            )
    return rows


SPREAD_FIELDS = ("ready_s", "idle_cycle_s", "change_after_detection_s", "rss_with_children_mib")


def representative(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One entry per scale case: the run with the median time-to-Ready, with every run's key figures as
    median/min/max (`spread`) and the worst idle-cycle counts over all runs (the zero targets hold for each)."""
    done = sorted((r for r in runs if r.get("ready_s") is not None), key=lambda r: r["ready_s"])
    chosen = done[(len(done) - 1) // 2] if done else runs[0]
    entry = dict(chosen)
    entry["repeats"] = len(runs)
    entry["failed_runs"] = len(runs) - len(done)
    entry["spread"] = {
        field: spread(values, 2)
        for field in SPREAD_FIELDS
        if (values := [r[field] for r in runs if r.get(field) is not None])
    }
    for field in ("idle_cycle_api_writes", "idle_cycle_kdf_calls"):
        counts = [r[field] for r in runs if field in r]
        if counts:
            entry[f"{field}_max_over_runs"] = max(counts)
    return entry


def cpu_note(r: dict[str, Any]) -> str:
    """Where the CPU went until all were Ready: operator, test-bed servers, the bench itself."""
    cpu = r.get("cpu_s_during_ready")
    if not cpu:
        return ""
    bed = round(cpu["total"] - cpu["operator"] - cpu["bench"], 1)
    return (
        f"; CPU used until Ready: {cpu['total']} of {r['cpu_capacity_s']} core-s available "
        f"(operator {cpu['operator']}, test-bed servers {bed}, bench client {cpu['bench']})"
    )


def _seconds(value: float | None, missing: str) -> str:
    return f"{missing} (timed out)" if value is None else f"{value} s"


def _per_bundle_ms(r: dict[str, Any], field: str, count: int | None) -> str:
    cpu = r.get(field)
    return "—" if not cpu or not count else f"{cpu['operator'] * 1000 / count:.1f}"


def _ranged(r: dict[str, Any], field: str) -> str:
    """median [min–max] over the case's runs, or the single value."""
    s = (r.get("spread") or {}).get(field)
    if not s or len(s["samples"]) < 2:
        return _fmt(r.get(field))
    return f"{s['median']} [{s['min']}–{s['max']}]"


def _fmt(value: Any) -> str:
    return "—" if value is None else str(value)


def markdown(result: dict[str, Any]) -> str:
    m, k, lag = result["machine"], result["kdf"], result["loop_lag_ms"]
    d = k["detail"]
    lines = [
        f"Machine: {m['cpu_model']}, {m['cpus']} cores, {m['mem_total_mib']} MiB, Python {m['python']}, "
        f"cryptography {m['cryptography']} ({m['openssl']}); loadavg {m['loadavg_start']} → {m.get('loadavg_end')}. "
        f"{m['load_note']}",
        "",
        f"| KDF (PBKDF2-SHA256, {k['iterations']:,} it.) | derivations/s, median [min–max] of {k['repeats']} | × raw |",
        "|---|---|---|",
        f"| raw `cryptography`, 1 core | {k['raw_limit_per_s']} [{d['raw']['min']}–{d['raw']['max']}] | 1.00 |",
        f"| CryptoPool inline (workers=0) | {k['inline_per_s']} [{d['inline']['min']}–{d['inline']['max']}] "
        f"| {k['ratio_to_raw']['inline']} |",
    ]
    for workers, rate in k["pool_per_s"].items():
        spread = d["pool"][workers]
        lines.append(
            f"| CryptoPool, {workers} worker(s) | {rate} [{spread['min']}–{spread['max']}] "
            f"| {k['ratio_to_raw'][f'pool_{workers}']} |"
        )
    lines += [
        f"| cache hit (`aderive`) | {k['cached_per_s']} [{d['cached']['min']}–{d['cached']['max']}] "
        f"| {k['ratio_to_raw']['cached']} |",
        "",
        f"Loop lag while {lag['bundles']} distinct-passphrase bundles open at once ({lag['workers']} workers): "
        f"p50 {lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms (idle baseline p99 "
        f"{lag['baseline_idle']['p99']} ms); {lag['elapsed_s']} s for all.",
        "",
        "| N | passphrase | shards | Ready (s) | idle cycle (s) | idle API writes | idle KDF | idle S3 req (syncs) "
        "| change: refresh path / after detection (s) | RSS (MiB) | operator CPU/bundle: Ready / idle (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["scale"]:
        lines.append(
            f"| {r['n']} | {r['mode']} | {r['shards']} | {_ranged(r, 'ready_s')} | {_ranged(r, 'idle_cycle_s')} "
            f"| {_fmt(r.get('idle_cycle_api_writes'))} | {_fmt(r.get('idle_cycle_kdf_calls'))} "
            f"| {_fmt(r.get('idle_cycle_s3_requests'))} ({_fmt(r.get('idle_cycle_syncs'))}) "
            f"| {_fmt(r.get('change_propagation_s'))} / {_ranged(r, 'change_after_detection_s')} "
            f"| {_fmt(r.get('rss_with_children_mib'))} "
            f"| {_per_bundle_ms(r, 'cpu_s_during_ready', r['n'])} "
            f"/ {_per_bundle_ms(r, 'cpu_s_during_idle', r.get('idle_cycle_syncs'))} |"
        )
    shards = result.get("shards")
    if shards and shards.get("1") is not None and shards.get("2") is not None:
        lines += [
            "",
            f"Horizontal: N={shards['n']} shared passphrase, Ready in {_fmt(shards['1'])} s with 1 shard, "
            f"{_fmt(shards['2'])} s with 2 shards (two operator processes, same run).",
        ]
    lines += ["", "— = not reached before the bench's cap (see the JSON: idle_window_s, timeouts)."]
    if result.get("bundle_size"):
        lines += [
            "",
            "| bundle: keys, file bytes | envelope bytes | decrypt / parse / digest (ms) | event loop blocked (ms) "
            "| Secret bytes (≤ 1 MiB?) |",
            "|---|---|---|---|---|",
        ]
        for b in result["bundle_size"]:
            fits = "yes" if b["fits_one_kubernetes_secret"] else "**no**"
            lines.append(
                f"| {b['keys']:,}, {b['file_bytes']:,} | {b['envelope_bytes']:,} "
                f"| {b['decrypt_ms']} / {b['parse_ms']} / {b['digest_ms']} | {b['loop_stall_ms']} "
                f"| {b['secret_bytes']:,} ({fits}) |"
            )
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for row in result["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[row["met"]]
        lines.append(f"| {row['target']} | {row['value']} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="N=50 and fewer repeats (a few minutes)")
    parser.add_argument(
        "--testbed-env",
        type=Path,
        default=Path(os.environ.get("VAULTBUNDLE_TESTBED_ENV") or scale.REPO / ".testbed" / "env"),
        help="the test bed's env file (default: $VAULTBUNDLE_TESTBED_ENV or .testbed/env)",
    )
    parser.add_argument("--load-note", default=LOAD_NOTE, help="what else ran on the machine (goes into the JSON)")
    parser.add_argument("--skip-scale", action="store_true", help="KDF and loop lag only (no test bed)")
    parser.add_argument(
        "--cases",
        type=_parse_case,
        nargs="+",
        help="scale cases instead of the default set, as N:shared|distinct:SHARDS (e.g. 1000:shared:1)",
    )
    parser.add_argument("--name", help="results file name (default: smoke or latest)")
    parser.add_argument(
        "--scale-repeats", type=int, help="runs of each scale case; the median run is reported (default 3; smoke 1)"
    )
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    require_matplotlib()
    env: dict[str, str] = {}
    api = None
    if not args.skip_scale:
        try:
            env, api = scale.connect(args.testbed_env)
        except TestBedDown as exc:
            print(f"bench: test bed is down: {exc}", file=sys.stderr)
            return 2

    name = args.name or ("smoke" if args.smoke else "latest")
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix=f"vaultbundle-bench-{name}-"))
    result: dict[str, Any] = {"machine": machine_info(args.load_note), "mode": name, "logs_dir": str(logs)}
    sizes = (
        kdf.KdfSizes(repeats=3, per_repeat=3, cached_calls=20_000, pool_workers=kdf.default_pool_workers())
        if args.smoke
        else kdf.KdfSizes(repeats=5, per_repeat=4, cached_calls=50_000, pool_workers=kdf.default_pool_workers())
    )
    say(f"KDF throughput ({sizes.iterations:,} iterations, {sizes.repeats} repeats)")
    result["kdf"] = kdf.measure_kdf(sizes)
    say(f"KDF: {json.dumps({k: v for k, v in result['kdf'].items() if k != 'detail'})}")
    say(f"loop lag: {sizes.lag_bundles} distinct bundles through CryptoPool.aopen_envelope")
    result["loop_lag_ms"] = kdf.measure_loop_lag(sizes)
    say(f"loop lag: {json.dumps(result['loop_lag_ms'])}")
    say("bundle size: decrypt, parse and digest cost per changed bundle")
    result["bundle_size"] = bundle_size.measure_bundle_sizes(repeats=3 if args.smoke else 5)

    result["scale"] = []
    if api is not None:
        scale.install_crds(env)
        bed = scale.bed_pids(args.testbed_env)
        refresh = 5.0 if args.smoke else 10.0
        top = 50 if args.smoke else 1000
        cases = (
            [ScaleCase(50, "shared"), ScaleCase(50, "distinct"), ScaleCase(50, "shared", shards=2)]
            if args.smoke
            else [
                ScaleCase(100, "shared"),
                ScaleCase(100, "distinct"),
                ScaleCase(500, "shared"),
                ScaleCase(1000, "shared"),
                ScaleCase(1000, "shared", shards=2),
            ]
        )
        cases = args.cases or cases
        top = max(c.n for c in cases)
        repeats = args.scale_repeats or (1 if args.smoke else 3)
        for case in cases:
            timeout = 600.0 if case.mode == "shared" else max(600.0, 4 * case.n * result["kdf"]["single_derivation_s"])
            runs = []
            for attempt in range(1, repeats + 1):
                say(f"scale: N={case.n} {case.mode} passphrase, {case.shards} shard(s), run {attempt}/{repeats}")
                runs.append(
                    scale.run_case(
                        env, api, case, refresh_s=refresh, logs=logs, ready_timeout=timeout, say=say, bed=bed
                    )
                )
            result["scale"].append(representative(runs))
            write_json(result, name)  # partial results survive a crash of a later case
        ready = {str(r["shards"]): r.get("ready_s") for r in result["scale"] if r["n"] == top and r["mode"] == "shared"}
        result["shards"] = {"n": top, "1": ready.get("1"), "2": ready.get("2")}

    result["targets"] = evaluate(result)
    finish(result, name, plot, markdown)
    say(f"wrote {RESULTS / (name + '.json')}, {name}.png, {name}.md; operator logs in {logs}")
    return 0


def _parse_case(text: str) -> ScaleCase:
    parts = text.split(":")
    if len(parts) == 2:
        parts.append("1")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("a case is N:shared|distinct[:SHARDS], e.g. 1000:shared:1")
    n, mode, shards = parts
    if mode not in ("shared", "distinct") or not n.isdigit() or not shards.isdigit():
        raise argparse.ArgumentTypeError("a case is N:shared|distinct[:SHARDS], e.g. 1000:shared:1")
    return ScaleCase(int(n), "shared" if mode == "shared" else "distinct", int(shards))


def write_json(result: dict[str, Any], name: str) -> None:
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")


def finish(
    result: dict[str, Any],
    name: str,
    plot_to: Callable[[dict[str, Any], Path], None],
    table_of: Callable[[dict[str, Any]], str],
) -> None:
    """The end of every bench entry point: load and time at the end, then bench/results/NAME.json, .png and
    .md (also printed)."""
    result["machine"]["loadavg_end"] = _loadavg()
    result["machine"]["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json(result, name)
    plot_to(result, RESULTS / f"{name}.png")
    table = table_of(result)
    (RESULTS / f"{name}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    sys.exit(main())
