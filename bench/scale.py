"""Scale on the real kube-apiserver of the test bed: N VaultBundles, 1 or 2 operator shards.

Per case: push N bundles to S3 (distinct prefixes), create namespaces and source Secrets, start the
operator(s), create the N VaultBundles and time until all are Ready; then measure one full idle refresh
cycle (S3 requests and KDF derivations from /metrics, API writes from the apiserver's audit log), the
propagation of one changed bundle, and the operators' RSS. Namespaces are deleted afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from vaultbundle import bundles
from vaultbundle.bundles import Layout
from vaultbundle.crypto import configblob
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.pool import CryptoPool
from vaultbundle.remote import S3Objects

from .operator_proc import HealthProbe, OperatorProcess, ServerProcess, cpu_seconds, metric_by_label, metric_sum
from .readiness import ReadyWatch

REPO = Path(__file__).resolve().parent.parent
GROUP, VERSION, PLURAL = "vaultbundle.io", "v1alpha1", "vaultbundles"
RUN_LABEL = "bench.vaultbundle.io/run"
SOURCE_LABELS = {"vaultbundle.io/source": "true"}  # as users are told to label their source Secrets (README)
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
SHARED_SALT = "bench-shared-salt-0001"
ITERATIONS = 600_000
CLIENT_THREADS = 32  # the bench's creating threads (one kube connection each)


class TestBedDown(RuntimeError):
    pass


@dataclass(frozen=True)
class ScaleCase:
    n: int
    mode: Literal["shared", "distinct"]
    shards: int = 1
    operator_args: tuple[str, ...] = ()  # more `vaultbundle run` flags (tuning)
    bundles: int | None = None  # distinct bundles in S3 (default N); VaultBundle j reads bundle j % bundles


def read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def bed_pids(env_path: Path) -> dict[str, int]:
    """PIDs of the test bed's servers (kube-apiserver, etcd, moto, ...) from its pids.json next to the env file."""
    try:
        records = json.loads((env_path.parent / "pids.json").read_text())["components"]
    except (OSError, ValueError, KeyError):
        return {}
    return {record["name"]: int(record["pid"]) for record in records}


def cpu_now(operators: Sequence[ServerProcess], bed: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by the operator(s) (every thread), this bench process and each test-bed server."""
    times = os.times()
    return {
        "operator": sum(cpu_seconds(op.pid) for op in operators),
        "bench": times.user + times.system,
        **{name: cpu_seconds(pid) for name, pid in bed.items()},
    }


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    used = {name: round(after[name] - before[name], 2) for name in before}
    return {**used, "total": round(sum(used.values()), 2)}


def connect(env_path: Path) -> tuple[dict[str, str], k8s.ApiClient]:
    """Read the test bed's env file and check that its apiserver and S3 answer; else raise TestBedDown."""
    hint = (
        f"start a private one with `VAULTBUNDLE_TESTBED_DIR=/tmp/bed-bench .venv/bin/python -m e2e.testbed up` "
        f"and pass --testbed-env /tmp/bed-bench/env (looked at {env_path})"
    )
    if not env_path.is_file():
        raise TestBedDown(f"no test bed env file at {env_path}: {hint}")
    env = read_env(env_path)
    missing = [k for k in ("KUBECONFIG", "KUBE_AUDIT_LOG", "KUBECTL", "AWS_ENDPOINT_URL") if k not in env]
    if missing:
        raise TestBedDown(f"{env_path} lacks {', '.join(missing)}: {hint}")
    try:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(config_file=env["KUBECONFIG"], client_configuration=configuration)
        # a connection per client thread (+ the readiness watch): the default pool (5 x CPUs) is smaller, and every
        # request over its size pays a fresh TLS handshake on both ends
        configuration.connection_pool_maxsize = CLIENT_THREADS + 4
        api = k8s.ApiClient(configuration)
        k8s.CoreV1Api(api).list_namespace(limit=1, _request_timeout=5)
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing here
        raise TestBedDown(f"the test bed's kube-apiserver does not answer ({type(exc).__name__}): {hint}") from None
    try:
        _s3_client(env).list_buckets()
    except Exception as exc:  # noqa: BLE001
        raise TestBedDown(f"the test bed's S3 does not answer ({type(exc).__name__}): {hint}") from None
    return env, api


def open_bed(env_path: Path) -> tuple[dict[str, str], k8s.ApiClient]:
    """`connect`, then install the VaultBundle CRD; prints why and exits 2 when the bed is down."""
    try:
        env, api = connect(env_path)
    except TestBedDown as exc:
        print(f"bench: test bed is down: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    install_crds(env)
    return env, api


def _s3_client(env: dict[str, str]) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32, connect_timeout=5, read_timeout=60),
    )


def install_crds(env: dict[str, str]) -> None:
    kubectl = [env["KUBECTL"], "--kubeconfig", env["KUBECONFIG"]]
    subprocess.run([*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds")], check=True)
    wait = [*kubectl, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s"]
    # a CRD created a moment ago has no status.conditions yet, and kubectl wait fails at once on that
    for _ in range(10):
        if subprocess.run(wait, check=False).returncode == 0:
            return
        time.sleep(1)
    subprocess.run(wait, check=True)


def parallel(fn: Callable[[Any], Any], items: Iterable[Any], threads: int = CLIENT_THREADS) -> list[Any]:
    with ThreadPoolExecutor(threads) as executor:
        return list(executor.map(fn, items))


def audit_mark(env: dict[str, str]) -> tuple[int, int]:
    """Where the audit log ends now: (inode, size). The apiserver rotates the log (--audit-log-maxsize), so
    a later read must follow the renamed file (same inode) before it reads the new one."""
    stat = Path(env["KUBE_AUDIT_LOG"]).stat()
    return stat.st_ino, stat.st_size


def audit_since(env: dict[str, str], mark: tuple[int, int]) -> Iterator[bytes]:
    """The audit log's lines written after *mark*, across a rotation."""
    path = Path(env["KUBE_AUDIT_LOG"])
    inode, offset = mark
    current = path.stat().st_ino
    if current != inode:  # rotated since the mark: the rest of the old file first (renamed, same inode)
        old = next((f for f in path.parent.glob(f"{path.stem}-*") if f.stat().st_ino == inode), None)
        if old is None:
            raise RuntimeError(f"the audit log rotated twice since the mark; counts from {path} are incomplete")
        with old.open("rb") as log:
            log.seek(offset)
            yield from log
        offset = 0
    with path.open("rb") as log:
        log.seek(offset)
        yield from log


def audit_requests(
    env: dict[str, str],
    mark: tuple[int, int],
    namespaces: set[str],
    cluster_groups: frozenset[str] = frozenset(),
    verbs: frozenset[str] | None = None,
) -> Counter[str]:
    """Requests the apiserver completed in *namespaces*, and on cluster-scoped objects of the API groups
    *cluster_groups* (a ClusterSecretStore's status), since *mark* (`audit_mark`), by "verb resource"; only
    *verbs* when given."""
    counts: Counter[str] = Counter()
    for raw in audit_since(env, mark):
        entry = json.loads(raw)
        ref = entry.get("objectRef") or {}
        scoped = ref.get("namespace") in namespaces or (
            not ref.get("namespace") and ref.get("apiGroup") in cluster_groups
        )
        verb = entry.get("verb")
        if entry.get("stage") == "ResponseComplete" and scoped and (verbs is None or verb in verbs):
            resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            counts[f"{verb} {resource}"] += 1
    return counts


def audit_writes(
    env: dict[str, str], mark: tuple[int, int], namespaces: set[str], cluster_groups: frozenset[str] = frozenset()
) -> Counter[str]:
    """Write requests (create, update, patch, delete) as `audit_requests` counts them."""
    return audit_requests(env, mark, namespaces, cluster_groups, WRITE_VERBS)


def create_unrelated_secrets(core: k8s.CoreV1Api, namespace: str, labels: dict[str, str], count: int) -> None:
    """*count* small Secrets in *namespace* that no operator manages: what a busy cluster holds besides ours."""
    core.create_namespace({"metadata": {"name": namespace, "labels": labels}})
    parallel(
        lambda j: core.create_namespaced_secret(
            namespace, {"metadata": {"name": f"unrelated-{j:05d}"}, "stringData": {"token": secrets.token_hex(16)}}
        ),
        range(count),
    )


def secret_value(core: k8s.CoreV1Api, namespace: str, name: str, key: str = "VALUE") -> str | None:
    """The decoded value of *key* in the Secret, None while the Secret or the key does not exist."""
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    raw = (secret.data or {}).get(key)
    return base64.b64decode(raw).decode() if raw else None


def wait_value(
    read: Callable[[], str | None], value: str, timeout: float, started: float | None = None
) -> float | None:
    """Seconds from *started* (default: now) until *read* returns *value* (polled every 50 ms); None on timeout."""
    started = time.perf_counter() if started is None else started
    while time.perf_counter() - started < timeout:
        if read() == value:
            return time.perf_counter() - started
        time.sleep(0.05)
    return None


class Case:
    """The objects of one scale case (namespaces, bucket, Secrets, VaultBundles) and its measurements."""

    def __init__(self, env: dict[str, str], api: k8s.ApiClient, case: ScaleCase, refresh_s: float) -> None:
        self.env, self.api, self.case, self.refresh_s = env, api, case, refresh_s
        self.core, self.custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        self.run_id = f"{case.mode[0]}{case.n}x{case.shards}-{secrets.token_hex(3)}"
        self.namespaces = [f"vbb-{self.run_id}-{i}" for i in range(min(10, case.n))]
        self.selector = f"{RUN_LABEL}={self.run_id}"
        # a namespace of Secrets no VaultBundle refers to (bench.tenk), deleted with the others
        self.unrelated_namespace: str | None = None
        self.bucket = f"vbb-{self.run_id}"
        self.s3 = _s3_client(env)
        # (namespace, name, config, passphrase) per VaultBundle
        self.items: list[tuple[str, str, BootstrapConfig, str]] = []
        for j in range(case.n):
            ns_index = j % len(self.namespaces)
            salt = SHARED_SALT if case.mode == "shared" else f"bench-salt-{self.run_id}-{j:06d}"
            passphrase = "bench-shared-passphrase" if case.mode == "shared" else f"bench-pass-{self.run_id}-{ns_index}"
            config = BootstrapConfig(
                endpoint=env["AWS_ENDPOINT_URL"],
                region="us-east-1",
                bucket=self.bucket,
                access_key_id=env["AWS_ACCESS_KEY_ID"],
                secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                prefix=f"b{j % (case.bundles or case.n):05d}/",
                env="prod",
                salt=salt,
                iterations=ITERATIONS,
            )
            self.items.append((self.namespaces[ns_index], f"b{j:05d}", config, passphrase))

    # -- setup ------------------------------------------------------------------------------------------
    def push(self, pool: CryptoPool, index: int, value: str) -> None:
        _, name, config, passphrase = self.items[index]
        files = {".env.prod": f"BENCH_NAME={name}\nVALUE={value}\nOTHER=unchanged\n".encode()}
        bundles.push(S3Objects(config, client=self.s3), config, passphrase, pool, files, layout=Layout.CLI)

    def setup(self, pool: CryptoPool) -> dict[str, float]:
        started = time.perf_counter()
        self.s3.create_bucket(Bucket=self.bucket)
        if self.case.mode == "shared":  # derive the one key once, not once per pushing thread
            pool.derive("bench-shared-passphrase", SHARED_SALT, ITERATIONS)
        parallel(lambda j: self.push(pool, j, "v1"), range(self.case.bundles or self.case.n))
        pushed = time.perf_counter()
        labels = {RUN_LABEL: self.run_id}
        parallel(lambda ns: self.core.create_namespace({"metadata": {"name": ns, "labels": labels}}), self.namespaces)
        passphrases = {(ns, p) for ns, _, _, p in self.items}
        parallel(
            lambda item: self.core.create_namespaced_secret(
                item[0],
                {
                    "metadata": {"name": "bench-passphrase", "labels": SOURCE_LABELS},
                    "stringData": {"passphrase": item[1]},
                },
            ),
            sorted(passphrases),
        )
        parallel(
            lambda item: self.core.create_namespaced_secret(
                item[0],
                {
                    "metadata": {"name": f"{item[1]}-vsync", "labels": SOURCE_LABELS},
                    "stringData": {"config": configblob.encode(item[2])},
                },
            ),
            self.items,
        )
        return {"push_s": round(pushed - started, 2), "secrets_s": round(time.perf_counter() - pushed, 2)}

    def create_vaultbundles(self, targets: Callable[[int, str, str], list[dict[str, Any]]] | None = None) -> float:
        """Create the N VaultBundles; *targets* (index, namespace, name) -> the spec's targets (default: one
        kubernetesSecret `<name>-env`)."""
        started = time.perf_counter()

        def create(index: int) -> None:
            namespace, name, _, _ = self.items[index]
            wanted = (
                targets(index, namespace, name)
                if targets
                else [{"name": "app", "kubernetesSecret": {"name": f"{name}-env"}}]
            )
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "VaultBundle",
                "metadata": {"name": name, "labels": {RUN_LABEL: self.run_id}},
                "spec": {
                    "source": {
                        "configSecretRef": {"name": f"{name}-vsync", "key": "config"},
                        "passphraseSecretRef": {"name": "bench-passphrase", "key": "passphrase"},
                        "layout": "cli",
                    },
                    "refreshInterval": f"{self.refresh_s:g}s",
                    "targets": wanted,
                },
            }
            self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

        parallel(create, range(len(self.items)))
        return time.perf_counter() - started

    # -- observation --------------------------------------------------------------------------------------
    def ready_watch(self) -> ReadyWatch:
        return ReadyWatch(self.api, GROUP, VERSION, PLURAL, self.selector)

    def secret_value(self, index: int) -> str | None:
        namespace, name, _, _ = self.items[index]
        return secret_value(self.core, namespace, f"{name}-env")

    def wait_value(self, index: int, value: str, timeout: float, started: float | None = None) -> float | None:
        """Seconds from *started* (default: now) until the target Secret holds VALUE=*value*."""
        return wait_value(lambda: self.secret_value(index), value, timeout, started)

    def force_sync(self, index: int, token: str) -> None:
        namespace, name, _, _ = self.items[index]
        patch = {"metadata": {"annotations": {"vaultbundle.io/force-sync": token}}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)

    def cleanup(self, timeout: float = 180.0) -> dict[str, Any]:
        started = time.perf_counter()
        doomed = [*self.namespaces, *([self.unrelated_namespace] if self.unrelated_namespace else [])]
        for namespace in doomed:
            try:
                self.core.delete_namespace(namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        remaining = set(doomed)
        while remaining and time.perf_counter() - started < timeout:
            listed = self.core.list_namespace(label_selector=f"{RUN_LABEL}={self.run_id}")
            remaining = {ns.metadata.name for ns in listed.items}
            if remaining:
                time.sleep(1)
        keys = self.s3.list_objects_v2(Bucket=self.bucket).get("KeyCount", 0)
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})
        self.s3.delete_bucket(Bucket=self.bucket)
        return {
            "namespaces_left": sorted(remaining),
            "cleanup_s": round(time.perf_counter() - started, 1),
            "s3_first_page_keys": keys,
        }


TOTALS = (
    "vaultbundle_syncs_total",
    "vaultbundle_s3_requests_total",
    "vaultbundle_kdf_derivations_total",
    "vaultbundle_kubernetes_writes_total",
)


def totals(operators: Sequence[OperatorProcess]) -> dict[str, float]:
    """The counters a wait or a window reads; only these samples are rendered (not one per VaultBundle)."""
    texts = [op.metrics(*TOTALS) for op in operators]
    return {
        "idle": sum(metric_sum(t, "vaultbundle_syncs_total", result="Idle") for t in texts),
        "s3": sum(metric_sum(t, "vaultbundle_s3_requests_total") for t in texts),
        "kdf": sum(metric_sum(t, "vaultbundle_kdf_derivations_total") for t in texts),
        "writes": sum(metric_sum(t, "vaultbundle_kubernetes_writes_total") for t in texts),
        "syncs": sum(metric_sum(t, "vaultbundle_syncs_total") for t in texts),
    }


def scrape_every(n: int) -> float:
    """How often to read /metrics while waiting. `totals` asks for four counters only, but a checkout before the
    `?name[]=` filter renders one `vaultbundle_ready` sample per VaultBundle, so at 10,000 a scrape every 0.25 s
    would cost that operator a noticeable share of a core."""
    return 0.25 if n <= 1000 else 2.0


def wait_idle(operators: Sequence[OperatorProcess], since: float, count: int, timeout: float) -> float | None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if totals(operators)["idle"] - since >= count:
            return time.perf_counter() - started
        time.sleep(scrape_every(count))
    return None


def idle_cycle(
    env: dict[str, str],
    bench: Case,
    operators: Sequence[OperatorProcess],
    *,
    refresh_s: float,
    bed: dict[str, int],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Settle (N idle syncs: first-sync Events and status writes are over), then measure one window of N more
    idle syncs: its length, API writes (audit log), the operator's writes, KDF and S3 requests (/metrics)."""
    n = bench.case.n
    cycle_timeout = max(120.0, 8 * refresh_s)
    base = totals(operators)
    settle_s = wait_idle(operators, base["idle"], n, cycle_timeout)
    mark = audit_mark(env)
    before = totals(operators)
    probe = HealthProbe(operators[0].port)
    window_started = time.perf_counter()
    cpu_before = cpu_now(operators, bed)
    with probe:
        cycle_s = wait_idle(operators, before["idle"], n, cycle_timeout)
    after = totals(operators)
    cpu = cpu_used(cpu_before, cpu_now(operators, bed))
    writes = audit_writes(env, mark, set(bench.namespaces))
    result = {
        "settle_s": settle_s,
        "cpu_s_during_idle": cpu,
        "idle_cycle_s": None if cycle_s is None else round(cycle_s, 2),  # None: no full cycle in the cap
        "idle_window_s": round(time.perf_counter() - window_started, 2),
        "idle_window_cap_s": cycle_timeout,
        "idle_cycle_syncs": int(after["idle"] - before["idle"]),
        "idle_cycle_api_writes": sum(writes.values()),
        "idle_cycle_api_writes_by_kind": dict(writes),
        "idle_cycle_operator_writes": int(after["writes"] - before["writes"]),
        "idle_cycle_kdf_calls": int(after["kdf"] - before["kdf"]),
        "idle_cycle_s3_requests": int(after["s3"] - before["s3"]),
        "healthz_during_idle": probe.summary(),
    }
    say(
        f"[{bench.run_id}] idle cycle: {result['idle_cycle_s']} s ({result['idle_cycle_syncs']} idle syncs "
        f"in {result['idle_window_s']} s), writes={result['idle_cycle_api_writes']} "
        f"kdf={result['idle_cycle_kdf_calls']} s3={result['idle_cycle_s3_requests']}"
    )
    return result


def run_case(
    env: dict[str, str],
    api: k8s.ApiClient,
    case: ScaleCase,
    *,
    refresh_s: float,
    logs: Path,
    ready_timeout: float,
    say: Callable[[str], None],
    bed: dict[str, int] | None = None,
    then: Callable[[Case, list[OperatorProcess], CryptoPool, dict[str, Any]], dict[str, Any]] | None = None,
    cleanup_timeout: float = 180.0,
) -> dict[str, Any]:
    """One scale case; *then* runs more measurements on the same objects and operators before the cleanup
    (it gets the result so far; its own goes into ``result["then"]``; it may replace an operator in the list)."""
    bench = Case(env, api, case, refresh_s)
    result: dict[str, Any] = {
        "n": case.n,
        "mode": case.mode,
        "shards": case.shards,
        "operator_args": list(case.operator_args),
        "namespaces": len(bench.namespaces),
        "refresh_interval_s": refresh_s,
    }
    operators: list[OperatorProcess] = []
    with CryptoPool() as pool:
        try:
            say(f"[{bench.run_id}] setup: pushing {case.n} bundles, creating Secrets")
            result["setup"] = bench.setup(pool)
            for index in range(case.shards):
                shard = f"{index}/{case.shards}" if case.shards > 1 else None
                operators.append(
                    OperatorProcess(
                        env["KUBECONFIG"],
                        logs / f"operator-{bench.run_id}-{index}.log",
                        shard=shard,
                        extra_args=case.operator_args,
                    )
                )
            result["operator_pids"] = [op.pid for op in operators]
            say(f"[{bench.run_id}] creating {case.n} VaultBundles")
            probe = HealthProbe(operators[0].port)
            with probe, bench.ready_watch() as watcher:
                cpu_before = cpu_now(operators, bed or {})
                started = time.perf_counter()
                result["create_s"] = round(bench.create_vaultbundles(), 2)
                ready_s, reasons, curve = watcher.wait(case.n, started, ready_timeout, 0.5 if case.n <= 200 else 1.0)
                # where the machine's CPU went until all were Ready (capacity: cores x wall time)
                result["cpu_s_during_ready"] = cpu_used(cpu_before, cpu_now(operators, bed or {}))
                result["cpu_capacity_s"] = round((time.perf_counter() - started) * (os.cpu_count() or 1), 2)
            result["ready_s"] = None if ready_s is None else round(ready_s, 2)
            result["ready_reasons"] = dict(reasons)
            result["ready_curve"] = curve
            result["healthz_during_ready"] = probe.summary()
            # the operator's counter; the PBKDF2 work really needed is 1 per process (shared) or N (distinct)
            result["kdf_metric_during_ready"] = totals(operators)["kdf"]
            result["kdf_needed_during_ready"] = case.shards if case.mode == "shared" else case.n
            cpu = result["cpu_s_during_ready"]
            say(f"[{bench.run_id}] ready_s={result['ready_s']} reasons={dict(reasons)} cpu_s={cpu}")
            if ready_s is None:
                result["error"] = f"not all Ready within {ready_timeout:.0f}s"
                return result

            result.update(idle_cycle(env, bench, operators, refresh_s=refresh_s, bed=bed or {}, say=say))

            # one changed bundle while the others idle: (a) found by its own refresh, (b) after a force-sync poke
            target = case.n // 2
            bench.push(pool, target, "v2")
            waited = bench.wait_value(target, "v2", timeout=max(60.0, 6 * refresh_s))  # from the pointer's move
            result["change_propagation_s"] = None if waited is None else round(waited, 3)
            bench.push(pool, target, "v3")
            started = time.perf_counter()
            bench.force_sync(target, f"bench-{time.time_ns()}")
            waited = bench.wait_value(target, "v3", timeout=60.0, started=started)
            result["change_after_detection_s"] = None if waited is None else round(waited, 3)
            say(
                f"[{bench.run_id}] change (s, None = timed out): refresh path {result['change_propagation_s']}, "
                f"after detection {result['change_after_detection_s']}"
            )

            rss = [op.rss() for op in operators]
            result["rss"] = rss
            result["rss_mib"] = round(sum(r["main_mib"] for r in rss), 1)
            result["rss_with_children_mib"] = round(sum(r["total_mib"] for r in rss), 1)
            texts = [op.metrics() for op in operators]
            result["syncs_by_result"] = {
                key: sum(metric_by_label(t, "vaultbundle_syncs_total", "result").get(key, 0.0) for t in texts)
                for key in sorted({k for t in texts for k in metric_by_label(t, "vaultbundle_syncs_total", "result")})
            }
            result["syncs_per_shard"] = [metric_sum(t, "vaultbundle_syncs_total", result="Synced") for t in texts]
            if then is not None:
                result["then"] = then(bench, operators, pool, result)
            return result
        finally:
            result["operator_exit_codes"] = [op.stop() for op in operators]
            result["operator_logs"] = [str(op.log) for op in operators]
            say(f"[{bench.run_id}] cleanup")
            result["cleanup"] = bench.cleanup(cleanup_timeout)
