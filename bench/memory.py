"""Operator memory per VaultBundle at two N, before/after in one run (issue #18: RSS < 400 MiB at 10,000).

    python -m bench.memory [--n 1000 --n 4000] [--base /tmp/base-checkout] [--profile] [--testbed-env ...]

Per variant (a source root, `<checkout>/operator`, first on PYTHONPATH of a fresh `vaultbundle run` in this venv,
as bench/first_sync_cpu.py does) and per N: fresh namespaces, N VaultBundles (shared passphrase, one target
Secret each, `--bundles` distinct bundles in S3), a fresh operator; RSS when it is ready (empty), when all are
Ready, and after one full idle refresh cycle (N idle syncs: the steady state). The slope between the two N is
the memory each VaultBundle costs; the intercept is the process's fixed cost. Variants alternate per N.

`--profile`: the operator of this checkout also runs under tracemalloc (started by a sitecustomize put on its
PYTHONPATH, never by the product), and after the idle cycle SIGUSR1 makes it write what Python allocated,
grouped by file and by line, and the live objects per type (`gc`). tracemalloc itself costs memory and time:
profiled runs are extra runs, their RSS is not compared with the others.

Writes bench/results/<name>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from vaultbundle.pool import CryptoPool

from . import scale
from .first_sync_cpu import _git_head
from .operator_proc import OperatorProcess
from .plot import require_matplotlib
from .run import RESULTS, finish, machine_info
from .scale import Case, ScaleCase
from .stats import LoadSampler

# Run inside the operator only for --profile (PYTHONPATH); it never ships with the product.
SITECUSTOMIZE = """
import collections, gc, json, os, signal, sys, tracemalloc
tracemalloc.start(int(os.environ.get("VB_TRACEMALLOC_FRAMES", "1")))

def _group(snapshot, key, limit):
    stats = snapshot.statistics(key)
    return [
        {"where": str(s.traceback[0]) if key == "lineno" else s.traceback[0].filename, "kib": round(s.size / 1024, 1),
         "count": s.count}
        for s in stats[:limit]
    ]

def _dump(*_):
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    out = {
        "traced_mib": round(tracemalloc.get_traced_memory()[0] / 2**20, 1),
        "by_file": _group(snapshot, "filename", 40),
        "by_line": _group(snapshot, "lineno", 60),
        "gc_types": types.most_common(40),
        "gc_objects": sum(types.values()),
    }
    path = os.environ["VB_MEMORY_OUT"]
    with open(path + ".tmp", "w") as sink:
        json.dump(out, sink)
    os.replace(path + ".tmp", path)

signal.signal(signal.SIGUSR1, _dump)
"""


# --trim: SIGUSR2 makes glibc give back the free memory of its heaps (malloc_trim), to see how much of the RSS
# is memory the process no longer uses
TRIM_SITECUSTOMIZE = """
import ctypes, signal
_libc = ctypes.CDLL("libc.so.6")
signal.signal(signal.SIGUSR2, lambda *_: _libc.malloc_trim(0))
"""


def say(message: str) -> None:
    print(f"[memory {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_no_vaultbundles(api: Any, timeout: float = 900.0) -> None:
    """Until the namespace controller has deleted every VaultBundle of earlier runs: a fresh operator would
    otherwise keep those too and the per-VaultBundle figure would be wrong."""
    custom = k8s.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    while True:
        left = custom.list_cluster_custom_object(scale.GROUP, scale.VERSION, scale.PLURAL, limit=1)
        if not left["items"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("VaultBundles of an earlier run are still being deleted")
        time.sleep(2)


def run_once(
    env: dict[str, str],
    api: Any,
    variant: str,
    root: Path,
    case: ScaleCase,
    *,
    process_env: dict[str, str] | None = None,
    refresh_s: float,
    logs: Path,
    profile: Path | None = None,
    trim: Path | None = None,
) -> dict[str, Any]:
    bench = Case(env, api, case, refresh_s)
    out: dict[str, Any] = {"variant": variant, "n": case.n, "profiled": profile is not None}
    extra_env = {**(process_env or {}), "PYTHONPATH": str(root / "operator")}
    dump = None
    if trim is not None and profile is None:
        trim.mkdir(parents=True, exist_ok=True)
        (trim / "sitecustomize.py").write_text(TRIM_SITECUSTOMIZE)
        extra_env["PYTHONPATH"] += os.pathsep + str(trim)
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "sitecustomize.py").write_text(SITECUSTOMIZE)
        dump = profile / f"memory-{case.n}.json"
        dump.unlink(missing_ok=True)
        extra_env |= {"PYTHONPATH": extra_env["PYTHONPATH"] + os.pathsep + str(profile), "VB_MEMORY_OUT": str(dump)}
    operator: OperatorProcess | None = None
    with CryptoPool() as pool:
        try:
            wait_no_vaultbundles(api)
            bench.setup(pool)
            operator = OperatorProcess(
                env["KUBECONFIG"], logs / f"operator-{variant}-{case.n}-{bench.run_id}.log", env=extra_env
            )
            out["rss_empty_mib"] = operator.rss()["main_mib"]
            with bench.ready_watch() as watcher:
                started = time.perf_counter()
                bench.create_vaultbundles()
                ready_s, reasons, _ = watcher.wait(case.n, started, 900.0, 1.0)
            out["ready_s"] = None if ready_s is None else round(ready_s, 1)
            out["rss_ready_mib"] = operator.rss()["main_mib"]
            if ready_s is None:
                out["error"] = f"not all Ready: {dict(reasons)}"
                return out
            ops = [operator]
            settled = scale.wait_idle(ops, scale.totals(ops)["idle"], case.n, max(120.0, 8 * refresh_s))
            out["idle_cycle_s"] = None if settled is None else round(settled, 1)
            rss = operator.rss()
            out["rss_idle_mib"], out["rss_peak_mib"] = rss["main_mib"], rss["main_peak_mib"]
            if trim is not None and profile is None:
                os.kill(operator.pid, signal.SIGUSR2)
                time.sleep(3)
                out["rss_after_malloc_trim_mib"] = operator.rss()["main_mib"]
            if dump is not None:
                os.kill(operator.pid, signal.SIGUSR1)
                deadline = time.monotonic() + 300
                while not dump.exists() and time.monotonic() < deadline:
                    time.sleep(1)
                out["profile"] = json.loads(dump.read_text()) if dump.exists() else None
            say(f"{variant} N={case.n}: {json.dumps({k: v for k, v in out.items() if k != 'profile'})}")
            return out
        finally:
            if operator is not None:
                operator.stop()
            bench.cleanup(timeout=60.0)


def per_bundle(runs: list[dict[str, Any]], variant: str, field: str) -> dict[str, float] | None:
    """Slope (KiB per VaultBundle) and intercept (MiB) of *field* over N, from the unprofiled runs."""
    points = sorted((r["n"], r[field]) for r in runs if r["variant"] == variant and not r["profiled"] and field in r)
    if len({n for n, _ in points}) < 2:
        return None
    (n0, m0), (n1, m1) = points[0], points[-1]
    slope = (m1 - m0) / (n1 - n0)
    return {"kib_per_bundle": round(slope * 1024, 1), "fixed_mib": round(m0 - slope * n0, 1)}


def markdown(result: dict[str, Any]) -> str:
    load = result["machine"]
    lines = [
        f"load average at start {load.get('loadavg_start')}, at end {load.get('loadavg_end')}; "
        f"refreshInterval {result['refresh_interval_s']:g} s; {result['distinct_bundles']} distinct bundles in S3",
        "",
        "| variant | N | Ready (s) | RSS empty / all Ready / after an idle cycle (MiB) | then after malloc_trim |",
        "|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        if r["profiled"]:
            continue
        lines.append(
            f"| {r['variant']} | {r['n']:,} | {r.get('ready_s')} "
            f"| {r.get('rss_empty_mib')} / {r.get('rss_ready_mib')} / {r.get('rss_idle_mib')} "
            f"| {r.get('rss_after_malloc_trim_mib', '—')} |"
        )
    lines += [
        "",
        "| variant | KiB per VaultBundle (idle) | fixed MiB | projected at 10,000 (MiB) |",
        "|---|---|---|---|",
    ]
    for variant, fit in (result.get("fit") or {}).items():
        if fit:
            at_10k = round(fit["fixed_mib"] + fit["kib_per_bundle"] * 10_000 / 1024)
            lines.append(f"| {variant} | {fit['kib_per_bundle']} | {fit['fixed_mib']} | {at_10k} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, ax = plt.subplots(figsize=(7, 4.5))
    for variant in result["roots"]:
        points = sorted(
            (r["n"], r["rss_idle_mib"])
            for r in result["runs"]
            if r["variant"] == variant and not r["profiled"] and "rss_idle_mib" in r
        )
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=variant)
    ax.axhline(400, color="red", linestyle="--", label="target at 10,000: 400 MiB")
    ax.set_xlabel("VaultBundles")
    ax.set_ylabel("operator RSS after an idle cycle (MiB)")
    ax.set_title("operator memory by number of VaultBundles")
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", help="N (repeatable; default 1000 and 4000)")
    parser.add_argument("--base", type=Path, help="another checkout to compare against (its operator/ dir)")
    parser.add_argument("--bundles", type=int, default=100, help="distinct bundles in S3 (VaultBundle j reads j %% B)")
    parser.add_argument("--refresh", type=float, default=30.0, help="refreshInterval, s")
    parser.add_argument("--profile", action="store_true", help="also one tracemalloc run of this checkout per N")
    parser.add_argument("--this", type=Path, help="the checkout measured as 'this' (default: this one)")
    parser.add_argument("--malloc-arena-max", type=int, help="also run this checkout with MALLOC_ARENA_MAX=K")
    parser.add_argument("--trim", action="store_true", help="also RSS after malloc_trim(0) (see TRIM_SITECUSTOMIZE)")
    parser.add_argument("--skip-plain", action="store_true", help="only the profiled runs")
    parser.add_argument("--name", default="memory")
    parser.add_argument(
        "--testbed-env",
        type=Path,
        default=Path(os.environ.get("VAULTBUNDLE_TESTBED_ENV") or scale.REPO / ".testbed" / "env"),
    )
    parser.add_argument("--load-note", default="2-core machine shared with other engineers; see the load samples")
    args = parser.parse_args(argv)
    require_matplotlib()
    env, api = scale.open_bed(args.testbed_env)
    logs = Path(tempfile.mkdtemp(prefix="vaultbundle-bench-memory-"))
    this = args.this or scale.REPO
    roots = {"base": args.base, "this": this} if args.base else {"this": this}
    envs: dict[str, dict[str, str]] = {}
    if args.malloc_arena_max:  # the same code with glibc's arena cap (the crypto and I/O thread pools)
        variant = f"this, MALLOC_ARENA_MAX={args.malloc_arena_max}"
        roots[variant], envs[variant] = this, {"MALLOC_ARENA_MAX": str(args.malloc_arena_max)}
    result: dict[str, Any] = {
        "machine": machine_info(args.load_note),
        "refresh_interval_s": args.refresh,
        "distinct_bundles": args.bundles,
        "roots": {k: str(v) for k, v in roots.items()},
        "commits": {k: _git_head(v) for k, v in roots.items()},
        "logs_dir": str(logs),
        "runs": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with LoadSampler() as load:
        for index, n in enumerate(args.n or [1000, 4000]):
            case = ScaleCase(n, "shared", bundles=min(n, args.bundles))
            order = list(roots) if index % 2 == 0 else list(roots)[::-1]
            for variant in [] if args.skip_plain else order:
                result["runs"].append(
                    run_once(
                        env,
                        api,
                        variant,
                        roots[variant],
                        case,
                        process_env=envs.get(variant),
                        trim=logs / "trim" if args.trim else None,
                        refresh_s=args.refresh,
                        logs=logs,
                    )
                )
            if args.profile:
                result["runs"].append(
                    run_once(
                        env, api, "this", scale.REPO, case, refresh_s=args.refresh, logs=logs, profile=logs / "profile"
                    )
                )
            (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    result["load"] = load.summary()
    result["fit"] = {variant: per_bundle(result["runs"], variant, "rss_idle_mib") for variant in roots}
    finish(result, args.name, plot, markdown)
    say(f"wrote {RESULTS / (args.name + '.json')}, .md, .png; operator logs in {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
