"""The ClusterTargetStore CRD and VaultBundle `storeRef` on a real kube-apiserver (the local test bed).

The apiserver compiles and runs the real CEL rules: every broken store that ``tests/unit/test_crd_stores.py`` says
the CRD rejects is rejected here too, with the same message where the message comes from a CEL rule; a VaultBundle
target with `storeRef` plus a connection field is rejected, and one with only `storeRef` is accepted even after the
apiserver filled in the defaults of connection fields (githubActions.apiURL, hashicorpVault.namespace).
"""

from __future__ import annotations

import copy
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.test_crd_apiserver import Kubectl, _contains
from tests.unit.test_crd_stores import BROKEN

from vaultbundle import stores

pytestmark = pytest.mark.testbed

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS = [
    REPO_ROOT / "crds" / "vaultbundle.io_clustertargetstores.yaml",
    REPO_ROOT / "crds" / "vaultbundle.io_vaultbundles.yaml",
]
STORE_EXAMPLES = sorted((REPO_ROOT / "examples" / "stores").glob("*.yaml"))


@pytest.fixture(scope="module")
def kubectl(testbed: dict[str, str]) -> Kubectl:
    k = Kubectl(testbed)
    for path in CRDS:
        k.run("apply", "--server-side", "--force-conflicts", "--field-manager=vaultbundle-crd-test", "-f", str(path))
    k.run("wait", "--for=condition=Established", "crd/clustertargetstores.vaultbundle.io", "--timeout=60s")
    k.run("wait", "--for=condition=Established", "crd/vaultbundles.vaultbundle.io", "--timeout=60s")
    return k


@pytest.fixture(scope="module")
def namespace(kubectl: Kubectl) -> Iterator[str]:
    yield from kubectl.temporary_namespace("vb-cts")


def dry_run(kubectl: Kubectl, obj: dict[str, Any], namespace: str | None = None) -> subprocess.CompletedProcess[str]:
    where = ["-n", namespace] if namespace else []
    return kubectl.run("apply", *where, "--dry-run=server", "-f", "-", stdin=json.dumps(obj), check=False)


def flat(text: str) -> str:
    return " ".join(text.split())


# --- the CRD ---------------------------------------------------------------------------------------------------------
def test_crd_is_cluster_scoped_with_short_name(kubectl: Kubectl) -> None:
    crd = kubectl.get_json("crd", "clustertargetstores.vaultbundle.io")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    assert crd["spec"]["scope"] == "Cluster" and crd["status"]["acceptedNames"]["shortNames"] == ["cts"]
    kubectl.run("get", "cts")
    resources = kubectl.run("api-resources", "--namespaced=false", "-o", "name").stdout.split()
    assert "clustertargetstores.vaultbundle.io" in resources


def test_explain_shows_descriptions(kubectl: Kubectl) -> None:
    deadline = time.monotonic() + 60
    while True:
        result = kubectl.run("explain", "clustertargetstore.spec.scope", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stderr
    text = flat(result.stdout)
    assert "placeholders {namespace} and {name}" in text
    for field in ("namePrefix", "mount", "pathPrefix", "repositories", "organization"):
        assert f"{field}\t<" in result.stdout, field
    assert "Deny by default" in flat(kubectl.run("explain", "clustertargetstore.spec.conditions").stdout)
    ref = flat(kubectl.run("explain", "vaultbundle.spec.targets.awsSecretsManager.storeRef").stdout)
    assert "ClusterTargetStore" in ref and "PolicyDenied" in ref


# --- examples: stored as written, defaults filled in, accepted by the operator's parser -----------------------------
@pytest.mark.parametrize("path", STORE_EXAMPLES, ids=lambda p: p.name)
def test_store_example_applies_and_parses(kubectl: Kubectl, path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    name = f"{doc['metadata']['name']}-{secrets.token_hex(3)}"
    obj = copy.deepcopy(doc)
    obj["metadata"]["name"] = name
    kubectl.run("apply", "-f", "-", stdin=json.dumps(obj))
    try:
        stored = kubectl.get_json("cts", name)
        assert _contains(stored["spec"], doc["spec"]), "a field of the example was pruned"
        allow = stored["spec"]["allow"]
        assert set(allow) == {"adopt", "prune", "forceDeleteWithoutRecovery"}  # defaults filled in
        store = stores.parse_store(stored)  # what the operator will read
        assert store.name == name
        table = kubectl.run("get", "cts", name).stdout.splitlines()
        assert table[0].split()[:5] == ["NAME", "NAME", "PREFIX", "PATH", "PREFIX"]
    finally:
        kubectl.run("delete", "cts", name, "--wait=false", check=False)


# --- broken stores: the same table as the unit test ------------------------------------------------------------------
# Messages of schema keywords differ between jsonschema and the apiserver; CEL messages are the same text.
APISERVER_MESSAGE = {
    "no identity": "spec.awsSecretsManager.identity: Required value",
    "plain http endpoint": "spec.awsSecretsManager.endpoint: Invalid value",
    "bad operator": 'supported values: "In", "NotIn", "Exists", "DoesNotExist"',
    "bad namespace name": "spec.conditions.namespaces[0]: Invalid value",
    "unknown field": 'unknown field "spec.awsSecretsManager.credentialsSecretRef"',
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_apiserver_rejects_broken_store(kubectl: Kubectl, case: str) -> None:
    obj, message = BROKEN[case]
    result = dry_run(kubectl, obj)
    assert result.returncode != 0, f"{case}: accepted"
    assert APISERVER_MESSAGE.get(case, message) in flat(result.stderr), result.stderr


def test_base_store_is_accepted(kubectl: Kubectl) -> None:
    (path,) = [p for p in STORE_EXAMPLES if p.name == "aws-secrets-manager.yaml"]
    result = dry_run(kubectl, yaml.safe_load(path.read_text()))
    assert result.returncode == 0, result.stderr


# --- VaultBundle storeRef --------------------------------------------------------------------------------------------
VALID_CONNECTION_VALUES: dict[str, dict[str, Any]] = {
    "awsSecretsManager": {
        "region": "eu-west-1",
        "endpoint": "https://sm.example",
        "stsEndpoint": "https://sts.example",
        "roleArn": "arn:aws:iam::123456789012:role/x",
        "externalId": "abc",
        "credentialsSecretRef": {"name": "c"},
        "auth": {"serviceAccountRef": {"name": "aws-writer"}},  # referent identity is a connection choice too
    },
    "gcpSecretManager": {
        "project": "acme-prod",
        "endpoint": "sm.example:443",
        "insecure": True,
        "credentialsSecretRef": {"name": "c"},
        "auth": {  # workload identity federation is a connection choice too
            "serviceAccountRef": {"name": "gcp-writer"},
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/prov",
        },
    },
    "azureKeyVault": {
        "vaultURL": "https://v.vault.azure.net",
        "auth": {"clientSecretRef": {"name": "c"}},
        "caBundleSecretRef": {"name": "ca"},
    },
    "hashicorpVault": {
        "address": "https://vault:8200",
        "namespace": "team",
        "caBundleSecretRef": {"name": "ca"},
        "auth": {"tokenSecretRef": {"name": "t"}},
    },
    "githubActions": {"apiURL": "https://ghe.example/api/v3", "auth": {"tokenSecretRef": {"name": "t"}}},
    "awsKms": {  # spec.source.dotsec.kms, not a target
        "region": "eu-west-1",
        "endpoint": "https://kms.example",
        "stsEndpoint": "https://sts.example",
        "credentialsSecretRef": {"name": "c"},
        "auth": {"serviceAccountRef": {"name": "kms-reader"}},
    },
}
REFUSED = {
    stores.KMS: "with storeRef the region, endpoints and identity come from the ClusterTargetStore",
}
REQUIRED_REST = {"hashicorpVault": {"path": "tenants/x/app"}, "githubActions": {"repository": "acme/web"}}


def vault_bundle(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A VaultBundle with *body* under a target of *kind*, or for awsKms as its dotsec source's `kms`."""
    spec: dict[str, Any] = {
        "source": {"configSecretRef": {"name": "cfg"}, "passphraseSecretRef": {"name": "pass"}},
        "targets": [{"name": "ext", kind: body}],
    }
    if kind == stores.KMS:
        spec = {
            "source": {"dotsec": {"configMapRef": {"name": "sec"}, "kms": body}},
            "targets": [{"name": "env", "kubernetesSecret": {"name": "env"}}],
        }
    return {
        "apiVersion": "vaultbundle.io/v1alpha1",
        "kind": "VaultBundle",
        "metadata": {"name": f"ref-{kind.lower()}"},
        "spec": spec,
    }


def stored_body(stored: dict[str, Any], kind: str) -> dict[str, Any]:
    if kind == stores.KMS:
        return dict(stored["spec"]["source"]["dotsec"]["kms"])
    return dict(stored["spec"]["targets"][0][kind])


def test_connection_values_cover_every_connection_field() -> None:
    assert {k: set(v) for k, v in VALID_CONNECTION_VALUES.items()} == {
        k: set(v) for k, v in stores.CONNECTION_FIELDS.items()
    }


@pytest.mark.parametrize("kind", list(stores.KINDS))
def test_store_ref_alone_is_accepted_and_stored_with_defaults(kubectl: Kubectl, namespace: str, kind: str) -> None:
    obj = vault_bundle(kind, {"storeRef": {"name": "shared"}, **REQUIRED_REST.get(kind, {})})
    kubectl.run("apply", "-n", namespace, "-f", "-", stdin=json.dumps(obj))
    stored = kubectl.get_json("vaultbundle", "-n", namespace, obj["metadata"]["name"])
    target = stored_body(stored, kind)
    assert target["storeRef"] == {"name": "shared"}
    for field_name, default in stores.CONNECTION_DEFAULTS.get(kind, {}).items():
        assert target.get(field_name, default) == default  # defaulted by the apiserver, still accepted
    with pytest.raises(stores.PolicyDeniedError):  # the stored body, as the operator will see it: no store yet
        stores.authorize(kind, target, None, namespace, {}, obj["metadata"]["name"])


@pytest.mark.parametrize(
    ("kind", "field_name"), [(k, f) for k, fields in stores.CONNECTION_FIELDS.items() for f in fields]
)
def test_store_ref_with_a_connection_field_is_rejected(
    kubectl: Kubectl, namespace: str, kind: str, field_name: str
) -> None:
    body = {
        "storeRef": {"name": "shared"},
        **REQUIRED_REST.get(kind, {}),
        field_name: VALID_CONNECTION_VALUES[kind][field_name],
    }
    result = dry_run(kubectl, vault_bundle(kind, body), namespace)
    assert result.returncode != 0, f"{kind}.{field_name}: accepted"
    expected = REFUSED.get(kind, "with storeRef the connection and credentials come from the ClusterTargetStore")
    assert expected in flat(result.stderr)


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("gcpSecretManager", {}, "project is required (or storeRef)"),
        ("azureKeyVault", {}, "vaultURL is required (or storeRef)"),
        ("hashicorpVault", {"path": "a", "auth": {"tokenSecretRef": {"name": "t"}}}, "address and auth are required"),
        ("githubActions", {"repository": "acme/web"}, "auth is required (or storeRef)"),
    ],
)
def test_without_store_ref_the_connection_is_required(
    kubectl: Kubectl, namespace: str, kind: str, body: dict[str, Any], message: str
) -> None:
    result = dry_run(kubectl, vault_bundle(kind, body), namespace)
    assert result.returncode != 0 and message in flat(result.stderr), result.stderr
