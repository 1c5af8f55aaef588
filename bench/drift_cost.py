"""What drift checks and guardrails cost, per store kind, on the test bed (issue #18 item 4).

    python -m bench.drift_cost [--n 20] [--interval 5] [--window 30] [--kinds ...] [--testbed-env ...]

Per store kind: N VaultBundles (shared passphrase, refreshInterval 1h so no refresh runs), each with one target
of that kind and `driftCheckInterval` (GitHub: `resyncInterval`) of *interval* seconds, one fresh operator with
`--min-drift-check-interval 1s`. After all are Ready and every target has been checked once, an idle window of
*window* seconds: drift checks (`vaultbundle_drift_checks_total{kind}`), requests at the store (a counting
pass-through proxy in front of moto's Secrets Manager, OpenBao and the GitHub fake; the in-process GCP fake's
own RPC counters), the operator's S3 requests, the apiserver's requests (`apiserver_request_total`, reads
included) and writes (audit log), operator CPU. Then one value is changed by hand in one target's store and
the time to its repair is taken, with the store writes and API requests meanwhile. A kubernetesSecret target
is checked from the watch only (no timer), so its window is the idle baseline of the same operator work.

Guardrails: the same N awsSecretsManager targets through a ClusterTargetStore (`storeRef`, the operator's
ambient identity pointed at the same moto) against the tenant's own credentials (no `storeRef`), and the
kubernetesSecret case's first sync with per-namespace fairness on (default) and off (the cap = the global one).

Writes bench/results/<name>.json and .png. Azure Key Vault is not covered (its bed fake needs workload identity
federation per tenant; see bench/README.md).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import hvac
from e2e.fakes.gcp_secret_manager import WRITE_METHODS, make_client, start_in_process
from e2e.faults import FaultProxy
from kubernetes import client as k8s

from vaultbundle.pool import CryptoPool

from . import scale
from .first_sync_cpu import api_requests
from .operator_proc import OperatorProcess, cpu_seconds, metric_sum
from .plot import require_matplotlib
from .run import machine_info
from .scale import GROUP, VERSION, Case, ScaleCase, TestBedDown
from .stats import LoadSampler

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("kubernetesSecret", "awsSecretsManager", "hashicorpVault", "gcpSecretManager", "githubActions")
REFRESH_S = 3600.0  # no refresh inside the measurements: every store request is a drift check's
AWS_READS = frozenset({"DescribeSecret", "GetSecretValue", "ListSecrets", "BatchGetSecretValue"})


def say(message: str) -> None:
    print(f"[drift-cost {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def is_write(kind: str, operation: str) -> bool:
    """A store request that changes something: by AWS action, gRPC method or HTTP method."""
    if kind == "awsSecretsManager":
        return operation not in AWS_READS
    if kind == "gcpSecretManager":
        return operation in WRITE_METHODS
    return operation in ("PUT", "POST", "PATCH", "DELETE")


class Stores:
    """The bed's stores behind counters: `operations(kind)` is every request seen so far, by operation."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proxies = {
            "awsSecretsManager": FaultProxy(env["AWS_ENDPOINT_URL"]),
            "hashicorpVault": FaultProxy(env["VAULT_ADDR"]),
            "githubActions": FaultProxy(env["GITHUB_API_URL"]),
        }
        self.gcp = start_in_process()

    def url(self, kind: str) -> str:
        if kind == "gcpSecretManager":
            return f"127.0.0.1:{self.gcp.port}"
        return self.proxies[kind].url

    def operations(self, kind: str) -> Counter[str]:
        if kind == "gcpSecretManager":
            with self.gcp.state._lock:  # the fake's own lock: its RPC threads count while we copy
                return Counter(self.gcp.state.calls)
        if kind in self.proxies:
            return Counter(self.proxies[kind].operations)
        return Counter()

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()
        self.gcp.stop()


def target_for(kind: str, stores: Stores, interval: float, env: dict[str, str]) -> Callable[[int, str, str], Any]:
    """The one target of VaultBundle (index, namespace, name) for *kind*."""
    every = f"{interval:g}s"

    def make(index: int, namespace: str, name: str) -> list[dict[str, Any]]:
        body: dict[str, Any]
        if kind == "kubernetesSecret":
            body = {"name": f"{name}-env"}
        elif kind == "awsSecretsManager":
            body = {
                "region": "us-east-1",
                "endpoint": stores.url(kind),
                "namePrefix": f"{namespace}/{name}/",
                "credentialsSecretRef": {"name": "bench-aws"},
                "driftCheckInterval": every,
            }
        elif kind == "hashicorpVault":
            body = {
                "address": stores.url(kind),
                "mount": "secret",
                "path": f"bench/{namespace}/{name}",
                "auth": {"tokenSecretRef": {"name": "bench-vault"}},
                "driftCheckInterval": every,
            }
        elif kind == "gcpSecretManager":
            body = {
                "project": namespace,
                "endpoint": stores.url(kind),
                "insecure": True,
                "naming": {"prefix": f"{name}-"},
                "driftCheckInterval": every,
            }
        else:
            body = {
                "repository": f"acme/{namespace}-{name}",
                "apiURL": stores.url(kind),
                "auth": {"tokenSecretRef": {"name": "bench-gh"}},
                "resyncInterval": every,
            }
        return [{"name": "t", kind: body}]

    return make


def credential_secrets(case: Case, env: dict[str, str]) -> None:
    aws = {"access-key-id": env["AWS_ACCESS_KEY_ID"], "secret-access-key": env["AWS_SECRET_ACCESS_KEY"]}
    made = {"bench-aws": aws, "bench-vault": {"token": env["VAULT_TOKEN"]}, "bench-gh": {"token": env["GITHUB_TOKEN"]}}
    for namespace in case.namespaces:
        for name, data in made.items():
            case.core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})


class Snapshot:
    """Counters at one moment: the operator's metrics and CPU, the store's requests, the apiserver's requests."""

    def __init__(self, op: OperatorProcess, stores: Stores, kind: str, api: k8s.ApiClient) -> None:
        text = op.metrics()
        self.at = time.perf_counter()
        self.checks = metric_sum(text, "vaultbundle_drift_checks_total", kind=kind)
        self.repairs = metric_sum(text, "vaultbundle_drift_repairs_total", kind=kind)
        self.s3 = metric_sum(text, "vaultbundle_s3_requests_total")
        self.op_writes = metric_sum(text, "vaultbundle_kubernetes_writes_total")
        self.kdf = metric_sum(text, "vaultbundle_kdf_derivations_total")
        self.cpu = cpu_seconds(op.pid)
        self.store = stores.operations(kind)
        self.api = api_requests(api)


def delta(kind: str, before: Snapshot, after: Snapshot) -> dict[str, Any]:
    store = after.store - before.store
    api = after.api - before.api
    checks = after.checks - before.checks
    return {
        "seconds": round(after.at - before.at, 2),
        "drift_checks": int(checks),
        "repairs": int(after.repairs - before.repairs),
        "store_requests": sum(store.values()),
        "store_requests_by_operation": dict(sorted(store.items())),
        "store_writes": sum(n for op, n in store.items() if is_write(kind, op)),
        "operator_s3_requests": int(after.s3 - before.s3),
        "operator_kubernetes_writes": int(after.op_writes - before.op_writes),
        "kdf": int(after.kdf - before.kdf),
        "api_requests": sum(api.values()),
        "api_requests_by_kind": dict(sorted(api.items())),
        "operator_cpu_s": round(after.cpu - before.cpu, 3),
    }


def per_check(window: dict[str, Any]) -> dict[str, float | None]:
    checks = window["drift_checks"]
    if not checks:
        return {"store_requests": None, "s3_requests": None, "api_requests": None, "operator_cpu_ms": None}
    return {
        "store_requests": round(window["store_requests"] / checks, 2),
        "s3_requests": round(window["operator_s3_requests"] / checks, 2),
        "api_requests": round(window["api_requests"] / checks, 2),
        "operator_cpu_ms": round(1000 * window["operator_cpu_s"] / checks, 2),
    }


# --- a hand edit per kind, and how to see it repaired ------------------------------------------------------------
def _hand_edit(kind: str, env: dict[str, str], stores: Stores, case: Case, index: int) -> Callable[[], str | None]:
    """Change VALUE of VaultBundle *index*'s target by hand (directly at the store, not through its counter);
    return a reader of the current value."""
    namespace, name, _, _ = case.items[index]
    if kind == "kubernetesSecret":
        patch = {"data": {"VALUE": base64.b64encode(b"edited-by-hand").decode()}}
        case.core.patch_namespaced_secret(f"{name}-env", namespace, patch, field_manager="kubectl-edit")
        return lambda: scale.secret_value(case.core, namespace, f"{name}-env")
    if kind == "awsSecretsManager":
        client = boto3.session.Session().client(
            "secretsmanager",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        secret_id = f"{namespace}/{name}/VALUE"
        client.put_secret_value(SecretId=secret_id, SecretString="edited-by-hand")
        return lambda: str(client.get_secret_value(SecretId=secret_id)["SecretString"])
    if kind == "hashicorpVault":
        vault, path = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"]), f"bench/{namespace}/{name}"

        def data() -> dict[str, Any]:
            read = vault.secrets.kv.v2.read_secret_version(
                path=path, mount_point="secret", raise_on_deleted_version=True
            )
            return dict(read["data"]["data"])

        vault.secrets.kv.v2.create_or_update_secret(
            path=path, mount_point="secret", secret={**data(), "VALUE": "edited-by-hand"}
        )
        return lambda: str(data().get("VALUE"))
    if kind == "gcpSecretManager":
        gcp, secret = make_client(f"127.0.0.1:{stores.gcp.port}"), f"projects/{namespace}/secrets/{name}-VALUE"
        gcp.add_secret_version(parent=secret, payload={"data": b"edited-by-hand"})
        return lambda: str(gcp.access_secret_version(name=f"{secret}/versions/latest").payload.data.decode())
    raise ValueError(kind)


def repair(
    kind: str, env: dict[str, str], api: k8s.ApiClient, stores: Stores, case: Case, op: OperatorProcess, timeout: float
) -> dict[str, Any]:
    """One target edited by hand, the clock runs until the value is back; counters over that interval."""
    index = len(case.items) // 2
    before = Snapshot(op, stores, kind, api)
    started = time.perf_counter()
    read = _hand_edit(kind, env, stores, case, index)
    polls = 0

    def counted() -> str | None:
        nonlocal polls
        polls += 1
        return read()

    took = scale.wait_value(counted, "v1", timeout, started)
    waited = time.perf_counter()  # the repair counter moves after the write (the Event comes first)
    while Snapshot(op, stores, kind, api).repairs == before.repairs and time.perf_counter() - waited < 5:
        time.sleep(0.1)
    after = Snapshot(op, stores, kind, api)
    found = delta(kind, before, after)
    if kind == "gcpSecretManager":  # the in-process fake also counted the bench's own edit and polls
        found["store_writes"] -= 1
        found["store_requests_by_operation"]["AddSecretVersion"] -= 1
        found["store_requests_by_operation"]["AccessSecretVersion"] -= polls
        found["store_requests"] -= 1 + polls
    if kind == "kubernetesSecret":  # the bench polled the Secret through the same apiserver: not the operator's
        found["api_requests"] -= polls
        found["api_requests_by_kind"]["GET secrets"] -= polls
    return {"edit_to_repaired_s": None if took is None else round(took, 2), "bench_polls": polls, **found}


# --- one case ------------------------------------------------------------------------------------------------------
@contextmanager
def bundles_and_operator(
    env: dict[str, str],
    api: k8s.ApiClient,
    n: int,
    targets: Callable[[int, str, str], Any],
    logs: Path,
    label: str,
    extra_args: tuple[str, ...] = (),
    op_env: dict[str, str] | None = None,
    namespace_labels: dict[str, str] | None = None,
    prepare: Callable[[Case], None] | None = None,
) -> Iterator[tuple[Case, OperatorProcess, dict[str, Any]]]:
    """N VaultBundles with *targets*, a fresh operator, all Ready (first-sync figures in the dict); cleaned up."""
    case = Case(env, api, ScaleCase(n, "shared"), REFRESH_S)
    op: OperatorProcess | None = None
    first: dict[str, Any] = {}
    with CryptoPool() as pool:
        try:
            case.setup(pool)
            for namespace in case.namespaces if namespace_labels else ():
                case.core.patch_namespace(namespace, {"metadata": {"labels": namespace_labels}})
            credential_secrets(case, env)
            if prepare is not None:
                prepare(case)
            args = ("--min-drift-check-interval", "1s", *extra_args)
            op = OperatorProcess(env["KUBECONFIG"], logs / f"{label}-{case.run_id}.log", extra_args=args, env=op_env)
            with case.ready_watch() as watcher:
                cpu = cpu_seconds(op.pid)
                started = time.perf_counter()
                case.create_vaultbundles(targets)
                ready_s, reasons, _ = watcher.wait(n, started, 180.0)
                first = {
                    "ready_s": None if ready_s is None else round(ready_s, 2),
                    "ready_reasons": dict(reasons),
                    "operator_cpu_s_to_ready": round(cpu_seconds(op.pid) - cpu, 3),
                }
            if ready_s is None:
                raise RuntimeError(f"{label}: not all Ready in 180 s: {dict(reasons)} (log {op.log})")
            yield case, op, first
        finally:
            if op is not None:
                first["operator_exit_code"] = op.stop()
            case.cleanup()


def measure_kind(
    kind: str,
    env: dict[str, str],
    api: k8s.ApiClient,
    stores: Stores,
    args: argparse.Namespace,
    logs: Path,
    targets: Callable[[int, str, str], Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    say(f"{kind}: {args.n} VaultBundles, check every {args.interval:g} s")
    if args.operator_root:  # another checkout's operator code, in this venv (as bench.first_sync_cpu --base)
        options["op_env"] = {"PYTHONPATH": str(args.operator_root / "operator"), **(options.get("op_env") or {})}
    make = targets or target_for(kind, stores, args.interval, env)
    with bundles_and_operator(env, api, args.n, make, logs, kind, **options) as (case, op, first):
        time.sleep(args.interval * 1.5)  # every target checked at least once: the window is the steady state
        mark, before = scale.audit_mark(env), Snapshot(op, stores, kind, api)
        time.sleep(args.window)
        after = Snapshot(op, stores, kind, api)
        window = delta(kind, before, after)
        writes = scale.audit_writes(env, mark, set(case.namespaces))
        window["api_writes"], window["api_writes_by_kind"] = sum(writes.values()), dict(sorted(writes.items()))
        result: dict[str, Any] = {"kind": kind, "n": args.n, "interval_s": args.interval, **first, "window": window}
        result["per_check"] = per_check(window)
        say(
            f"{kind}: window {window['drift_checks']} checks, store {window['store_requests']}, per check "
            f"{result['per_check']}, API writes {window['api_writes']}"
        )
        if kind != "githubActions" and targets is None:  # GitHub is write-only: its resync rewrites blindly
            result["repair"] = repair(kind, env, api, stores, case, op, timeout=4 * args.interval + 30)
            say(
                f"{kind}: repair {result['repair']['edit_to_repaired_s']} s, store writes "
                f"{result['repair']['store_writes']}"
            )
    return result


def measure_store_ref(
    env: dict[str, str], api: k8s.ApiClient, stores: Stores, args: argparse.Namespace, logs: Path
) -> dict[str, Any]:
    """The same awsSecretsManager checks through a ClusterTargetStore grant (storeRef; the operator's ambient
    identity aimed at the same counting proxy) instead of the tenant's own credentials."""
    custom = k8s.CustomObjectsApi(api)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    store = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClusterTargetStore",
        "metadata": {"name": name},
        "spec": {
            "awsSecretsManager": {"region": "us-east-1", "identity": {"ambient": {}}},
            "conditions": {"namespaceSelector": {"matchLabels": {"bench.vaultbundle.io/store": name}}},
            "scope": {"namePrefix": "tenants/{namespace}/"},
        },
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "clustertargetstores", store)
    ambient = {
        "AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
        "AWS_ENDPOINT_URL": stores.url("awsSecretsManager"),
        "AWS_DEFAULT_REGION": "us-east-1",
    }

    def targets(index: int, namespace: str, bundle: str) -> list[dict[str, Any]]:
        body = {"storeRef": {"name": name}, "namePrefix": f"tenants/{namespace}/{bundle}/"}
        return [{"name": "t", "awsSecretsManager": {**body, "driftCheckInterval": f"{args.interval:g}s"}}]

    try:
        return measure_kind(
            "awsSecretsManager",
            env,
            api,
            stores,
            args,
            logs,
            targets=targets,
            op_env=ambient,
            namespace_labels={"bench.vaultbundle.io/store": name},
        )
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "clustertargetstores", name)


VAULT_POLICY = """
path "secret/data/bench/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/bench/*" { capabilities = ["create", "read", "update"] }
"""


def measure_vault_kubernetes_auth(
    env: dict[str, str], api: k8s.ApiClient, stores: Stores, args: argparse.Namespace, logs: Path
) -> dict[str, Any]:
    """hashicorpVault with Kubernetes auth (a ServiceAccount per namespace, a role bound to them): what a check
    costs when every one logs in with a fresh TokenRequest."""
    root = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"])
    mount, role = env["VAULT_KUBERNETES_AUTH_MOUNT"], f"bench-{uuid.uuid4().hex[:8]}"
    root.sys.create_or_update_policy("vb-bench", VAULT_POLICY)

    def prepare(case: Case) -> None:
        annotations = {"vaultbundle.io/token-audiences": "vault"}
        for namespace in case.namespaces:
            body = {"metadata": {"name": "bench-vault", "annotations": annotations}}
            case.core.create_namespaced_service_account(namespace, body)
        root.auth.kubernetes.create_role(
            role,
            bound_service_account_names=["bench-vault"],
            bound_service_account_namespaces=case.namespaces,
            audience="vault",
            policies=["vb-bench"],
            ttl="10m",
            mount_point=mount,
        )

    def targets(index: int, namespace: str, name: str) -> list[dict[str, Any]]:
        auth = {"kubernetes": {"role": role, "mount": mount, "serviceAccountName": "bench-vault"}}
        body = {"address": stores.url("hashicorpVault"), "mount": "secret", "path": f"bench/{namespace}/{name}"}
        return [{"name": "t", "hashicorpVault": {**body, "auth": auth, "driftCheckInterval": f"{args.interval:g}s"}}]

    try:
        return measure_kind("hashicorpVault", env, api, stores, args, logs, targets=targets, prepare=prepare)
    finally:
        root.auth.kubernetes.delete_role(role, mount_point=mount)


def measure_fairness(env: dict[str, str], api: k8s.ApiClient, n: int, repeats: int, logs: Path) -> dict[str, Any]:
    """First sync of N kubernetesSecret VaultBundles with per-namespace fairness on (default) and off,
    alternating (on, off; off, on; ...)."""
    settings = {"on": (), "off": ("--max-concurrent-per-namespace", "16")}
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    order = ["on", "off"]
    for repeat in range(repeats):
        for setting in order if repeat % 2 == 0 else order[::-1]:
            say(f"fairness {setting}: {n} first syncs (run {repeat + 1}/{repeats})")
            make = target_for("kubernetesSecret", None, 0, env)  # type: ignore[arg-type]
            with bundles_and_operator(env, api, n, make, logs, f"fair-{setting}", extra_args=settings[setting]) as (
                _,
                _,
                first,
            ):
                runs[setting].append(first)
    return {
        setting: {
            "flags": list(settings[setting]),
            "runs": found,
            "ready_s": sorted(r["ready_s"] for r in found),
            "operator_cpu_ms_per_bundle": sorted(round(1000 * r["operator_cpu_s_to_ready"] / n, 2) for r in found),
        }
        for setting, found in runs.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drift_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--interval", type=float, default=5.0, help="driftCheckInterval / resyncInterval (s)")
    parser.add_argument("--window", type=float, default=30.0, help="idle window (s)")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument("--skip-store-ref", action="store_true")
    parser.add_argument("--vault-kubernetes-auth", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--fairness-n", type=int, default=100, help="0: skip the fairness comparison")
    parser.add_argument("--fairness-repeats", type=int, default=2)
    parser.add_argument("--name", default="drift_cost")
    parser.add_argument("--load-note", default="")
    parser.add_argument("--operator-root", type=Path, help="run the operator of this checkout (its operator/)")
    parser.add_argument(
        "--testbed-env", type=Path, default=Path(os.environ.get("VAULTBUNDLE_TESTBED_ENV", ".testbed/env"))
    )
    parser.add_argument(
        "--report",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="only print the tables of a result (and of a base run's, second)",
    )
    args = parser.parse_args(argv)
    if args.report:
        loaded = [json.loads(path.read_text()) for path in args.report]
        print(markdown(loaded[0], loaded[1] if len(loaded) > 1 else None), end="")
        return 0
    require_matplotlib()
    try:
        env, api = scale.connect(args.testbed_env)
    except TestBedDown as exc:
        print(f"bench: test bed is down: {exc}", file=sys.stderr)
        return 2
    scale.install_crds(env)
    logs = Path(tempfile.mkdtemp(prefix="vaultbundle-drift-cost-"))
    result: dict[str, Any] = {"machine": machine_info(args.load_note), "logs_dir": str(logs), "kinds": {}}
    result["operator_root"], result["n"] = str(args.operator_root or scale.REPO), args.n
    result["interval_s"], result["window_s"] = args.interval, args.window
    stores = Stores(env)
    try:
        with LoadSampler() as load:
            for kind in args.kinds:
                result["kinds"][kind] = measure_kind(kind, env, api, stores, args, logs)
            if args.vault_kubernetes_auth:
                result["vault_kubernetes_auth"] = measure_vault_kubernetes_auth(env, api, stores, args, logs)
            if not args.skip_store_ref:
                result["store_ref"] = measure_store_ref(env, api, stores, args, logs)
            if args.fairness_n:
                result["fairness"] = measure_fairness(env, api, args.fairness_n, args.fairness_repeats, logs)
        result["load"] = load.summary()
    finally:
        stores.close()
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / f"{args.name}.png")
    (RESULTS / f"{args.name}.md").write_text(markdown(result))
    say(f"wrote {out} and .png")
    return 0


def markdown(result: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    """The tables of bench/README.md from a result (and the Vault Kubernetes-auth row of a *base* run)."""

    def fmt(value: Any) -> str:
        return "–" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    rows = [
        "| target kind (N = {n}, check every {i:g} s) | checks in {w:g} s | store requests / check | "
        "S3 / check | API requests / check | operator CPU / check (ms) | API writes | repair: edit → back (s), store "
        "writes |".format(n=result["n"], i=result["interval_s"], w=result["window_s"]),
        "|---|---|---|---|---|---|---|---|",
    ]
    entries = [(kind, entry) for kind, entry in result["kinds"].items()]
    if base and "vault_kubernetes_auth" in base:
        entries.append(("hashicorpVault, Kubernetes auth, before (main)", base["vault_kubernetes_auth"]))
    if "vault_kubernetes_auth" in result:
        entries.append(("hashicorpVault, Kubernetes auth", result["vault_kubernetes_auth"]))
    if "store_ref" in result:
        entries.append(("awsSecretsManager via ClusterTargetStore (storeRef)", result["store_ref"]))
    for kind, entry in entries:
        window, each, fixed = entry["window"], entry["per_check"], entry.get("repair")
        repaired = f"{fmt(fixed['edit_to_repaired_s'])}, {fixed['store_writes']}" if fixed else "–"
        rows.append(
            f"| {kind} | {window['drift_checks']} | {fmt(each['store_requests'])} | {fmt(each['s3_requests'])} | "
            f"{fmt(each['api_requests'])} | {fmt(each['operator_cpu_ms'])} | {window['api_writes']} | {repaired} |"
        )
    fairness = result.get("fairness")
    if fairness:
        rows += [
            "",
            "| per-namespace fairness | Ready (s), runs | operator CPU per first sync (ms), runs |",
            "|---|---|---|",
        ]
        for setting, found in fairness.items():
            rows.append(
                f"| {setting} {' '.join(found['flags'])} | {found['ready_s']} | {found['operator_cpu_ms_per_bundle']} |"
            )
    return "\n".join(rows) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional dependency, checked by require_matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    kinds = {k: v for k, v in result["kinds"].items() if v["per_check"]["store_requests"] is not None}
    if "vault_kubernetes_auth" in result:
        kinds["vault, k8s auth"] = result["vault_kubernetes_auth"]
    if "store_ref" in result:
        kinds["aws via storeRef"] = result["store_ref"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    names = list(kinds)
    for ax, field, label in (
        (axes[0], "store_requests", "store requests per check"),
        (axes[1], "operator_cpu_ms", "operator CPU per check (ms)"),
    ):
        ax.bar(names, [kinds[k]["per_check"][field] for k in names], color="#48c")
        ax.set_ylabel(label)
        ax.tick_params(axis="x", rotation=20, labelsize=8)
    load = (result.get("load") or {}).get("loadavg_1m") or {}
    figure.suptitle(
        f"drift check cost, N={result['n']} VaultBundles per kind; load avg 1m median {load.get('median')}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    raise SystemExit(main())
