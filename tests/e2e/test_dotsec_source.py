"""A dotsec `.sec` source on the real apiserver: the operator as a process, the file in a ConfigMap, the age
identity in a Secret (and a KMS file against the bed's moto KMS), and `vaultbundle plan`/`sync` on a manifest.

What a user would check: the target Secret, the VaultBundle's status and conditions, Events, and the operator's
metrics (`vaultbundle_dotsec_opens_total` counts decryptions: an unchanged file costs none).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyrage
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from tests.dotsec_writer import schema_sha256, write_sec
from tests.e2e.helpers import secret_data, wait_for
from tests.e2e.test_operator import Operator, kube, operator  # noqa: F401 - module-scoped fixtures

from vaultbundle.dotsec.schema import EMPTY_SHA256
from vaultbundle.dotsec_kms import ENCRYPTION_CONTEXT

pytestmark = pytest.mark.testbed
CANARY = "CANARY-" + uuid.uuid4().hex  # must reach the target Secret and nothing else
SOURCE_LABEL = {"vaultbundle.io/source": "true"}


class Tenant:
    """A namespace with an age identity Secret and helpers for ConfigMaps, VaultBundles and results."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.core, self.custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        self.ns = f"dotsec-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace({"metadata": {"name": self.ns}})
        self.identity = pyrage.x25519.Identity.generate()
        body = {"metadata": {"name": "age", "labels": SOURCE_LABEL}, "stringData": {"identity": str(self.identity)}}
        self.core.create_namespaced_secret(self.ns, body)

    def sec(self, body: str, schema: str | None = None) -> str:
        digest = schema_sha256(schema) if schema is not None else EMPTY_SHA256
        return write_sec(body, identity=self.identity, schema_sha256=digest)[0]

    def config_map(self, name: str, data: dict[str, str]) -> None:
        body = {"metadata": {"name": name, "labels": SOURCE_LABEL}, "data": data}
        try:
            self.core.replace_namespaced_config_map(name, self.ns, body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespaced_config_map(self.ns, body)

    def apply(self, name: str, secret: str, dotsec: dict[str, Any] | None = None, **spec: Any) -> None:
        source = dotsec or {"configMapRef": {"name": f"{name}-sec"}, "identitySecretRef": {"name": "age"}}
        body = {
            "apiVersion": "vaultbundle.io/v1alpha1",
            "kind": "VaultBundle",
            "metadata": {"name": name},
            "spec": {
                "source": {"dotsec": source},
                "targets": [{"name": "app", "kubernetesSecret": {"name": secret}}],
                **spec,
            },
        }
        self.custom.create_namespaced_custom_object("vaultbundle.io", "v1alpha1", self.ns, "vaultbundles", body)

    def status(self, name: str) -> dict[str, Any]:
        body = self.custom.get_namespaced_custom_object("vaultbundle.io", "v1alpha1", self.ns, "vaultbundles", name)
        return dict(body.get("status") or {})

    def reason(self, name: str) -> str:
        ready = [c for c in self.status(name).get("conditions", []) if c["type"] == "Ready"]
        return str(ready[0]["reason"]) if ready else ""

    def data(self, name: str) -> dict[str, str] | None:
        return secret_data(self.core, self.ns, name)

    def events(self) -> list[tuple[str, str, str]]:
        return [(e.type, e.reason, e.message) for e in self.core.list_namespaced_event(self.ns).items]


@pytest.fixture
def tenant(kube: k8s.ApiClient, operator: Operator) -> Iterator[Tenant]:  # noqa: F811 - the imported fixtures
    made = Tenant(kube)
    yield made
    listed = made.custom.list_namespaced_custom_object("vaultbundle.io", "v1alpha1", made.ns, "vaultbundles")
    for item in listed["items"]:
        assert CANARY not in json.dumps(item.get("status") or {})
    assert not any(CANARY in message for _, _, message in made.events())
    made.core.delete_namespace(made.ns)


def test_configmap_source_sync_update_tamper_rollback_and_no_decryption_when_unchanged(
    tenant: Tenant,
    operator: Operator,  # noqa: F811
) -> None:
    first = tenant.sec(f"# @provider=local\nAPI_TOKEN=<<{CANARY}>>\nPORT=8080\n")
    tenant.config_map("web-sec", {".sec": first})
    tenant.apply("web", "web-env", refreshInterval="1s")
    wait_for(lambda: tenant.reason("web") == "Synced", "the first sync", 60)
    assert tenant.data("web-env") == {"API_TOKEN": CANARY, "PORT": "8080"}
    status = tenant.status("web")
    assert status["source"] == "dotsec" and status["dotsec"]["macVerified"] is True and status["dotsec"]["keys"] == 2
    assert status["dotsec"]["plaintextKeys"] == ["PORT"]
    wait_for(lambda: any(r == "DotsecPlaintext" and "PORT" in m for _, r, m in tenant.events()), "the plaintext Event")

    # unchanged input: cycles keep running (refreshInterval 1s) but nothing is decrypted
    opens, idle = (
        operator.metric("vaultbundle_dotsec_opens_total"),
        operator.metric("vaultbundle_syncs_total", result="Idle"),
    )
    wait_for(lambda: operator.metric("vaultbundle_syncs_total", result="Idle") >= idle + 3, "three idle cycles", 30)
    assert operator.metric("vaultbundle_dotsec_opens_total") == opens

    second = tenant.sec("# @provider=local\nAPI_TOKEN=<<rotated>>\nPORT=8081\n")
    tenant.config_map("web-sec", {".sec": second})
    wait_for(lambda: tenant.data("web-env") == {"API_TOKEN": "rotated", "PORT": "8081"}, "the updated values", 30)
    wait_for(lambda: len(tenant.status("web")["dotsec"]["recentFiles"]) == 2, "two applied files in status")

    tenant.config_map("web-sec", {".sec": second.replace("PORT=", "PORX=")})  # a renamed entry: MAC-covered
    wait_for(lambda: tenant.reason("web") == "DotsecMacMismatch", "the MAC error", 30)
    verified = next(c for c in tenant.status("web")["conditions"] if c["type"] == "Verified")
    assert verified["status"] == "False" and tenant.data("web-env") == {"API_TOKEN": "rotated", "PORT": "8081"}

    tenant.config_map("web-sec", {".sec": first})  # an authentic, complete, older file
    wait_for(lambda: tenant.reason("web") == "RollbackRefused", "the refused rollback", 30)
    assert tenant.data("web-env") == {"API_TOKEN": "rotated", "PORT": "8081"}


def test_a_schema_violation_writes_nothing(tenant: Tenant) -> None:
    schema = "# @min-length=12\nAPI_TOKEN\n# @type=number\nPORT\n"
    tenant.config_map("strict-sec", {".sec": tenant.sec("# @provider=local\nAPI_TOKEN=<<tiny>>\nPORT=80\n", schema)})
    tenant.config_map("strict-schema", {"dotsec.schema": schema})
    tenant.apply("strict", "strict-env", schema={"configMapRef": {"name": "strict-schema"}})
    wait_for(lambda: tenant.reason("strict") == "SchemaViolation", "the schema violation", 60)
    message = next(c for c in tenant.status("strict")["conditions"] if c["type"] == "Ready")["message"]
    assert "API_TOKEN: @min-length=12" in message and "tiny" not in message
    assert tenant.data("strict-env") is None


def test_a_kms_file_with_the_tenants_credentials(tenant: Tenant, testbed: dict[str, str]) -> None:
    kms = boto3.client(
        "kms",
        region_name="eu-central-1",
        endpoint_url=testbed["AWS_ENDPOINT_URL"],
        aws_access_key_id=testbed["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=testbed["AWS_SECRET_ACCESS_KEY"],
    )
    key_id = kms.create_key(Description="dotsec e2e")["KeyMetadata"]["KeyId"]
    dek = os.urandom(32)
    wrapped = kms.encrypt(KeyId=key_id, Plaintext=dek, EncryptionContext=ENCRYPTION_CONTEXT)["CiphertextBlob"]
    body = f"# @provider=aws\n# @region=us-west-2\nAPI_TOKEN=<<{CANARY}>>\n"
    text = write_sec(body, dek=dek, wrapped_dek=wrapped)[0]
    tenant.config_map("kms-sec", {".sec": text})
    credentials = {"accessKeyId": testbed["AWS_ACCESS_KEY_ID"], "secretAccessKey": testbed["AWS_SECRET_ACCESS_KEY"]}
    tenant.core.create_namespaced_secret(tenant.ns, {"metadata": {"name": "kms-creds"}, "stringData": credentials})
    source = {
        "configMapRef": {"name": "kms-sec"},
        "kms": {
            "region": "eu-central-1",  # the spec's region wins over the file's @region
            "endpoint": testbed["AWS_ENDPOINT_URL"],
            "credentialsSecretRef": {"name": "kms-creds"},
        },
    }
    tenant.apply("kms", "kms-env", source)
    wait_for(lambda: tenant.reason("kms") == "Synced", "the KMS sync", 60)
    assert tenant.data("kms-env") == {"API_TOKEN": CANARY}
    assert tenant.status("kms")["dotsec"]["provider"] == "aws"


def test_cli_plan_then_sync_a_dotsec_manifest(kube: k8s.ApiClient, testbed: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    made = Tenant(kube)
    try:
        made.config_map("ci-sec", {".sec": made.sec(f"# @provider=local\nTOKEN=<<{CANARY}>>\nMODE=<<ci>>\n")})
        manifest = tmp_path / "vb.yaml"
        source = {"dotsec": {"configMapRef": {"name": "ci-sec"}, "identitySecretRef": {"name": "age"}}}
        document = {
            "apiVersion": "vaultbundle.io/v1alpha1",
            "kind": "VaultBundle",
            "metadata": {"name": "pipeline", "namespace": made.ns},
            "spec": {"source": source, "targets": [{"name": "app", "kubernetesSecret": {"name": "ci-env"}}]},
        }
        manifest.write_text(json.dumps(document))
        env = {**os.environ, "KUBECONFIG": testbed["KUBECONFIG"]}

        def vaultbundle(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "vaultbundle.cli", *args, "-f", str(manifest)]
            return subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=120)

        planned = vaultbundle("plan")
        assert planned.returncode == 0, planned.stdout + planned.stderr
        assert (
            "+ MODE" in planned.stdout and "+ TOKEN" in planned.stdout and "dotsec file hmac-sha256:" in planned.stdout
        )
        assert CANARY not in planned.stdout and made.data("ci-env") is None
        synced = vaultbundle("sync", "--json")
        assert synced.returncode == 0, synced.stdout + synced.stderr
        result = json.loads(synced.stdout)
        assert result["source"] == "dotsec" and result["dotsec"]["keys"] == 2 and CANARY not in synced.stdout
        assert made.data("ci-env") == {"TOKEN": CANARY, "MODE": "ci"}
        text = made.core.read_namespaced_config_map("ci-sec", made.ns).data[".sec"]
        made.config_map("ci-sec", {".sec": text.replace("MODE=", "MODX=")})
        failed = vaultbundle("sync")
        assert failed.returncode == 29 and "DotsecMacMismatch" in failed.stdout  # MacMismatch's exit code
    finally:
        made.core.delete_namespace(made.ns)
