"""The operator as a local process against the real kube-apiserver (+ controller-manager) and real S3.

Proves: a VaultBundle becomes Ready and its Secret holds the bundle; an idle cycle writes nothing; a new
bundle propagates; a moved-back pointer is refused without touching the Secret; a wrong passphrase is
reported and changes nothing; an unowned Secret is not taken over unless adopt is set; deletionPolicy
Delete lets Kubernetes' garbage collector remove the Secret.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from tests.conftest import REPO

from vaultbundle import bundles
from vaultbundle.bundles import Layout
from vaultbundle.crypto import configblob
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.pool import CryptoPool
from vaultbundle.remote import S3Objects

pytestmark = pytest.mark.testbed
PASSPHRASE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def kube(testbed: dict[str, str]) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=testbed["KUBECONFIG"])


@pytest.fixture(scope="module")
def operator(testbed: dict[str, str], kube: k8s.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    subprocess.run(
        [testbed["KUBECTL"], "--kubeconfig", testbed["KUBECONFIG"], "apply", "--server-side", "-f", str(REPO / "crds")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            testbed["KUBECTL"],
            "--kubeconfig",
            testbed["KUBECONFIG"],
            "wait",
            "--for=condition=Established",
            "crd/vaultbundles.vaultbundle.io",
            "--timeout=30s",
        ],
        check=True,
        capture_output=True,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vaultbundle.cli",
                "run",
                "--all-namespaces",
                "--kubeconfig",
                testbed["KUBECONFIG"],
                "--min-refresh-interval",
                "1s",
                "--workers",
                "1",
                "--liveness",
                f"http://127.0.0.1:{port}/healthz",
                "--verbose",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        yield log
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        if PASSPHRASE in log.read_text(errors="replace"):
            pytest.fail("the passphrase appeared in the operator log")


class Scenario:
    """A namespace, a bucket, the two source Secrets and helpers to push bundles and read results."""

    def __init__(self, testbed: dict[str, str], kube: k8s.ApiClient) -> None:
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

    def push(self, files: dict[str, bytes]) -> str:
        pointer = bundles.push(S3Objects(self.config), self.config, PASSPHRASE, self.pool, files, layout=Layout.CLI)
        return pointer.timestamp

    def apply(self, name: str, target: dict[str, Any], **spec: Any) -> None:
        body = {
            "apiVersion": "vaultbundle.io/v1alpha1",
            "kind": "VaultBundle",
            "metadata": {"name": name},
            "spec": {
                "source": {"configSecretRef": {"name": "web-vsync"}, "passphraseSecretRef": {"name": "web-passphrase"}},
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

    def ready(self, name: str) -> dict[str, Any]:
        return next((c for c in self.vb(name).get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})

    def data(self, name: str) -> dict[str, str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def resource_version(self, kind: str, name: str) -> str:
        if kind == "secret":
            return str(self.core.read_namespaced_secret(name, self.ns).metadata.resource_version)
        return str(self.vb(name)["metadata"]["resourceVersion"])


@pytest.fixture
def scenario(testbed: dict[str, str], kube: k8s.ApiClient, operator: Path) -> Iterator[Scenario]:
    made = Scenario(testbed, kube)
    yield made
    made.core.delete_namespace(made.ns)


def test_sync_idle_update_rollback_and_wrong_passphrase(scenario: Scenario, operator: Path) -> None:
    first = scenario.push({".env.prod": b'DB_URL="postgres://db/app"\nAPI_KEY=k1\n', "tls/ca.pem": b"CA"})
    scenario.apply("web", {"name": "web-env", "files": {"include": ["*"]}})
    wait_for(
        lambda: scenario.data("web-env") == {"DB_URL": "postgres://db/app", "API_KEY": "k1", "tls_ca.pem": "CA"},
        "the Secret to hold the bundle",
    )
    wait_for(lambda: scenario.ready("web").get("reason") == "Synced", "Ready=Synced")
    status = scenario.vb("web")["status"]
    assert status["bundleTimestamp"] == first and status["layout"] == "cli"
    assert status["contentDigest"].startswith("hmac-sha256:") and status["targets"][0]["keys"] == 3

    # idle: several refresh cycles (1s) with nothing changed write nothing to the API server
    versions = (scenario.resource_version("secret", "web-env"), scenario.resource_version("vb", "web"))
    time.sleep(4)
    assert (scenario.resource_version("secret", "web-env"), scenario.resource_version("vb", "web")) == versions

    # a new bundle propagates
    second = scenario.push({".env.prod": b"API_KEY=k2\n"})
    started = time.monotonic()
    wait_for(lambda: scenario.data("web-env") == {"API_KEY": "k2"}, "the new bundle (pruned keys)")
    assert time.monotonic() - started < 10
    wait_for(lambda: scenario.vb("web")["status"].get("lastAppliedTimestamp") == second, "the new floor")

    # pointer moved back to the first bundle: refused, Secret untouched
    scenario.s3.put_object(Bucket=scenario.bucket, Key="web/prod/latest", Body=first.encode())
    wait_for(lambda: scenario.ready("web").get("reason") == "RollbackRefused", "RollbackRefused")
    assert scenario.data("web-env") == {"API_KEY": "k2"}
    scenario.s3.put_object(Bucket=scenario.bucket, Key="web/prod/latest", Body=second.encode())
    wait_for(lambda: scenario.ready("web").get("reason") == "Synced", "recovery")

    # the passphrase Secret changes to a wrong one: reported at once, nothing written
    scenario.secret("web-passphrase", {"passphrase": "not-the-passphrase"}, replace=True)
    wait_for(lambda: scenario.ready("web").get("reason") == "WrongPassphrase", "WrongPassphrase", timeout=20)
    assert scenario.data("web-env") == {"API_KEY": "k2"}
    assert "not-the-passphrase" not in str(scenario.vb("web")["status"])


def test_ownership_adopt_and_garbage_collection(scenario: Scenario) -> None:
    scenario.push({".env.prod": b"A=1\n"})
    scenario.secret("precious", {"keep": "me"})
    scenario.apply("taker", {"name": "precious"})
    wait_for(lambda: scenario.ready("taker").get("reason") == "TargetFailed", "TargetFailed")
    target = scenario.vb("taker")["status"]["targets"][0]
    assert target["reason"] == "SecretNotOwned" and scenario.data("precious") == {"keep": "me"}

    scenario.apply("owner", {"name": "owned", "deletionPolicy": "Delete"})
    wait_for(lambda: scenario.data("owned") == {"A": "1"}, "the owned Secret")
    scenario.custom.delete_namespaced_custom_object("vaultbundle.io", "v1alpha1", scenario.ns, "vaultbundles", "owner")
    wait_for(lambda: scenario.data("owned") is None, "garbage collection of the owned Secret", timeout=60)

    scenario.custom.patch_namespaced_custom_object(
        "vaultbundle.io",
        "v1alpha1",
        scenario.ns,
        "vaultbundles",
        "taker",
        {
            "spec": {
                "targets": [{"name": "app", "kubernetesSecret": {"name": "precious", "adopt": True, "prune": False}}]
            }
        },
    )
    wait_for(lambda: scenario.data("precious") == {"keep": "me", "A": "1"}, "adoption without pruning")
