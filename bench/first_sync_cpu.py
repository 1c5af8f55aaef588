"""First-sync CPU per bundle, before/after in one run: the operator of another checkout (e.g. main) against this one.

    python -m bench.first_sync_cpu --base /work/wt-cpu-base [--n 300] [--repeats 3] [--testbed-env ...]
    python -m bench.first_sync_cpu --profile /tmp/prof [--n 300]     # one run of this checkout under yappi
    python -m bench.first_sync_cpu --py-spy /tmp/spy [--n 1000]      # one run sampled by py-spy: shares

Each repeat runs every variant once, on the same test bed with the same N (shared passphrase, one target
Secret each, refresh interval long enough that no idle cycle starts), in alternating order (base, this; then
this, base; ...) so that a drift of the machine's background load hits both alike. A variant is a source root
(`<checkout>/operator`) put first on PYTHONPATH of a fresh `vaultbundle run` in this venv, so the
dependencies are the same and only the operator's code differs.

Per run: operator CPU (utime + stime, every thread) and the test bed's servers' CPU from "VaultBundles are
being created" to "all Ready" (as bench/scale.py measures it) and to "settled" (every first-sync request
done: the apiserver's request counters stopped moving); API requests of the window by verb and resource from
the apiserver's own `apiserver_request_total` (GETs included, which the audit log does not record), minus
what the bench client itself sent (it creates the N VaultBundles, LISTs them once and watches them until
Ready); the writes per user agent from the audit log as a cross-check. Figures are medians with min–max over
the repeats. Writes bench/results/<name>.json and .png.

`--idle-refresh S`: after the first sync, the same run also measures idle cycles: the VaultBundles get
refreshInterval S (long enough for the first sync to end before the first refresh), the bench waits for N idle
syncs (settling) and then measures one window of one refresh interval, in which it sends the operator nothing
(not even a /metrics scrape): API requests and operator CPU per idle sync in it. The first-sync figures of such
a run still end at "all Ready"; "settled" is not measured (idle cycles never settle).

`--profile DIR`: the operator runs under yappi (CPU clock, every thread; installed by hand, not a project
dependency: `.venv/bin/pip install yappi==1.7.6`), started by a sitecustomize in DIR; profiling covers only
the first-sync window (SIGUSR1 clears the startup samples, SIGUSR2 stops and saves DIR/first_sync.pstat).

`--py-spy DIR`: one run of this checkout with py-spy (installed by hand: `.venv/bin/pip install
py-spy==0.4.3`) attached to the operator from "VaultBundles are being created" to "all Ready", sampling
without pausing it (`--nonblocking`, GIL-holding threads only); the collapsed stacks go to DIR/first_sync.raw
and `bench.profile_shares` sorts them into named shares in ms per bundle (bench/results/<name>.json, .png);
with `--idle-refresh S` the idle window is sampled too (<name>_idle.json: ms per idle sync).
A sampler costs the operator far less than yappi's tracing, so the run's CPU figures stay close to a plain run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from . import profile_shares, scale
from .operator_proc import OperatorProcess, cpu_seconds, metric_sum
from .run import machine_info
from .scale import Case, ScaleCase, TestBedDown
from .stats import spread

RESULTS = Path(__file__).resolve().parent / "results"
BENCH_AGENT = "vaultbundle-bench/first-sync"
REFRESH_S = 3600.0  # no idle cycle inside the window
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
SITECUSTOMIZE = """
import os, signal, yappi
yappi.set_clock_type("cpu")
yappi.start(builtins=True, profile_threads=True)
def _clear(*_):
    yappi.clear_stats()
def _save(*_):
    yappi.stop()
    yappi.get_func_stats().save(os.environ["VB_PROFILE_OUT"] + ".tmp", type="pstat")
    os.replace(os.environ["VB_PROFILE_OUT"] + ".tmp", os.environ["VB_PROFILE_OUT"])
signal.signal(signal.SIGUSR1, _clear)
signal.signal(signal.SIGUSR2, _save)
"""


def say(message: str) -> None:
    print(f"[first-sync {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def api_requests(api: k8s.ApiClient) -> Counter[str]:
    """The apiserver's `apiserver_request_total`, summed over codes: `VERB group/resource[/subresource]`."""
    response = api.request("GET", f"{api.configuration.host}/metrics", _preload_content=False)
    counts: Counter[str] = Counter()
    for line in response.data.decode().splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if not labels.get("resource"):
            continue
        resource = "/".join(p for p in (labels.get("group"), labels["resource"], labels.get("subresource")) if p)
        counts[f"{labels['verb']} {resource}"] += int(float(match["value"]))
    return counts


def audit_writes_by_agent(env: dict[str, str], mark: tuple[int, int]) -> Counter[str]:
    """Writes the audit log recorded since *mark* (`scale.audit_mark`), by `user agent: verb resource`."""
    counts: Counter[str] = Counter()
    for raw in scale.audit_since(env, mark):
        entry = json.loads(raw)
        if entry.get("stage") != "ResponseComplete" or entry.get("verb") not in scale.WRITE_VERBS:
            continue
        ref = entry.get("objectRef") or {}
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        agent = str(entry.get("userAgent", "")).split(" ", 1)[0]
        counts[f"{agent}: {entry['verb']} {resource}"] += 1
    return counts


def operator_requests(delta: Counter[str], n: int, bench_lists: int) -> dict[str, int]:
    """The window's requests minus the bench client's own (N creates, its LIST of the ready watch)."""
    mine = Counter({"POST vaultbundle.io/vaultbundles": n, "LIST vaultbundle.io/vaultbundles": bench_lists})
    return {key: value for key, value in sorted((delta - mine).items()) if value > 0}


def wait_settled(api: k8s.ApiClient, timeout: float = 120.0, quiet_s: float = 2.0) -> Counter[str]:
    """Poll the apiserver's request counters until nothing but the metric scrape itself moves for *quiet_s*."""
    started = time.monotonic()
    last = api_requests(api)
    still_since = time.monotonic()
    while time.monotonic() - started < timeout:
        time.sleep(0.5)
        now = api_requests(api)
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet_s:
            break
    return last


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling *pid* into *out* (collapsed stacks) until `stop_py_spy`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    argv = [str(spy), "record", "--pid", str(pid), "--rate", "250", "--gil", "--nonblocking"]
    sampler = subprocess.Popen([*argv, "--format", "raw", "--output", str(out)], stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the first VaultBundle is created
    if sampler.poll() is not None:
        raise SystemExit(f"bench: py-spy exited at once ({sampler.returncode}); is it installed in this venv?")
    return sampler


def stop_py_spy(sampler: subprocess.Popen[bytes]) -> None:
    sampler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    sampler.wait(timeout=120)


def run_once(
    env: dict[str, str],
    api: k8s.ApiClient,
    variant: str,
    root: Path,
    n: int,
    logs: Path,
    bed: dict[str, int],
    profile: Path | None = None,
    idle_refresh: float | None = None,
    py_spy: Path | None = None,
) -> dict[str, Any]:
    case = Case(env, api, ScaleCase(n, "shared"), idle_refresh or REFRESH_S)
    extra_env = {"PYTHONPATH": str(root / "operator")}
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "sitecustomize.py").write_text(SITECUSTOMIZE)
        extra_env["PYTHONPATH"] += os.pathsep + str(profile)
        extra_env["VB_PROFILE_OUT"] = str(profile / "first_sync.pstat")
    result: dict[str, Any] = {"variant": variant, "root": str(root), "n": n, "run_id": case.run_id}
    from vaultbundle.pool import CryptoPool  # noqa: PLC0415 - this checkout's, only to push the bundles

    operator: OperatorProcess | None = None
    with CryptoPool() as pool:
        try:
            result["setup"] = case.setup(pool)
            operator = OperatorProcess(env["KUBECONFIG"], logs / f"operator-{variant}-{case.run_id}.log", env=extra_env)
            if profile is not None:
                os.kill(operator.pid, signal.SIGUSR1)
            servers = {"operator": operator.pid, **bed}
            before_cpu = {name: cpu_seconds(pid) for name, pid in servers.items()}
            before_requests = api_requests(api)
            mark = scale.audit_mark(env)
            with case.ready_watch() as watcher:  # one LIST, then a watch (the bench's own requests, subtracted)
                sampler = None if py_spy is None else start_py_spy(operator.pid, py_spy / "first_sync.raw")
                started = time.perf_counter()
                case.create_vaultbundles()
                ready_s, reasons, _ = watcher.wait(n, started, timeout=600.0)
                ready_cpu = {name: cpu_seconds(pid) - before_cpu[name] for name, pid in servers.items()}
                if sampler is not None:
                    stop_py_spy(sampler)
            lists = 1 + watcher.restarts  # a restarted watch may list again
            result["ready_s"] = None if ready_s is None else round(ready_s, 2)
            result["ready_reasons"] = dict(reasons)
            if idle_refresh is not None:
                result.update(
                    idle_cycles(api, operator, n, idle_refresh, None if py_spy is None else py_spy / "idle.raw"),
                    cpu_s_to_ready={k: round(v, 2) for k, v in ready_cpu.items()},
                    operator_ms_per_bundle=round(1000 * ready_cpu["operator"] / n, 2),
                    apiserver_ms_per_bundle=round(1000 * ready_cpu.get("kube-apiserver", 0.0) / n, 2),
                )
                say(
                    f"{variant}: ready {result['ready_s']} s, operator {result['operator_ms_per_bundle']} ms/bundle;"
                    f" idle: {result.get('idle_api_requests_per_sync')} API requests/cycle,"
                    f" {result.get('idle_operator_ms_per_sync')} operator ms/cycle"
                )
                return result
            settled = wait_settled(api)
            settled_s = time.perf_counter() - started
            settled_cpu = {name: cpu_seconds(pid) - before_cpu[name] for name, pid in servers.items()}
            if profile is not None:
                os.kill(operator.pid, signal.SIGUSR2)
                deadline = time.monotonic() + 120
                while not (profile / "first_sync.pstat").exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
            requests = operator_requests(settled - before_requests, n, lists)
            result.update(
                settled_s=round(settled_s, 2),
                cpu_s_to_ready={k: round(v, 2) for k, v in ready_cpu.items()},
                cpu_s_to_settled={k: round(v, 2) for k, v in settled_cpu.items()},
                operator_ms_per_bundle=round(1000 * ready_cpu["operator"] / n, 2),
                operator_ms_per_bundle_settled=round(1000 * settled_cpu["operator"] / n, 2),
                apiserver_ms_per_bundle=round(1000 * ready_cpu.get("kube-apiserver", 0.0) / n, 2),
                apiserver_ms_per_bundle_settled=round(1000 * settled_cpu.get("kube-apiserver", 0.0) / n, 2),
                api_requests=requests,
                api_requests_per_bundle=round(sum(requests.values()) / n, 2),
                bench_list_polls=lists,
                audit_writes=dict(sorted(audit_writes_by_agent(env, mark).items())),
                syncs_synced=metric_sum(operator.metrics(), "vaultbundle_syncs_total", result="Synced"),
            )
            say(
                f"{variant}: ready {result['ready_s']} s, operator {result['operator_ms_per_bundle']} ms/bundle "
                f"(settled {result['operator_ms_per_bundle_settled']}), apiserver {result['apiserver_ms_per_bundle']}"
                f" ms/bundle, {result['api_requests_per_bundle']} API requests/bundle"
            )
            return result
        finally:
            if operator is not None:
                result["operator_exit_code"] = operator.stop()
            result["cleanup"] = case.cleanup()


def idle_cycles(
    api: k8s.ApiClient, operator: OperatorProcess, n: int, refresh: float, py_spy: Path | None = None
) -> dict[str, Any]:
    """Settle (N idle syncs), then one window of one refresh interval (about N more idle syncs) in which the
    bench sends the operator nothing: API requests and operator CPU per idle sync. The counters are read just
    outside the window's CPU readings, so not even a /metrics scrape is counted as idle work."""
    timeout = 3 * refresh + 60
    since = scale.totals([operator])["idle"]
    if scale.wait_idle([operator], since, n, timeout) is None:
        return {"idle_error": f"fewer than {n} idle syncs in {timeout:g} s"}
    sampler = None if py_spy is None else start_py_spy(operator.pid, py_spy)  # *py_spy*: the window's stacks
    before, requests = scale.totals([operator]), api_requests(api)
    cpu, started = cpu_seconds(operator.pid), time.perf_counter()
    time.sleep(refresh)
    cpu_s, window_s = cpu_seconds(operator.pid) - cpu, time.perf_counter() - started
    if sampler is not None:
        stop_py_spy(sampler)
    after, delta = scale.totals([operator]), api_requests(api) - requests
    syncs = after["idle"] - before["idle"]
    mine = {k: v for k, v in sorted(delta.items()) if v > 0}
    return {
        "idle_window_s": round(window_s, 2),
        "idle_syncs": int(syncs),
        "idle_api_requests": mine,
        "idle_api_requests_per_sync": round(sum(mine.values()) / max(syncs, 1), 3),
        "idle_secret_gets_per_sync": round(delta.get("GET secrets", 0) / max(syncs, 1), 3),
        "idle_s3_requests_per_sync": round((after["s3"] - before["s3"]) / max(syncs, 1), 3),
        "idle_operator_ms_per_sync": round(1000 * cpu_s / max(syncs, 1), 3),
    }


def summarize(runs: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    fields = (
        "operator_ms_per_bundle",
        "operator_ms_per_bundle_settled",
        "apiserver_ms_per_bundle",
        "apiserver_ms_per_bundle_settled",
        "api_requests_per_bundle",
        "ready_s",
        "idle_api_requests_per_sync",
        "idle_secret_gets_per_sync",
        "idle_s3_requests_per_sync",
        "idle_operator_ms_per_sync",
    )
    summary: dict[str, Any] = {}
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant and r.get("ready_s") is not None]
        if not mine:
            continue
        entry: dict[str, Any] = {f: spread([r[f] for r in mine], 2) for f in fields if all(f in r for r in mine)}
        n = mine[0]["n"]
        if all("api_requests" in r for r in mine):
            keys = sorted({k for r in mine for k in r["api_requests"]})
            per_kind = {
                k: round(sorted(r["api_requests"].get(k, 0) for r in mine)[len(mine) // 2] / n, 2) for k in keys
            }
            entry["api_requests_per_bundle_by_kind"] = {k: v for k, v in per_kind.items() if v > 0}  # not watches
        summary[variant] = entry
    return summary


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional dependency (bench extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    summary = result["summary"]
    variants = list(summary)
    panels = [
        ("operator_ms_per_bundle", "operator CPU to Ready (ms/bundle)", 10.0),
        ("apiserver_ms_per_bundle", "kube-apiserver CPU to Ready (ms/bundle)", None),
        ("api_requests_per_bundle", "API requests per bundle (first sync)", None),
        ("idle_api_requests_per_sync", "API requests per idle cycle", None),
        ("idle_operator_ms_per_sync", "operator CPU per idle cycle (ms)", None),
    ]
    panels = [p for p in panels if all(p[0] in summary[v] for v in variants)]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.4))
    for ax, (field, title, target) in zip(axes, panels, strict=True):
        medians = [summary[v][field]["median"] for v in variants]
        errors = [
            [summary[v][field]["median"] - summary[v][field]["min"] for v in variants],
            [summary[v][field]["max"] - summary[v][field]["median"] for v in variants],
        ]
        ax.bar(variants, medians, yerr=errors, capsize=5, color=["#999", "#3a7"][: len(variants)])
        for v in variants:  # every run, so the spread is visible
            samples = summary[v][field]["samples"]
            ax.scatter([v] * len(samples), samples, color="black", s=10, zorder=3)
        if target is not None:
            ax.axhline(target, color="red", linestyle="--", label=f"target ≤ {target:g}")
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
    figure.suptitle(f"first sync of N={result['n']} VaultBundles, {result['repeats']} alternating runs each")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_sync_cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, help="another checkout (e.g. a worktree of main) to compare against")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="one run of this checkout under yappi; pstat into this dir")
    parser.add_argument("--py-spy", type=Path, help="one run of this checkout sampled by py-spy; shares (see above)")
    parser.add_argument(
        "--name", help="results file name in bench/results/ (default: first_sync_cpu; with --py-spy first_sync_profile)"
    )
    parser.add_argument(
        "--testbed-env",
        type=Path,
        default=Path(os.environ.get("VAULTBUNDLE_TESTBED_ENV") or scale.REPO / ".testbed" / "env"),
    )
    parser.add_argument("--load-note", default="", help="what else ran on the machine (goes into the JSON)")
    parser.add_argument(
        "--idle-refresh", type=float, help="also measure idle cycles at this refreshInterval (seconds); see above"
    )
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="combine the runs of earlier results files into --name (no bed needed)"
    )
    args = parser.parse_args(argv)
    args.name = args.name or ("first_sync_profile" if args.py_spy else "first_sync_cpu")
    if args.merge:
        return merge(args.merge, args.name)
    try:
        env, api = scale.connect(args.testbed_env)
    except TestBedDown as exc:
        print(f"bench: test bed is down: {exc}", file=sys.stderr)
        return 2
    api.user_agent = BENCH_AGENT
    scale.install_crds(env)
    bed = scale.bed_pids(args.testbed_env)
    logs = Path(tempfile.mkdtemp(prefix="vaultbundle-first-sync-"))
    if args.profile is not None:
        run = run_once(env, api, "this", scale.REPO, args.n, logs, bed, profile=args.profile)
        say(f"profile in {args.profile / 'first_sync.pstat'}; run: {json.dumps(run)[:400]}")
        return 0
    if args.py_spy is not None:
        machine = machine_info(args.load_note)
        run = run_once(
            env, api, "this", scale.REPO, args.n, logs, bed, idle_refresh=args.idle_refresh, py_spy=args.py_spy
        )
        windows = [("first_sync", "operator_ms_per_bundle", f"first sync of N={args.n}", args.name)]
        if args.idle_refresh is not None:
            windows.append(("idle", "idle_operator_ms_per_sync", f"idle syncs of N={args.n}", f"{args.name}_idle"))
        for raw, per, title, name in windows:
            stacks = profile_shares.parse_raw((args.py_spy / f"{raw}.raw").read_text())
            found = profile_shares.shares(stacks, run.get(per)) | {"title": title, "machine": machine, "run": run}
            profile_shares.write(found, name)
            say(f"{title}: " + json.dumps(found["shares"], indent=1))
        return 0
    roots = {"base": args.base, "this": scale.REPO} if args.base else {"this": scale.REPO}
    variants = list(roots)
    runs: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "machine": machine_info(args.load_note),
        "n": args.n,
        "repeats": args.repeats,
        "idle_refresh_s": args.idle_refresh,
        "roots": {k: str(v) for k, v in roots.items()},
        "logs_dir": str(logs),
        "runs": runs,
    }
    if args.base:
        result["base_commit"] = _git_head(args.base)
    for repeat in range(args.repeats):
        order = variants if repeat % 2 == 0 else variants[::-1]
        for variant in order:
            say(f"repeat {repeat + 1}/{args.repeats}: {variant} ({roots[variant]})")
            runs.append(run_once(env, api, variant, roots[variant], args.n, logs, bed, idle_refresh=args.idle_refresh))
            result["summary"] = summarize(runs, variants)
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / f"{args.name}.png")
    say(json.dumps(result["summary"], indent=1))
    return 0


def merge(paths: list[Path], name: str) -> int:
    """One results file from several runs of this script (same N and checkouts), e.g. taken back to back."""
    parts = [json.loads(path.read_text()) for path in paths]
    if len({p["n"] for p in parts}) != 1 or len({json.dumps(p["roots"], sort_keys=True) for p in parts}) != 1:
        raise SystemExit("bench: --merge needs results of the same N and the same checkouts")
    result = {**parts[0], "merged_from": [str(p) for p in paths], "runs": [r for p in parts for r in p["runs"]]}
    result["repeats"] = min(Counter(r["variant"] for r in result["runs"]).values())  # a partial file counts as run
    result["machine"]["loadavg_end"] = parts[-1]["machine"].get("loadavg_end")
    result["summary"] = summarize(result["runs"], list(result["roots"]))
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / f"{name}.png")
    say(json.dumps(result["summary"], indent=1))
    return 0


def _git_head(root: Path) -> str:
    import subprocess  # noqa: PLC0415

    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root, check=False
    )
    return done.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
