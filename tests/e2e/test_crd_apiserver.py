"""The VaultBundle CRD on a real kube-apiserver (the local test bed): install, explain, examples, CEL, defaults.

Everything goes through ``kubectl`` (the test bed's binary and admin kubeconfig), in a namespace of its own that is
deleted at the end. No operator is needed: these are the apiserver's own checks.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.testbed

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "crds" / "vaultbundle.io_vaultbundles.yaml"
CRD_NAME = "vaultbundles.vaultbundle.io"
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


class Kubectl:
    def __init__(self, testbed: dict[str, str]) -> None:
        self.binary = testbed["KUBECTL"]
        self.env = {**os.environ, "KUBECONFIG": testbed["KUBECONFIG"]}

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args], input=stdin, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def get_json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.run("get", *args, "-o", "json").stdout)

    def temporary_namespace(self, prefix: str) -> Iterator[str]:
        """A new namespace `<prefix>-<random>` for the caller's tests (a fixture's body), deleted afterwards."""
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.run("create", "namespace", name)
        try:
            yield name
        finally:
            self.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def kubectl(testbed: dict[str, str]) -> Kubectl:
    k = Kubectl(testbed)
    k.run("apply", "--server-side", "--force-conflicts", "--field-manager=vaultbundle-crd-test", "-f", str(CRD_PATH))
    k.run("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return k


@pytest.fixture(scope="module")
def namespace(kubectl: Kubectl) -> Iterator[str]:
    yield from kubectl.temporary_namespace("vb-crd")


def vault_bundle(name: str = "probe", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"configSecretRef": {"name": "probe-cfg"}, "passphraseSecretRef": {"name": "probe-pass"}},
        "targets": [{"name": "out", "kubernetesSecret": {"name": "probe-out"}}],
    }
    body.update(spec)
    return {"apiVersion": "vaultbundle.io/v1alpha1", "kind": "VaultBundle", "metadata": {"name": name}, "spec": body}


def dry_run(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl.run("apply", "-n", namespace, "--dry-run=server", "-f", "-", stdin=json.dumps(obj), check=False)


# --- install ---------------------------------------------------------------------------------------------------------
def test_crd_is_established_with_names(kubectl: Kubectl) -> None:
    crd = kubectl.get_json("crd", CRD_NAME)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == ["vb"]
    assert crd["status"]["acceptedNames"]["categories"] == ["vaultbundle", "secrets"]
    # The short name and the category resolve.
    kubectl.run("get", "vb", "-A")
    kubectl.run("get", "vaultbundle", "-A")
    assert "vaultbundles" in kubectl.run("api-resources", "--categories=vaultbundle", "-o", "name").stdout


def test_explain_shows_descriptions(kubectl: Kubectl) -> None:
    # The OpenAPI v3 document is published a moment after the CRD is Established.
    deadline = time.monotonic() + 60
    while True:
        result = kubectl.run("explain", "vaultbundle.spec.targets.kubernetesSecret", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # explain wraps lines
    assert "Write the selected secrets into a Kubernetes Secret in the VaultBundle's own namespace" in text
    for field in ("adopt", "annotations", "deletionPolicy", "files", "keys", "labels", "name", "prune", "template"):
        assert f"{field}\t<" in result.stdout, field
    source = " ".join(kubectl.run("explain", "vaultbundle.spec.source").stdout.split())
    assert "tenant isolation" in source
    layout = kubectl.run("explain", "vaultbundle.spec.source.layout").stdout
    assert "ENUM:" in layout
    assert "auto" in layout
    assert "runtime" in layout


# --- examples --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_applies(kubectl: Kubectl, namespace: str, path: Path) -> None:
    kubectl.run("apply", "-n", namespace, "-f", str(path))
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] == "VaultBundle":
            stored = kubectl.get_json("vaultbundle", "-n", namespace, doc["metadata"]["name"])
            assert stored["spec"]["targets"][0]["name"] == doc["spec"]["targets"][0]["name"]
            # No field of the example was pruned by the schema: every leaf of the example is in the stored spec.
            assert _contains(stored["spec"], doc["spec"]), path.name


def _contains(stored: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(k in stored and _contains(stored[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(stored, list) and len(stored) == len(wanted) and all(map(_contains, stored, wanted))
    return bool(stored == wanted)


# --- defaults --------------------------------------------------------------------------------------------------------
def test_defaults_are_filled_in(kubectl: Kubectl, namespace: str) -> None:
    obj = vault_bundle("defaults")
    obj["spec"]["targets"][0]["kubernetesSecret"]["template"] = {"data": {"x": {"fromKey": "X"}}}
    kubectl.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(obj))
    spec = kubectl.get_json("vaultbundle", "-n", namespace, "defaults")["spec"]
    assert spec["source"]["layout"] == "auto"
    assert spec["source"]["version"] == ""
    assert spec["source"]["configSecretRef"]["key"] == "config"
    assert spec["source"]["passphraseSecretRef"]["key"] == "passphrase"
    assert spec["refreshInterval"] == "1m"
    assert spec["rollbackPolicy"] == "Refuse"
    assert spec["suspend"] is False
    assert spec["dryRun"] is False
    target = spec["targets"][0]["kubernetesSecret"]
    assert target["type"] == "Opaque"
    assert target["deletionPolicy"] == "Retain"
    assert target["prune"] is True
    assert target["adopt"] is False
    assert target["template"]["mergeSelected"] is False


def test_status_round_trips_and_feeds_printer_columns(kubectl: Kubectl, namespace: str) -> None:
    """A full status as the operator will write it is stored unpruned, and `kubectl get` shows the columns."""
    kubectl.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(vault_bundle("with-status")))
    now = "2025-02-01T10:00:00Z"
    status = {
        "observedGeneration": 1,
        "bundle": {
            "layout": "cli",
            "timestamp": "20250201-095959",
            "generation": 7,
            "digest": "hmac-sha256:" + "ab" * 32,
        },
        "lastAppliedTimestamp": "20250201-095959",
        "pointerETag": '"0123abcd"',
        "lastSyncTime": now,
        "lastAttemptTime": now,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Synced",
                "message": "1/1 targets in sync",
                "lastTransitionTime": now,
                "observedGeneration": 1,
            }
        ],
        "targets": [
            {
                "name": "out",
                "kind": "kubernetesSecret",
                "state": "Synced",
                "reason": "Synced",
                "message": "3 keys",
                "lastSyncTime": now,
                "lastChangeTime": now,
                "keys": 3,
                "plan": {"create": ["A"], "update": ["B"], "delete": ["C"], "unchanged": 1},
            }
        ],
    }
    kubectl.run(
        "patch",
        "vaultbundle",
        "with-status",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    assert kubectl.get_json("vaultbundle", "-n", namespace, "with-status")["status"] == status
    table = kubectl.run("get", "vb", "with-status", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REASON", "BUNDLE", "GENERATION", "LAST", "SYNC", "AGE"]
    assert table[1].split()[:5] == ["with-status", "True", "Synced", "20250201-095959", "7"]


# --- rejected objects (schema and CEL, evaluated by the apiserver) ---------------------------------------------------
def _set(path: list[Any], value: Any) -> Any:
    def mutate(obj: dict[str, Any]) -> None:
        node: Any = obj["spec"]
        for step in path[:-1]:
            node = node[step]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return mutate


_DELETE = object()
GUID = "00000000-0000-0000-0000-000000000001"
PROVIDER = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/prov"
GCP_FEDERATED = {"project": "acme-prod", "auth": {"serviceAccountRef": {"name": "gcp-writer"}, "audience": PROVIDER}}
AZURE_FEDERATED = {
    "vaultURL": "https://v.vault.azure.net",
    "auth": {"serviceAccountRef": {"name": "kv-writer"}, "tenantID": GUID, "clientID": GUID},
}

REJECTED: dict[str, tuple[Any, str]] = {
    "target without a kind": (
        _set(["targets", 0, "kubernetesSecret"], _DELETE),
        "each target must set exactly one target kind (one of: kubernetesSecret, ",
    ),
    "same Secret for config and passphrase": (
        _set(["source", "passphraseSecretRef", "name"], "probe-cfg"),
        "configSecretRef and passphraseSecretRef must name two different Secrets",
    ),
    "template entry with fromKey and fromFile": (
        _set(["targets", 0, "kubernetesSecret", "template"], {"data": {"tls.crt": {"fromKey": "A", "fromFile": "b"}}}),
        "each template.data entry must set exactly one of fromKey or fromFile",
    ),
    "template entry with neither": (
        _set(["targets", 0, "kubernetesSecret", "template"], {"data": {"tls.crt": {}}}),
        "each template.data entry must set exactly one of fromKey or fromFile",
    ),
    "bad version": (_set(["source", "version"], "2025-01-31"), "spec.source.version"),
    "bad target name": (_set(["targets", 0, "name"], "Web_Env"), "spec.targets[0].name"),
    "bad refreshInterval": (_set(["refreshInterval"], "1 minute"), "spec.refreshInterval"),
    "bad layout": (_set(["source", "layout"], "s3"), 'supported values: "auto", "cli", "runtime"'),
    "duplicate target names": (
        _set(["targets", 1], {"name": "out", "kubernetesSecret": {"name": "other"}}),
        "Duplicate value",
    ),
    "two targets, one Secret": (
        _set(["targets", 1], {"name": "out2", "kubernetesSecret": {"name": "probe-out"}}),
        "two kubernetesSecret targets name the same Secret",
    ),
    "target writes the passphrase Secret": (
        _set(["targets", 0, "kubernetesSecret", "name"], "probe-pass"),
        "must not name the Secret that holds the source config or passphrase",
    ),
    "service-account-token type": (
        _set(["targets", 0, "kubernetesSecret", "type"], "kubernetes.io/service-account-token"),
        "are not allowed",
    ),
    "reserved label": (
        _set(["targets", 0, "kubernetesSecret", "labels"], {"vaultbundle.io/managed-by": "me"}),
        "reserved for the operator",
    ),
    "rename collision": (
        _set(["targets", 0, "kubernetesSecret", "keys"], {"rename": {"A": "X", "B": "X"}}),
        "keys.rename maps two bundle keys to the same Secret key",
    ),
    "fromFile with ..": (
        _set(["targets", 0, "kubernetesSecret", "template"], {"data": {"k": {"fromFile": "a/../../b"}}}),
        "fromFile must be a relative path inside the bundle without '..' segments",
    ),
    "unknown field in a target": (_set(["targets", 0, "github"], {}), 'unknown field "spec.targets[0].github"'),
    "azure serviceAccountRef without clientID": (
        _set(
            ["targets", 1],
            {
                "name": "kv",
                "azureKeyVault": {
                    **AZURE_FEDERATED,
                    "auth": {"serviceAccountRef": {"name": "kv-writer"}, "tenantID": GUID},
                },
            },
        ),
        "serviceAccountRef needs tenantID and clientID",
    ),
    "gcp federation and a key": (
        _set(
            ["targets", 1],
            {"name": "gcp", "gcpSecretManager": {**GCP_FEDERATED, "credentialsSecretRef": {"name": "k"}}},
        ),
        "auth (workload identity federation) excludes credentialsSecretRef and insecure",
    ),
    "gcp federation with another audience": (
        _set(
            ["targets", 1],
            {
                "name": "gcp",
                "gcpSecretManager": {
                    **GCP_FEDERATED,
                    "auth": {"serviceAccountRef": {"name": "gcp-writer"}, "audience": "sts.amazonaws.com"},
                },
            },
        ),
        "spec.targets[1].gcpSecretManager.auth.audience",
    ),
    "dotsec next to the vsync source": (
        _set(["source", "dotsec"], {"configMapRef": {"name": "c"}, "identitySecretRef": {"name": "i"}}),
        "a VaultBundle has exactly one source kind",
    ),
    "vsync source without a passphrase": (
        _set(["source", "passphraseSecretRef"], _DELETE),
        "a vsync source needs both configSecretRef and passphraseSecretRef",
    ),
    "dotsec with two text sources": (
        _set(
            ["source"],
            {"dotsec": {"configMapRef": {"name": "c"}, "s3": {"configSecretRef": {"name": "x"}, "key": "a.sec"}}},
        ),
        "dotsec needs exactly one of configMapRef (a ConfigMap key) or s3",
    ),
    "dotsec without a key": (
        _set(["source"], {"dotsec": {"configMapRef": {"name": "c"}}}),
        "dotsec needs exactly one of identitySecretRef (an age identity Secret) or kms",
    ),
    "dotsec kms without credentials": (
        _set(["source"], {"dotsec": {"configMapRef": {"name": "c"}, "kms": {"region": "eu-west-1"}}}),
        "kms takes exactly one of credentialsSecretRef, auth.serviceAccountRef or storeRef",
    ),
    "dotsec kms with two ways": (
        _set(
            ["source"],
            {
                "dotsec": {
                    "configMapRef": {"name": "c"},
                    "kms": {"region": "eu-west-1", "credentialsSecretRef": {"name": "k"}, "storeRef": {"name": "s"}},
                }
            },
        ),
        "kms takes exactly one of credentialsSecretRef, auth.serviceAccountRef or storeRef",
    ),
    "dotsec kms storeRef with a region": (
        _set(
            ["source"],
            {"dotsec": {"configMapRef": {"name": "c"}, "kms": {"region": "eu-west-1", "storeRef": {"name": "s"}}}},
        ),
        "with storeRef the region, endpoints and identity come from the ClusterTargetStore",
    ),
    "dotsec kms without a region": (
        _set(["source"], {"dotsec": {"configMapRef": {"name": "c"}, "kms": {"credentialsSecretRef": {"name": "k"}}}}),
        "kms.region is required unless storeRef is set",
    ),
    "dotsec kms stsEndpoint without auth": (
        _set(
            ["source"],
            {
                "dotsec": {
                    "configMapRef": {"name": "c"},
                    "kms": {"region": "eu-west-1", "credentialsSecretRef": {"name": "k"}, "stsEndpoint": "https://s"},
                }
            },
        ),
        "kms.stsEndpoint is only used with auth.serviceAccountRef",
    ),
    "dotsec s3 key with ..": (
        _set(
            ["source"],
            {"dotsec": {"s3": {"configSecretRef": {"name": "x"}, "key": "a/../b"}, "identitySecretRef": {"name": "i"}}},
        ),
        "the object key must not have '..' segments",
    ),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_apiserver_rejects(kubectl: Kubectl, namespace: str, case: str) -> None:
    mutate, message = REJECTED[case]
    obj = vault_bundle()
    obj["spec"]["targets"].append({"name": "spare", "kubernetesSecret": {"name": "spare"}})
    mutate(obj)
    if case not in ("duplicate target names", "two targets, one Secret"):
        obj["spec"]["targets"] = [t for t in obj["spec"]["targets"] if t["name"] != "spare"]
    result = dry_run(kubectl, namespace, obj)
    assert result.returncode != 0, f"{case}: accepted"
    assert message in " ".join(result.stderr.split()), result.stderr


def test_federated_targets_are_accepted(kubectl: Kubectl, namespace: str) -> None:
    obj = vault_bundle()
    obj["spec"]["targets"] += [
        {"name": "gcp", "gcpSecretManager": GCP_FEDERATED},
        {"name": "kv", "azureKeyVault": AZURE_FEDERATED},
    ]
    result = dry_run(kubectl, namespace, obj)
    assert result.returncode == 0, result.stderr


def test_valid_probe_is_accepted(kubectl: Kubectl, namespace: str) -> None:
    """The objects above are rejected for the one reason injected, not because the base object is wrong."""
    result = dry_run(kubectl, namespace, vault_bundle())
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "kms",
    [{"storeRef": {"name": "kms-shared"}}, {"region": "eu-west-1", "auth": {"serviceAccountRef": {"name": "kms"}}}],
    ids=["storeRef", "serviceAccountRef"],
)
def test_a_dotsec_kms_grant_or_service_account_is_accepted(
    kubectl: Kubectl, namespace: str, kms: dict[str, Any]
) -> None:
    obj = vault_bundle(source={"dotsec": {"configMapRef": {"name": "web-sec"}, "kms": kms}})
    result = dry_run(kubectl, namespace, obj)
    assert result.returncode == 0, result.stderr


def test_a_dotsec_source_is_accepted_with_its_defaults(kubectl: Kubectl, namespace: str) -> None:
    source = {"dotsec": {"configMapRef": {"name": "web-sec"}, "identitySecretRef": {"name": "web-age"}}}
    obj = vault_bundle("dotsec-probe", source=source, schema={"configMapRef": {"name": "web-sec"}})
    kubectl.run("apply", "-n", namespace, "-f", "-", stdin=json.dumps(obj))
    stored = kubectl.get_json("vaultbundle", "-n", namespace, "dotsec-probe")["spec"]
    dotsec = stored["source"]["dotsec"]
    assert dotsec["configMapRef"]["key"] == ".sec" and dotsec["identitySecretRef"]["key"] == "identity"
    assert dotsec["plaintext"] == "warn" and stored["schema"]["configMapRef"]["key"] == "dotsec.schema"
