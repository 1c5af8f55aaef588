"""External Secrets Operator (ESO) on the test bed, the peer of bench/peer.py: its build, its process, its workload.

The controller is built from the Go module proxy by ``e2e/build/build-eso.sh`` into the test-bed cache (never
into the repo), with the same progress output as the bed's own builds. It runs outside the cluster with the
bed's kubeconfig: no leader election, metrics and health on loopback ports, no webhook or cert-controller (the
controller command starts neither). Its AWS provider talks to moto through ``AWS_SECRETSMANAGER_ENDPOINT``
(the variable ESO's ``pkg/provider/aws/secretsmanager/resolver.go`` reads).

The workload mirrors scale.Case: N secrets of 3 keys (BENCH_NAME, VALUE, OTHER), 10 namespaces; here N AWS
Secrets Manager JSON secrets, one ClusterSecretStore (static keys in a Secret), N ExternalSecrets with
``dataFrom.extract`` into N Secrets ``<name>-env``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
from e2e.testbed.artifacts import ensure_artifacts, eso_artifact
from e2e.testbed.config import ESO_VERSION, Binaries, cache_dir
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .operator_proc import ServerProcess, free_port, http_get, metric_sum
from .readiness import ReadyWatch
from .scale import RUN_LABEL, parallel, secret_value, wait_value

GROUP, VERSION = "external-secrets.io", "v1"
PROVIDER_CALLS = "externalsecret_provider_api_calls_count"


def build(say: Callable[[str], None]) -> Binaries:
    """Build ESO into the cache unless it is there (idempotent; progress lines at least every 15 s)."""
    binaries = Binaries(cache_dir())
    timings = ensure_artifacts(binaries, binaries.cache / ".logs", say, wanted=[eso_artifact(binaries)])
    if timings:
        say(f"built External Secrets Operator {ESO_VERSION} in {timings['eso']:.0f} s")
    return binaries


def install_crds(env: dict[str, str], binaries: Binaries) -> None:
    kubectl = [env["KUBECTL"], "--kubeconfig", env["KUBECONFIG"]]
    subprocess.run(
        [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(binaries.eso_crds)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for plural in ("externalsecrets", "clustersecretstores"):
        subprocess.run(
            [*kubectl, "wait", "--for=condition=Established", f"crd/{plural}.{GROUP}", "--timeout=60s"],
            check=True,
            stdout=subprocess.DEVNULL,
        )


def _controller_started(metrics_url: str) -> bool:
    """controller-runtime sets this gauge when the ExternalSecret controller's workers start (caches synced)."""
    return 'controller_runtime_max_concurrent_reconciles{controller="externalsecret"}' in http_get(metrics_url)


class EsoProcess(ServerProcess):
    """``external-secrets`` (the controller command) against the test bed; *extra_args* are tuning flags."""

    def __init__(self, binary: Path, env: dict[str, str], log: Path, extra_args: Sequence[str] = ()) -> None:
        metrics_port, live_port = free_port(), free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        command = [
            str(binary),
            "--enable-leader-election=false",
            f"--metrics-addr=127.0.0.1:{metrics_port}",
            f"--live-addr=127.0.0.1:{live_port}",
            "--loglevel=info",
            *extra_args,
        ]
        super().__init__(
            command,
            log,
            metrics_url=metrics_url,
            ready=lambda: (
                http_get(f"http://127.0.0.1:{live_port}/healthz") == "ok" and _controller_started(metrics_url)
            ),
            env={
                "KUBECONFIG": env["KUBECONFIG"],
                "AWS_SECRETSMANAGER_ENDPOINT": env["AWS_ENDPOINT_URL"],
                "AWS_EC2_METADATA_DISABLED": "true",
            },
            ready_timeout=180.0,
        )


class EsoCase:
    """N Secrets Manager secrets → one ClusterSecretStore → N ExternalSecrets → N Secrets."""

    plural = "externalsecrets"
    cluster_groups = frozenset({GROUP})  # the ClusterSecretStore's status writes are cluster-scoped

    def __init__(self, env: dict[str, str], api: k8s.ApiClient, n: int, refresh_s: float) -> None:
        self.env, self.api, self.n, self.refresh_s = env, api, n, refresh_s
        self.core, self.custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        self.run_id = f"eso{n}-{secrets.token_hex(3)}"
        self.namespaces = [f"vbb-{self.run_id}-{i}" for i in range(min(10, n))]
        self.selector = f"{RUN_LABEL}={self.run_id}"
        self.store = f"bench-{self.run_id}"
        # (namespace, name, Secrets Manager secret name)
        self.items = [
            (self.namespaces[j % len(self.namespaces)], f"b{j:05d}", f"bench/{self.run_id}/b{j:05d}") for j in range(n)
        ]
        self.sm = boto3.session.Session().client(
            "secretsmanager",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    @staticmethod
    def _value(name: str, value: str) -> str:
        return json.dumps({"BENCH_NAME": name, "VALUE": value, "OTHER": "unchanged"})

    def setup(self) -> dict[str, float]:
        started = time.perf_counter()
        parallel(lambda item: self.sm.create_secret(Name=item[2], SecretString=self._value(item[1], "v1")), self.items)
        pushed = time.perf_counter()
        labels = {RUN_LABEL: self.run_id}
        parallel(lambda ns: self.core.create_namespace({"metadata": {"name": ns, "labels": labels}}), self.namespaces)
        creds_ns = self.namespaces[0]
        self.core.create_namespaced_secret(
            creds_ns,
            {
                "metadata": {"name": "bench-aws"},
                "stringData": {"id": self.env["AWS_ACCESS_KEY_ID"], "secret": self.env["AWS_SECRET_ACCESS_KEY"]},
            },
        )
        ref = {"name": "bench-aws", "namespace": creds_ns}
        store = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterSecretStore",
            "metadata": {"name": self.store, "labels": labels},
            "spec": {
                "provider": {
                    "aws": {
                        "service": "SecretsManager",
                        "region": "us-east-1",
                        "auth": {
                            "secretRef": {
                                "accessKeyIDSecretRef": {**ref, "key": "id"},
                                "secretAccessKeySecretRef": {**ref, "key": "secret"},
                            }
                        },
                    }
                }
            },
        }
        self.custom.create_cluster_custom_object(GROUP, VERSION, "clustersecretstores", store)
        return {"push_s": round(pushed - started, 2), "secrets_s": round(time.perf_counter() - pushed, 2)}

    def wait_store_ready(self, timeout: float = 120.0) -> float:
        """The store is validated once ESO runs; the clock starts after that, as ours needs no store."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            store = self.custom.get_cluster_custom_object(GROUP, VERSION, "clustersecretstores", self.store)
            conditions = (store.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                return time.perf_counter() - started
            time.sleep(0.5)
        raise RuntimeError(f"ClusterSecretStore {self.store} not Ready within {timeout:.0f}s")

    def create(self) -> float:
        started = time.perf_counter()

        def create(item: tuple[str, str, str]) -> None:
            namespace, name, key = item
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ExternalSecret",
                "metadata": {"name": name, "labels": {RUN_LABEL: self.run_id}},
                "spec": {
                    "refreshInterval": f"{self.refresh_s:g}s",
                    "secretStoreRef": {"kind": "ClusterSecretStore", "name": self.store},
                    "target": {"name": f"{name}-env", "creationPolicy": "Owner"},
                    "dataFrom": [{"extract": {"key": key}}],
                },
            }
            self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, self.plural, body)

        parallel(create, self.items)
        return time.perf_counter() - started

    def ready_watch(self) -> ReadyWatch:
        return ReadyWatch(self.api, GROUP, VERSION, self.plural, self.selector)

    def change(self, index: int, value: str) -> None:
        _, name, key = self.items[index]
        self.sm.put_secret_value(SecretId=key, SecretString=self._value(name, value))

    def force_sync(self, index: int, token: str) -> None:
        namespace, name, _ = self.items[index]
        patch = {"metadata": {"annotations": {"force-sync": token}}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, self.plural, name, patch)

    def wait_value(self, index: int, value: str, timeout: float, started: float | None = None) -> float | None:
        namespace, name, _ = self.items[index]
        return wait_value(lambda: secret_value(self.core, namespace, f"{name}-env"), value, timeout, started)

    @staticmethod
    def provider_requests(metrics: str) -> float:
        return metric_sum(metrics, PROVIDER_CALLS)

    def cleanup(self, timeout: float = 180.0) -> dict[str, Any]:
        started = time.perf_counter()
        for namespace in self.namespaces:
            try:
                self.core.delete_namespace(namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        remaining = set(self.namespaces)
        while remaining and time.perf_counter() - started < timeout:
            listed = self.core.list_namespace(label_selector=self.selector)
            remaining = {ns.metadata.name for ns in listed.items}
            if remaining:
                time.sleep(1)
        try:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", self.store)
        except ApiException as exc:
            if exc.status != 404:
                raise
        parallel(lambda item: self.sm.delete_secret(SecretId=item[2], ForceDeleteWithoutRecovery=True), self.items)
        return {"namespaces_left": sorted(remaining), "cleanup_s": round(time.perf_counter() - started, 1)}
