"""`python -m bench.peer [--smoke] [--n N ...]` (`make bench-peer`): vaultbundle side by side with External
Secrets Operator (ESO) on the same test bed, the same workload shape, one after the other in one run.

Per N and per setting (documented defaults; tuned: ESO ``--concurrent``, our ``--max-concurrent``), each
operator gets a fresh process and fresh namespaces: N secrets of 3 keys each, refreshed every
``--refresh`` seconds (the same for both), 10 namespaces.

* ESO: N AWS Secrets Manager JSON secrets in moto, one ClusterSecretStore, N ExternalSecrets → N Secrets.
* vaultbundle: N sealed bundles in moto S3 (one shared passphrase), N VaultBundles → N Secrets.

Measured the same way for both (see bench/README.md): time from the first create to all ``Ready``
(watched), RSS, CPU of the operator and of the API server, then one idle window of one refresh interval
(API writes from the audit log, provider requests from moto's request log and from the operator's own
metric), then one changed secret: the refresh path, and after a force-sync annotation.
Writes bench/results/peer.{json,png,md} (smoke: peer-smoke.*).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

from e2e.testbed.config import ESO_VERSION
from kubernetes import client as k8s

from vaultbundle.pool import CryptoPool

from . import eso, peer_report, scale
from .operator_proc import OperatorProcess, ServerProcess, metric_by_label, metric_sum
from .readiness import ReadyWatch
from .run import RESULTS, finish, machine_info, write_json
from .scale import ScaleCase
from .stats import LoadSampler

Operator = Literal["eso", "vaultbundle"]


@dataclass(frozen=True)
class Variant:
    operator: Operator
    setting: str  # "default", "tuned", "fairness-off"
    args: tuple[str, ...] = ()


# ESO's client-side rate limit (50 QPS, burst 100) would cap any --concurrent; its docs pair the two.
ESO_TUNED = ("--concurrent=16", "--client-qps=200", "--client-burst=400")
OURS_TUNED = ("--max-concurrent=64", "--max-concurrent-per-namespace=16")
# Per-namespace fairness off: a per-namespace cap equal to the global one never binds.
OURS_FAIRNESS_OFF = ("--max-concurrent-per-namespace=16",)

VARIANTS = (
    Variant("eso", "default"),
    Variant("vaultbundle", "default"),
    Variant("eso", "tuned", ESO_TUNED),
    Variant("vaultbundle", "tuned", OURS_TUNED),
)
FAIRNESS = Variant("vaultbundle", "fairness-off", OURS_FAIRNESS_OFF)


class Side(Protocol):
    """One operator's workload (bench.eso.EsoCase, or OursCase around scale.Case)."""

    n: int
    run_id: str
    namespaces: list[str]
    cluster_groups: frozenset[str]

    def setup(self) -> dict[str, float]: ...
    def create(self) -> float: ...
    def ready_watch(self) -> ReadyWatch: ...
    def change(self, index: int, value: str) -> None: ...
    def force_sync(self, index: int, token: str) -> None: ...
    def wait_value(self, index: int, value: str, timeout: float, started: float | None = None) -> float | None: ...
    def provider_requests(self, metrics: str) -> float: ...
    def cleanup(self) -> dict[str, Any]: ...


class OursCase:
    """scale.Case (shared passphrase) seen through the Side interface."""

    cluster_groups: frozenset[str] = frozenset()

    def __init__(self, env: dict[str, str], api: k8s.ApiClient, n: int, refresh_s: float, pool: CryptoPool) -> None:
        self.case = scale.Case(env, api, ScaleCase(n, "shared"), refresh_s)
        self.pool = pool
        self.n, self.run_id, self.namespaces = n, self.case.run_id, self.case.namespaces

    def setup(self) -> dict[str, float]:
        return self.case.setup(self.pool)

    def create(self) -> float:
        return self.case.create_vaultbundles()

    def ready_watch(self) -> ReadyWatch:
        return self.case.ready_watch()

    def change(self, index: int, value: str) -> None:
        self.case.push(self.pool, index, value)

    def force_sync(self, index: int, token: str) -> None:
        self.case.force_sync(index, token)

    def wait_value(self, index: int, value: str, timeout: float, started: float | None = None) -> float | None:
        return self.case.wait_value(index, value, timeout, started)

    @staticmethod
    def provider_requests(metrics: str) -> float:
        return metric_sum(metrics, "vaultbundle_s3_requests_total")

    def cleanup(self) -> dict[str, Any]:
        return self.case.cleanup()


def moto_log(env_path: Path) -> Path:
    return env_path.parent / "logs" / "moto.log"


# werkzeug's access line ends `"GET /b/k HTTP/1.1" 200 -`; it colours some statuses (304, 404) with ANSI codes
ACCESS_LINE = re.compile(rb'HTTP/1\.[01](?:\x1b\[0m)?" \d{3} ')


def moto_requests(path: Path, offset: int) -> int:
    """HTTP requests moto logged after byte *offset* (werkzeug's access lines: `"GET /... HTTP/1.1" 200`);
    moto serves both S3 and Secrets Manager, and nothing else talks to it during an idle window (the bed's
    health probes of `/moto-api/` are not counted)."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return sum(1 for line in log if ACCESS_LINE.search(line) and b"/moto-api/" not in line)
    except OSError:
        return -1


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {key: int(after[key] - before.get(key, 0.0)) for key in sorted(after) if after[key] != before.get(key)}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def measure(
    side: Side,
    variant: Variant,
    start: Callable[[], ServerProcess],
    *,
    env: dict[str, str],
    env_path: Path,
    refresh_s: float,
    ready_timeout: float,
    say: Callable[[str], None],
    before_clock: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """One operator, one N: setup, Ready, idle window, change, RSS; the namespaces are deleted at the end."""
    bed = scale.bed_pids(env_path)
    tag = f"[{variant.operator}/{variant.setting} N={side.n} {side.run_id}]"
    result: dict[str, Any] = {
        "operator": variant.operator,
        "setting": variant.setting,
        "args": list(variant.args),
        "n": side.n,
        "namespaces": len(side.namespaces),
        "refresh_interval_s": refresh_s,
    }
    proc: ServerProcess | None = None
    try:
        say(f"{tag} setup")
        result["setup"] = side.setup()
        proc = start()
        result["command"] = proc.command
        if before_clock is not None:
            result["store_ready_s"] = round(before_clock(), 2)
        say(f"{tag} creating {side.n} objects")
        with side.ready_watch() as watcher:
            cpu_before = scale.cpu_now([proc], bed)
            started = time.perf_counter()
            result["create_s"] = round(side.create(), 2)
            ready_s, reasons, curve = watcher.wait(side.n, started, ready_timeout, 0.5 if side.n <= 200 else 1.0)
            result["cpu_s_during_ready"] = scale.cpu_used(cpu_before, scale.cpu_now([proc], bed))
            result["cpu_capacity_s"] = round((time.perf_counter() - started) * (os.cpu_count() or 1), 2)
        result.update(ready_s=None if ready_s is None else round(ready_s, 2), ready_reasons=dict(reasons))
        result["ready_curve"] = curve
        result["rss_after_ready"] = proc.rss()
        say(f"{tag} ready_s={result['ready_s']} reasons={dict(reasons)} cpu={result['cpu_s_during_ready']}")
        if ready_s is None:
            result["error"] = f"not all Ready within {ready_timeout:.0f}s"
            return result

        # Settle for one refresh interval (first-sync Events and status writes are over), then one idle window
        # of one refresh interval: every object is refreshed about once in it.
        time.sleep(refresh_s)
        mark, moto_offset, metrics_before = scale.audit_mark(env), _size(moto_log(env_path)), proc.metrics()
        cpu_before = scale.cpu_now([proc], bed)
        window_started = time.perf_counter()
        time.sleep(refresh_s)
        window = time.perf_counter() - window_started
        cpu = scale.cpu_used(cpu_before, scale.cpu_now([proc], bed))
        writes = scale.audit_writes(env, mark, set(side.namespaces), side.cluster_groups)
        metrics_after = proc.metrics()
        result.update(
            idle_window_s=round(window, 2),
            idle_api_writes=sum(writes.values()),
            idle_api_writes_by_kind=dict(writes),
            # the bed's audit log holds writes only; ESO's client-go also counts its own requests (reads too)
            idle_client_requests_by_method=_delta(
                metric_by_label(metrics_before, "rest_client_requests_total", "method"),
                metric_by_label(metrics_after, "rest_client_requests_total", "method"),
            ),
            idle_provider_requests=int(side.provider_requests(metrics_after) - side.provider_requests(metrics_before)),
            idle_moto_requests=moto_requests(moto_log(env_path), moto_offset),
            cpu_s_during_idle=cpu,
        )
        say(
            f"{tag} idle {result['idle_window_s']} s: writes={result['idle_api_writes']} "
            f"client={result['idle_client_requests_by_method']} provider={result['idle_provider_requests']} "
            f"moto={result['idle_moto_requests']} cpu={cpu}"
        )

        target = side.n // 2
        side.change(target, "v2")
        waited = side.wait_value(target, "v2", timeout=2 * refresh_s + 30)
        result["change_propagation_s"] = None if waited is None else round(waited, 3)
        side.change(target, "v3")
        started = time.perf_counter()
        side.force_sync(target, f"bench-{time.time_ns()}")
        waited = side.wait_value(target, "v3", timeout=60.0, started=started)
        result["change_after_detection_s"] = None if waited is None else round(waited, 3)
        result["rss"] = proc.rss()
        say(
            f"{tag} change: refresh path {result['change_propagation_s']} s, after force-sync "
            f"{result['change_after_detection_s']} s; RSS {result['rss']['main_mib']} MiB"
        )
        return result
    finally:
        # Clean up while the operator still runs: ESO puts a finalizer on every ExternalSecret and removes it
        # itself; namespaces would hang once it is gone.
        say(f"{tag} cleanup")
        result["cleanup"] = side.cleanup()
        if proc is not None:
            result["exit_code"] = proc.stop()
            result["log"] = str(proc.log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="N=50, a short check of the whole harness")
    parser.add_argument("--n", type=int, nargs="+", help="sizes (default 200 1000; smoke 50)")
    parser.add_argument("--refresh", type=float, default=30.0, help="refreshInterval of every object, s (30)")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="per case; ESO past it is reported")
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["default", "tuned"],
        choices=["default", "tuned", "fairness-off"],
        help="which settings to run (fairness-off: ours only, --max-concurrent-per-namespace = --max-concurrent)",
    )
    parser.add_argument(
        "--testbed-env",
        type=Path,
        default=Path(os.environ.get("VAULTBUNDLE_TESTBED_ENV") or scale.REPO / ".testbed" / "env"),
    )
    parser.add_argument("--name", help="results file name (default peer, smoke: peer-smoke)")
    parser.add_argument("--load-note", default="", help="what else ran on the machine (goes into the JSON)")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(f"[peer {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    peer_report.require_matplotlib()
    binaries = eso.build(say)
    env, api = scale.open_bed(args.testbed_env)
    eso.install_crds(env, binaries)

    sizes = args.n or ([50] if args.smoke else [200, 1000])
    name = args.name or ("peer-smoke" if args.smoke else "peer")
    logs = Path(tempfile.mkdtemp(prefix=f"vaultbundle-bench-{name}-"))
    variants = [v for v in (*VARIANTS, FAIRNESS) if v.setting in args.settings]
    result: dict[str, Any] = {
        "machine": machine_info(args.load_note or "2-core machine shared with other engineers; see load samples"),
        "mode": name,
        "eso_version": ESO_VERSION,
        "refresh_interval_s": args.refresh,
        "logs_dir": str(logs),
        "runs": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with LoadSampler() as load, CryptoPool() as pool:
        for n in sizes:
            for variant in variants:
                say(f"N={n}: {variant.operator} ({variant.setting}) {' '.join(variant.args)}")
                log = logs / f"{variant.operator}-{variant.setting}-{n}.log"
                if variant.operator == "eso":
                    side: Any = eso.EsoCase(env, api, n, args.refresh)
                    run = measure(
                        side,
                        variant,
                        partial(eso.EsoProcess, binaries.eso, env, log, variant.args),
                        before_clock=side.wait_store_ready,
                        env=env,
                        env_path=args.testbed_env,
                        refresh_s=args.refresh,
                        ready_timeout=args.ready_timeout,
                        say=say,
                    )
                else:
                    ours = OursCase(env, api, n, args.refresh, pool)
                    run = measure(
                        ours,
                        variant,
                        partial(OperatorProcess, env["KUBECONFIG"], log, extra_args=variant.args),
                        env=env,
                        env_path=args.testbed_env,
                        refresh_s=args.refresh,
                        ready_timeout=args.ready_timeout,
                        say=say,
                    )
                result["runs"].append(run)
                result["load"] = load.summary()
                write_json(result, name)  # partial results survive a crash of a later case
    result["load"] = load.summary()
    result["ratios"] = peer_report.ratio_rows(result)
    finish(result, name, peer_report.plot, peer_report.markdown)
    say(f"wrote {RESULTS / (name + '.json')}, {name}.png, {name}.md; logs in {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
