"""The operator as a local process against the real kube-apiserver (+ controller-manager) and real S3.

Each test drives a scenario from the operator issue's "done means" and checks the outcome where a user
would: the Secret, the VaultBundle's status and conditions, Events, and the operator's and the apiserver's
own request metrics.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from tests.conftest import REPO
from tests.e2e.helpers import http_get, metric_sum, secret_data, secrets_manager, wait_for

from vaultbundle import bundles
from vaultbundle.bundles import Layout
from vaultbundle.crypto import configblob
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.pool import CryptoPool
from vaultbundle.remote import S3Objects

pytestmark = pytest.mark.testbed
PASSPHRASE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
ROTATED = "rotated-passphrase-0123456789"
CANARY = "CANARY-" + uuid.uuid4().hex  # must reach the Secret and nothing else


@dataclass
class Operator:
    log: Path
    port: int

    def metric(self, name: str, **labels: str) -> float:
        return metric_sum(http_get(f"http://127.0.0.1:{self.port}/metrics"), name, **labels)


def kubectl(testbed: dict[str, str], *args: str) -> None:
    subprocess.run([testbed["KUBECTL"], "--kubeconfig", testbed["KUBECONFIG"], *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def kube(testbed: dict[str, str]) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=testbed["KUBECONFIG"])


def start_operator(
    testbed: dict[str, str], log: Path, *extra: str, allow_local: bool = True, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """An operator process on the test bed (all namespaces unless *extra* names some); returns once /readyz answers.
    *allow_local*: pass `--egress-allow-local` (the test bed's S3 and stores listen on loopback).
    *env*: extra environment (e.g. an ambient cloud identity for the operator)."""
    scope = [] if "--namespace" in extra else ["--all-namespaces"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "vaultbundle.cli",
        "run",
        *scope,
        "--kubeconfig",
        testbed["KUBECONFIG"],
        "--min-refresh-interval",
        "1s",
        "--workers",
        "1",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        "--verbose",
        *(["--egress-allow-local"] if allow_local else []),
        *extra,
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        )
    wait_for(lambda: http_get(f"http://127.0.0.1:{port}/readyz") == "ready\n", "the operator's /readyz", timeout=60)
    return process, port


def stop_operator(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM; the operator must exit 0, and no secret value may be in its (debug-level) log."""
    process.terminate()
    try:
        assert process.wait(20) == 0, "the operator did not shut down cleanly on SIGTERM"
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the operator ignored SIGTERM for 20s")
    text = log.read_text(errors="replace")
    for secret in (PASSPHRASE, ROTATED, CANARY):
        assert secret not in text, "a secret value appeared in the operator log (verbose level)"


@pytest.fixture(scope="module")
def operator(testbed: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    kubectl(testbed, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(testbed, "wait", "--for=condition=Established", "crd/vaultbundles.vaultbundle.io", "--timeout=30s")
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process, port = start_operator(testbed, log)
    try:
        assert http_get(f"http://127.0.0.1:{port}/healthz") == "ok\n"
        yield Operator(log, port)
    finally:
        stop_operator(process, log)


class Scenario:
    """A namespace, a bucket, the two source Secrets and helpers to push bundles and read results."""

    def __init__(self, testbed: dict[str, str], kube: k8s.ApiClient) -> None:
        self.testbed = testbed
        self.api = kube
        self.core, self.custom = k8s.CoreV1Api(kube), k8s.CustomObjectsApi(kube)
        self.ns = f"vb-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace({"metadata": {"name": self.ns}})
        endpoint = testbed["AWS_ENDPOINT_URL"]
        self.s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=testbed["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=testbed["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}),
        )
        self.bucket = self.ns
        self.s3.create_bucket(Bucket=self.bucket)
        self.config = BootstrapConfig(
            endpoint=endpoint,
            region="us-east-1",
            bucket=self.bucket,
            access_key_id=testbed["AWS_ACCESS_KEY_ID"],
            secret_access_key=testbed["AWS_SECRET_ACCESS_KEY"],
            prefix="web/prod/",
            env="prod",
            salt="NvTGExRJ8+Kn8dwdXrPv0w",
            iterations=600_000,
        )
        self.pool = CryptoPool(workers=0)
        self.secret("web-vsync", {"config": configblob.encode(self.config) + "\n"})
        self.secret("web-passphrase", {"passphrase": PASSPHRASE})

    def secret(self, name: str, data: dict[str, str], *, replace: bool = False) -> None:
        body = {"metadata": {"name": name}, "stringData": data}
        if replace:
            self.core.replace_namespaced_secret(name, self.ns, body)
        else:
            self.core.create_namespaced_secret(self.ns, body)

    def push(self, files: dict[str, bytes], passphrase: str = PASSPHRASE) -> str:
        pointer = bundles.push(S3Objects(self.config), self.config, passphrase, self.pool, files, layout=Layout.CLI)
        return pointer.timestamp

    def apply(self, name: str, target: dict[str, Any], source: dict[str, Any] | None = None, **spec: Any) -> None:
        refs = {"configSecretRef": {"name": "web-vsync"}, "passphraseSecretRef": {"name": "web-passphrase"}}
        body = {
            "apiVersion": "vaultbundle.io/v1alpha1",
            "kind": "VaultBundle",
            "metadata": {"name": name},
            "spec": {
                "source": {**refs, **(source or {})},
                "refreshInterval": "1s",
                "targets": [{"name": "app", "kubernetesSecret": target}],
                **spec,
            },
        }
        self.custom.create_namespaced_custom_object("vaultbundle.io", "v1alpha1", self.ns, "vaultbundles", body)

    def vb(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "vaultbundle.io", "v1alpha1", self.ns, "vaultbundles", name
        )
        return result

    def condition(self, name: str, kind: str = "Ready") -> dict[str, Any]:
        return next((c for c in self.vb(name).get("status", {}).get("conditions", []) if c["type"] == kind), {})

    def reason(self, name: str) -> str:
        return str(self.condition(name).get("reason", ""))

    def data(self, name: str) -> dict[str, str] | None:
        return secret_data(self.core, self.ns, name)

    def events(self) -> list[tuple[str, str, str]]:
        items = self.core.list_namespaced_event(self.ns).items
        return [(e.type, e.reason, e.message) for e in items]

    def api_writes(self) -> int:
        """Write requests the apiserver served in this namespace, from its audit log (metadata only)."""
        count = 0
        with open(self.testbed["KUBE_AUDIT_LOG"], encoding="utf-8") as log:
            for line in log:
                entry = json.loads(line)
                if entry.get("stage") == "ResponseComplete" and entry["objectRef"].get("namespace") == self.ns:
                    count += 1
        return count


@pytest.fixture
def scenario(testbed: dict[str, str], kube: k8s.ApiClient, operator: Operator) -> Iterator[Scenario]:
    made = Scenario(testbed, kube)
    yield made
    for status in (
        str(made.vb(vb["metadata"]["name"]).get("status"))
        for vb in made.custom.list_namespaced_custom_object("vaultbundle.io", "v1alpha1", made.ns, "vaultbundles")[
            "items"
        ]
    ):
        assert CANARY not in status and PASSPHRASE not in status
    assert not any(CANARY in message or PASSPHRASE in message for _, _, message in made.events())
    exposed = http_get(f"http://127.0.0.1:{operator.port}/metrics")
    assert "vaultbundle_syncs_total" in exposed and CANARY not in exposed and PASSPHRASE not in exposed
    made.core.delete_namespace(made.ns)


def test_sync_idle_update_prune_and_refusals(scenario: Scenario, operator: Operator, testbed: dict[str, str]) -> None:
    from e2e.faults import FaultProxy

    counter = FaultProxy(testbed["AWS_ENDPOINT_URL"])  # pass-through: counts this VaultBundle's S3 requests exactly
    via_counter = BootstrapConfig(**{**scenario.config.__dict__, "endpoint": counter.url})
    scenario.secret("web-vsync", {"config": configblob.encode(via_counter)}, replace=True)
    first = scenario.push(
        {".env.prod": f'DB_URL="postgres://db/app"\nAPI_KEY={CANARY}\nOLD=1\n'.encode(), "tls/ca.pem": b"CA"}
    )
    scenario.apply("web", {"name": "web-env", "files": {"include": ["*"]}})
    expected = {"DB_URL": "postgres://db/app", "API_KEY": CANARY, "OLD": "1", "tls_ca.pem": "CA"}
    wait_for(lambda: scenario.data("web-env") == expected, "the Secret to hold exactly the bundle's keys")
    wait_for(lambda: scenario.reason("web") == "Synced", "Ready=Synced")
    status = scenario.vb("web")["status"]
    assert status["bundle"]["timestamp"] == first and status["bundle"]["layout"] == "cli"
    assert status["bundle"]["digest"].startswith("hmac-sha256:")
    assert status["targets"][0]["state"] == "Synced" and status["targets"][0]["keys"] == 4
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Verified": "True",
        "Synced": "True",
    }
    secret = scenario.core.read_namespaced_secret("web-env", scenario.ns)
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "vaultbundle"
    assert secret.metadata.annotations["vaultbundle.io/content-digest"].startswith("hmac-sha256:")
    wait_for(lambda: ("Normal", "Applied") in {(t, r) for t, r, _ in scenario.events()}, "a Normal Applied Event")

    # idle: refresh cycles (1s ± 10% jitter) with nothing changed: no API writes (the apiserver's audit log), no
    # KDF, and one small S3 request per cycle (counted by the pass-through proxy, for this VaultBundle only)
    time.sleep(1.5)
    writes, kdf = scenario.api_writes(), operator.metric("vaultbundle_kdf_derivations_total")
    requests, idle = counter.requests, operator.metric("vaultbundle_syncs_total", result="Idle")
    events = len(scenario.events())
    time.sleep(5)
    assert operator.metric("vaultbundle_syncs_total", result="Idle") - idle >= 3
    assert writes > 0 and scenario.api_writes() == writes and len(scenario.events()) == events
    assert operator.metric("vaultbundle_kdf_derivations_total") == kdf
    assert 3 <= counter.requests - requests <= 7  # 5 s / (1 s - 10%) cycles at most, one request each

    # no finalizer is ever added; the force-sync annotation triggers a full cycle at once
    assert not scenario.vb("web")["metadata"].get("finalizers")
    synced = operator.metric("vaultbundle_syncs_total", result="Synced")
    scenario.custom.patch_namespaced_custom_object(
        "vaultbundle.io",
        "v1alpha1",
        scenario.ns,
        "vaultbundles",
        "web",
        {"metadata": {"annotations": {"vaultbundle.io/force-sync": "now"}}},
    )
    wait_for(lambda: operator.metric("vaultbundle_syncs_total", result="Synced") > synced, "a forced full sync", 5)

    # a new bundle propagates and a key that left it is pruned
    second = scenario.push(
        {".env.prod": f"API_KEY={CANARY}-2\nDB_URL=postgres://db/app\n".encode(), "tls/ca.pem": b"CA"}
    )
    started = time.monotonic()
    wait_for(
        lambda: (
            scenario.data("web-env") == {"API_KEY": f"{CANARY}-2", "DB_URL": "postgres://db/app", "tls_ca.pem": "CA"}
        ),
        "the new bundle, OLD pruned",
    )
    assert time.monotonic() - started < 5
    wait_for(lambda: scenario.vb("web")["status"].get("lastAppliedTimestamp") == second, "the new floor")
    current = scenario.data("web-env")

    # pointer moved back to the first bundle: refused with a Warning Event, Secret untouched
    scenario.s3.put_object(Bucket=scenario.bucket, Key="web/prod/latest", Body=first.encode())
    wait_for(lambda: scenario.reason("web") == "RollbackRefused", "RollbackRefused")
    assert scenario.condition("web", "Verified")["status"] == "False" and scenario.data("web-env") == current
    wait_for(
        lambda: ("Warning", "RollbackRefused") in {(t, r) for t, r, _ in scenario.events()},
        "a Warning RollbackRefused Event",
    )

    # tampered: the old bundle copied under the new name, pointer at the new name -> the sealed timestamp differs
    old = scenario.s3.get_object(Bucket=scenario.bucket, Key=f"web/prod/versions/{first}.enc")["Body"].read()
    fake = "29991231-235959"
    scenario.s3.put_object(Bucket=scenario.bucket, Key=f"web/prod/versions/{fake}.enc", Body=old)
    scenario.s3.put_object(Bucket=scenario.bucket, Key="web/prod/latest", Body=fake.encode())
    wait_for(lambda: scenario.reason("web") == "BundleCorrupt", "BundleCorrupt (sealed timestamp mismatch)")
    assert "sealed timestamp" in scenario.condition("web")["message"] and scenario.data("web-env") == current
    flipped = bytearray(old)
    flipped[40] ^= 1
    scenario.s3.put_object(Bucket=scenario.bucket, Key=f"web/prod/versions/{fake}.enc", Body=bytes(flipped))
    wait_for(lambda: scenario.reason("web") == "WrongPassphrase", "a failed tag on a flipped byte")
    assert scenario.data("web-env") == current

    # a bundle sealed for another environment, swapped into this prefix with a matching pointer: refused
    key = scenario.pool.derive(PASSPHRASE, scenario.config.salt, scenario.config.iterations)
    swapped = bundles.seal_bundle(
        key, Layout.CLI, fake, {".env.staging": b"API_KEY=staging\n"}, folder="infra/vault/staging"
    )
    scenario.s3.put_object(Bucket=scenario.bucket, Key=f"web/prod/versions/{fake}.enc", Body=swapped)
    wait_for(lambda: scenario.reason("web") == "BundleFormat", "refusal of another environment's bundle")
    assert scenario.data("web-env") == current

    # fixing the cause recovers without a restart
    scenario.s3.put_object(Bucket=scenario.bucket, Key="web/prod/latest", Body=second.encode())
    wait_for(lambda: scenario.reason("web") == "Synced", "recovery")

    # the passphrase Secret changes to a wrong one: reported at once, nothing written
    scenario.secret("web-passphrase", {"passphrase": "not-the-passphrase"}, replace=True)
    wait_for(lambda: scenario.reason("web") == "WrongPassphrase", "WrongPassphrase", timeout=20)
    assert scenario.data("web-env") == current

    # passphrase rotation: a bundle sealed with the new passphrase plus the updated Secret converge
    scenario.push({".env.prod": b"API_KEY=rotated\n"}, passphrase=ROTATED)
    scenario.secret("web-passphrase", {"passphrase": ROTATED}, replace=True)
    wait_for(lambda: scenario.data("web-env") == {"API_KEY": "rotated"}, "convergence after rotation")
    wait_for(lambda: scenario.reason("web") == "Synced", "Synced after rotation")
    counter.close()


def test_missing_and_cross_namespace_sources(scenario: Scenario) -> None:
    scenario.push({".env.prod": b"A=1\n"})
    scenario.apply(
        "cross", {"name": "cross-env"}, source={"configSecretRef": {"name": "web-vsync", "namespace": "kube-system"}}
    )
    scenario.apply("missing", {"name": "missing-env"}, source={"configSecretRef": {"name": "not-there"}})
    wait_for(lambda: scenario.reason("cross") == "CrossNamespaceReference", "CrossNamespaceReference")
    assert "kube-system" in scenario.condition("cross")["message"] and scenario.data("cross-env") is None
    wait_for(lambda: scenario.reason("missing") == "SecretNotFound", "SecretNotFound")
    wait_for(
        lambda: ("Warning", "SecretNotFound") in {(t, r) for t, r, _ in scenario.events()},
        "a Warning SecretNotFound Event",
    )
    scenario.secret("not-there", {"config": configblob.encode(scenario.config)})
    wait_for(lambda: scenario.data("missing-env") == {"A": "1"}, "recovery once the Secret exists", timeout=20)


def test_ownership_adopt_dry_run_and_garbage_collection(scenario: Scenario) -> None:
    scenario.push({".env.prod": b"A=1\nB=2\n"})
    scenario.secret("precious", {"keep": "me"})
    scenario.apply("taker", {"name": "precious"})
    wait_for(lambda: scenario.reason("taker") == "TargetFailed", "TargetFailed")
    target = scenario.vb("taker")["status"]["targets"][0]
    assert (target["state"], target["reason"]) == ("Failed", "SecretNotOwned")
    assert scenario.data("precious") == {"keep": "me"}

    scenario.apply("planner", {"name": "planned"}, dryRun=True)
    wait_for(lambda: scenario.reason("planner") == "DryRun", "DryRun")
    plan = scenario.vb("planner")["status"]["targets"][0]["plan"]
    assert sorted(plan["create"]) == ["A", "B"] and scenario.data("planned") is None

    scenario.apply("owner", {"name": "owned", "deletionPolicy": "Delete"})
    wait_for(lambda: scenario.data("owned") == {"A": "1", "B": "2"}, "the owned Secret")
    scenario.custom.delete_namespaced_custom_object("vaultbundle.io", "v1alpha1", scenario.ns, "vaultbundles", "owner")
    wait_for(lambda: scenario.data("owned") is None, "garbage collection of the owned Secret", timeout=60)

    scenario.custom.patch_namespaced_custom_object(
        "vaultbundle.io",
        "v1alpha1",
        scenario.ns,
        "vaultbundles",
        "taker",
        {"spec": {"targets": [{"name": "app", "kubernetesSecret": {"name": "precious", "adopt": True}}]}},
    )
    # adopt: true alone is not enough: the Secret must opt in, written by someone who may write it
    wait_for(
        lambda: "vaultbundle.io/adopt=taker" in scenario.vb("taker")["status"]["targets"][0]["message"],
        "refusal of a Secret that does not opt in",
    )
    assert scenario.data("precious") == {"keep": "me"}
    scenario.core.patch_namespaced_secret(
        "precious", scenario.ns, {"metadata": {"annotations": {"vaultbundle.io/adopt": "taker"}}}
    )
    wait_for(
        lambda: scenario.data("precious") == {"keep": "me", "A": "1", "B": "2"},
        "adoption that keeps the keys someone else wrote",
    )
    scenario.custom.patch_namespaced_custom_object(  # a second VaultBundle may not take the first one's Secret
        "vaultbundle.io",
        "v1alpha1",
        scenario.ns,
        "vaultbundles",
        "planner",
        {
            "spec": {
                "dryRun": False,
                "targets": [{"name": "app", "kubernetesSecret": {"name": "precious", "adopt": True}}],
            }
        },
    )
    wait_for(lambda: scenario.reason("planner") == "TargetFailed", "refusal to take another VaultBundle's Secret")
    assert "managed by another VaultBundle" in scenario.vb("planner")["status"]["targets"][0]["message"]

    # deletionPolicy Retain (the default): deleting the VaultBundle leaves its Secret with its data
    scenario.custom.delete_namespaced_custom_object("vaultbundle.io", "v1alpha1", scenario.ns, "vaultbundles", "taker")
    time.sleep(3)
    assert scenario.data("precious") == {"keep": "me", "A": "1", "B": "2"}


def test_adopt_never_takes_source_secrets_or_helm_releases(scenario: Scenario) -> None:
    """M1: VaultBundle b adopting a's passphrase Secret would point a at b's bucket; a Helm release Secret would be
    rendered by the next `helm rollback`. Both are refused even when annotated for adoption."""
    scenario.push({".env.prod": b"A=1\n"})
    scenario.apply("victim", {"name": "victim-env"})
    wait_for(lambda: scenario.data("victim-env") == {"A": "1"}, "the victim's Secret")
    scenario.secret("h-vsync", {"config": configblob.encode(scenario.config)})
    scenario.secret("h-passphrase", {"passphrase": PASSPHRASE})
    opt_in = {"metadata": {"annotations": {"vaultbundle.io/adopt": "hijacker"}}}
    scenario.core.patch_namespaced_secret("web-passphrase", scenario.ns, opt_in)
    own_sources = {"configSecretRef": {"name": "h-vsync"}, "passphraseSecretRef": {"name": "h-passphrase"}}
    scenario.apply("hijacker", {"name": "web-passphrase", "adopt": True}, source=own_sources)
    wait_for(lambda: scenario.reason("hijacker") == "TargetFailed", "refusal to adopt a source Secret")
    target = scenario.vb("hijacker")["status"]["targets"][0]
    assert target["reason"] == "SecretNotOwned" and "source Secret" in target["message"]
    assert scenario.data("web-passphrase") == {"passphrase": PASSPHRASE}

    release = "sh.helm.release.v1.app.v1"
    body = {"metadata": {"name": release, **opt_in["metadata"]}, "type": "helm.sh/release.v1", "stringData": {"r": "x"}}
    scenario.core.create_namespaced_secret(scenario.ns, body)
    scenario.custom.patch_namespaced_custom_object(
        "vaultbundle.io",
        "v1alpha1",
        scenario.ns,
        "vaultbundles",
        "hijacker",
        {"spec": {"targets": [{"name": "app", "kubernetesSecret": {"name": release, "adopt": True}}]}},
    )
    wait_for(
        lambda: "helm.sh/release.v1" in scenario.vb("hijacker")["status"]["targets"][0].get("message", ""),
        "refusal to adopt a Helm release Secret",
    )
    assert scenario.data(release) == {"r": "x"}
    assert scenario.reason("victim") == "Synced" and scenario.data("victim-env") == {"A": "1"}


def test_cli_plan_then_sync_without_an_operator(testbed: dict[str, str], kube: k8s.ApiClient, tmp_path: Path) -> None:
    """`vaultbundle plan` shows names only and writes nothing; `vaultbundle sync` applies once, then is a no-op."""
    made = Scenario(testbed, kube)
    try:
        made.push({".env.prod": f"TOKEN={CANARY}\nMODE=ci\n".encode()})
        manifest = tmp_path / "vb.yaml"
        manifest.write_text(
            json.dumps(
                {
                    "apiVersion": "vaultbundle.io/v1alpha1",
                    "kind": "VaultBundle",
                    "metadata": {"name": "pipeline", "namespace": made.ns},
                    "spec": {
                        "source": {
                            "configSecretRef": {"name": "web-vsync"},
                            "passphraseSecretRef": {"name": "web-passphrase"},
                        },
                        "targets": [{"name": "app", "kubernetesSecret": {"name": "ci-env"}}],
                    },
                }
            )
        )
        env = {**os.environ, "KUBECONFIG": testbed["KUBECONFIG"]}

        def vaultbundle(*args: str) -> subprocess.CompletedProcess[str]:
            """The CLI on the manifest (the test bed's S3 is on loopback: --egress-allow-local)."""
            command = [sys.executable, "-m", "vaultbundle.cli", *args, "-f", str(manifest), "--egress-allow-local"]
            return subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=120)

        planned = vaultbundle("plan")
        assert planned.returncode == 0, planned.stderr
        assert "+ MODE" in planned.stdout and "+ TOKEN" in planned.stdout and CANARY not in planned.stdout
        assert made.data("ci-env") is None
        synced = vaultbundle("sync", "--json")
        assert synced.returncode == 0, synced.stderr
        assert made.data("ci-env") == {"TOKEN": CANARY, "MODE": "ci"} and CANARY not in synced.stdout
        assert json.loads(synced.stdout)["targets"][0]["plan"]["create"] == ["MODE", "TOKEN"]
        again = vaultbundle("sync", "--json")
        assert json.loads(again.stdout)["targets"][0]["plan"] == {
            "create": [],
            "update": [],
            "delete": [],
            "unchanged": 2,
        }
        made.secret("web-passphrase", {"passphrase": "wrong"}, replace=True)
        failed = vaultbundle("sync")
        assert failed.returncode == 14 and "WrongPassphrase" in failed.stdout
    finally:
        made.core.delete_namespace(made.ns)


def test_leader_election_failover(scenario: Scenario, testbed: dict[str, str], tmp_path: Path) -> None:
    """Two replicas: one works, the standby does nothing; kill -9 the leader and the standby takes over within
    the lease period and picks up a new bundle. (The module's own operator handles other namespaces' objects
    too; the replicas here are judged by their own metrics.)"""
    scenario.push({".env.prod": b"A=1\n"})
    election = ["--leader-election-namespace", scenario.ns, "--lease-duration", "4s", "--shard", "0/1"]
    logs = [tmp_path / "replica-a.log", tmp_path / "replica-b.log"]
    first, port_a = start_operator(testbed, logs[0], *election)
    second, port_b = start_operator(testbed, logs[1], *election)
    replicas = {port_a: (first, logs[0]), port_b: (second, logs[1])}
    try:
        leader_of = lambda: [p for p in replicas if Operator(logs[0], p).metric("vaultbundle_leader") == 1]  # noqa: E731
        leaders = wait_for(lambda: leader_of() if len(leader_of()) == 1 else None, "exactly one leader", 20)
        leader, standby = leaders[0], next(p for p in replicas if p != leaders[0])
        scenario.apply("ha", {"name": "ha-env"})
        wait_for(lambda: scenario.data("ha-env") == {"A": "1"}, "the leader's sync")
        time.sleep(2)
        assert Operator(logs[0], standby).metric("vaultbundle_syncs_total") == 0  # no duplicated work
        lease = scenario.api.call_api(
            f"/apis/coordination.k8s.io/v1/namespaces/{scenario.ns}/leases/vaultbundle-operator-shard-0",
            "GET",
            _preload_content=False,
            _return_http_data_only=True,
        )
        assert json.loads(lease.data)["spec"]["holderIdentity"]

        replicas[leader][0].kill()  # no release: the standby must wait for the lease to expire
        killed = time.monotonic()
        replicas[leader][0].wait(10)
        wait_for(lambda: Operator(logs[0], standby).metric("vaultbundle_leader") == 1, "the standby to take over", 15)
        assert time.monotonic() - killed < 4 + 3  # lease duration + one standby poll and some scheduling slack
        scenario.push({".env.prod": b"A=2\n"})
        wait_for(lambda: scenario.data("ha-env") == {"A": "2"}, "the new leader's sync", 20)
    finally:
        for process, log in replicas.values():
            if process.poll() is None:
                stop_operator(process, log)


def test_fan_out_to_every_store_with_one_store_down(
    scenario: Scenario, testbed: dict[str, str], operator: Operator
) -> None:
    """One VaultBundle, five stores through their real client libraries: each receives the bundle; a store that
    is down fails alone and the status names it; fixing it converges; a second cycle writes nothing anywhere."""
    import grpc
    import hvac
    from google.cloud.secretmanager_v1.services.secret_manager_service import SecretManagerServiceClient
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    scenario.push({".env.prod": f"API_KEY={CANARY}\nDB_URL=postgres://db/app\n".encode()})
    scenario.secret("gh", {"token": testbed["GITHUB_TOKEN"]})
    scenario.secret("vault", {"token": testbed["VAULT_TOKEN"]})
    scenario.secret(
        "aws", {"access-key-id": testbed["AWS_ACCESS_KEY_ID"], "secret-access-key": testbed["AWS_SECRET_ACCESS_KEY"]}
    )
    repo, project, prefix = f"acme/{scenario.ns}", scenario.ns, f"{scenario.ns}/"
    aws_down = {
        "region": "us-east-1",
        "endpoint": "http://127.0.0.1:9",
        "namePrefix": prefix,
        "credentialsSecretRef": {"name": "aws"},
    }
    targets = [
        {"name": "k8s", "kubernetesSecret": {"name": "fan-env"}},
        {
            "name": "github",
            "githubActions": {
                "repository": repo,
                "apiURL": testbed["GITHUB_API_URL"],
                "auth": {"tokenSecretRef": {"name": "gh"}},
            },
        },
        {
            "name": "gcp",
            "gcpSecretManager": {
                "project": project,
                "endpoint": testbed["GCP_SECRET_MANAGER_ENDPOINT"],
                "insecure": True,
            },
        },
        {
            "name": "vault",
            "hashicorpVault": {
                "address": testbed["VAULT_ADDR"],
                "mount": "secret",
                "path": f"apps/{scenario.ns}",
                "auth": {"tokenSecretRef": {"name": "vault"}},
            },
        },
        {"name": "aws", "awsSecretsManager": aws_down},
    ]
    body = {
        "apiVersion": "vaultbundle.io/v1alpha1",
        "kind": "VaultBundle",
        "metadata": {"name": "fan"},
        "spec": {
            "source": {"configSecretRef": {"name": "web-vsync"}, "passphraseSecretRef": {"name": "web-passphrase"}},
            "refreshInterval": "1s",
            "targets": targets,
        },
    }
    scenario.custom.create_namespaced_custom_object("vaultbundle.io", "v1alpha1", scenario.ns, "vaultbundles", body)

    def states() -> dict[str, tuple[str, str]]:
        return {t["name"]: (t["state"], t["reason"]) for t in scenario.vb("fan").get("status", {}).get("targets", [])}

    wait_for(lambda: len(states()) == 5 and states()["aws"][0] == "Failed", "every target reported", 60)
    assert states() == {
        "k8s": ("Synced", "Synced"),
        "github": ("Synced", "Synced"),
        "gcp": ("Synced", "Synced"),
        "vault": ("Synced", "Synced"),
        "aws": ("Failed", "Unavailable"),
    }
    assert scenario.reason("fan") == "TargetFailed" and "aws" in scenario.condition("fan", "Synced")["message"]
    expected = {"API_KEY": CANARY, "DB_URL": "postgres://db/app"}
    assert scenario.data("fan-env") == expected
    github = {
        s["name"]: s["value"]
        for s in json.loads(http_get(f"{testbed['GITHUB_API_URL']}/_fake/secrets"))
        if s.get("repo") == scenario.ns
    }
    assert github == expected  # the fake decrypted every sealed box to the bundle's plaintext
    gcp = SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(
            channel=grpc.insecure_channel(testbed["GCP_SECRET_MANAGER_ENDPOINT"])
        )
    )
    for name, value in expected.items():
        payload = gcp.access_secret_version(name=f"projects/{project}/secrets/{name}/versions/latest").payload.data
        assert payload.decode() == value
    vault = hvac.Client(url=testbed["VAULT_ADDR"], token=testbed["VAULT_TOKEN"])
    stored = vault.secrets.kv.v2.read_secret_version(
        path=f"apps/{scenario.ns}", mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == expected

    # the store comes back (here: the spec points at the running one): it converges without touching the others
    targets[-1]["awsSecretsManager"] = {**aws_down, "endpoint": testbed["AWS_ENDPOINT_URL"]}
    scenario.custom.patch_namespaced_custom_object(
        "vaultbundle.io", "v1alpha1", scenario.ns, "vaultbundles", "fan", {"spec": {"targets": targets}}
    )
    wait_for(lambda: scenario.reason("fan") == "Synced", "all five stores in sync", 60)
    moto = secrets_manager(testbed)
    for name, value in expected.items():
        assert moto.get_secret_value(SecretId=f"{prefix}{name}")["SecretString"] == value
    versions = {
        name: len(gcp.list_secret_versions(parent=f"projects/{project}/secrets/{name}").versions) for name in expected
    }
    vault_version = vault.secrets.kv.v2.read_secret_metadata(path=f"apps/{scenario.ns}", mount_point="secret")["data"][
        "current_version"
    ]
    # the operator logs every cycle that was not idle (`ns/name: reason: message`): the forced one must show up
    cycles = f"{scenario.ns}/fan: Synced:"
    before = operator.log.read_text().count(cycles)
    scenario.custom.patch_namespaced_custom_object(  # a forced full cycle: plans everywhere, writes nowhere
        "vaultbundle.io",
        "v1alpha1",
        scenario.ns,
        "vaultbundles",
        "fan",
        {"metadata": {"annotations": {"vaultbundle.io/force-sync": "again"}}},
    )
    wait_for(lambda: operator.log.read_text().count(cycles) > before, "the forced cycle ran", 30)
    plans = [t["plan"] for t in scenario.vb("fan")["status"]["targets"]]
    assert all(not (p["create"] or p["update"] or p["delete"]) for p in plans), plans
    assert versions == {
        name: len(gcp.list_secret_versions(parent=f"projects/{project}/secrets/{name}").versions) for name in expected
    }
    assert (
        vault.secrets.kv.v2.read_secret_metadata(path=f"apps/{scenario.ns}", mount_point="secret")["data"][
            "current_version"
        ]
        == vault_version
    )


def test_faults_s3_errors_resets_slowness_and_control_plane_restarts(
    scenario: Scenario, testbed: dict[str, str]
) -> None:
    """S3 answering 503 (SlowDown), resetting connections or slow; kube-apiserver and etcd restarted right after a
    push: the Secret keeps its last good content during each fault, and every push arrives after recovery."""
    from e2e.faults import FaultProxy
    from e2e.testbed.bed import TestBed
    from e2e.testbed.config import Layout as BedLayout

    proxy = FaultProxy(testbed["AWS_ENDPOINT_URL"])
    try:
        through_proxy = BootstrapConfig(**{**scenario.config.__dict__, "endpoint": proxy.url})
        scenario.secret("faulty-vsync", {"config": configblob.encode(through_proxy)})
        scenario.push({".env.prod": b"A=1\n"})  # writes go straight to S3; only the operator reads via the proxy
        scenario.apply("faulty", {"name": "faulty-env"}, source={"configSecretRef": {"name": "faulty-vsync"}})
        wait_for(lambda: scenario.data("faulty-env") == {"A": "1"}, "the first sync through the proxy")

        for mode in ("error", "reset"):
            proxy.set(mode)
            scenario.push({".env.prod": f"A={mode}\n".encode()})
            wait_for(lambda: scenario.reason("faulty") == "S3Unreachable", f"S3Unreachable while S3 does {mode}", 60)
            assert scenario.data("faulty-env") == {"A": "1"} or scenario.data("faulty-env") == {"A": "error"}
            before = scenario.data("faulty-env")
            time.sleep(2)
            assert scenario.data("faulty-env") == before  # nothing half-written while S3 misbehaves
            proxy.set("pass")
            wait_for(lambda m=mode: scenario.data("faulty-env") == {"A": m}, f"recovery after {mode}", 60)
        assert proxy.faults > 0

        proxy.set("slow", 2.0)
        scenario.push({".env.prod": b"A=slow\n"})
        wait_for(lambda: scenario.data("faulty-env") == {"A": "slow"}, "a sync through a slow S3", 60)
        proxy.set("pass")

        bed = TestBed(layout=BedLayout(Path(testbed["TESTBED_DIR"])), say=lambda _: None)
        for component, value in (("kube-apiserver", "after-apiserver"), ("etcd", "after-etcd")):
            scenario.push({".env.prod": f"A={value}\n".encode()})
            downtime = bed.restart(component, pause=2.0)
            assert downtime >= 2.0
            wait_for(
                lambda v=value: scenario.data("faulty-env") == {"A": v}, f"the push after a {component} restart", 120
            )
            wait_for(lambda: scenario.reason("faulty") == "Synced", f"Synced after the {component} restart", 60)
    finally:
        proxy.close()
