"""ClusterTargetStore enforcement on the real apiserver, with an operator process that HAS an ambient AWS identity
(env credentials for the test bed's moto, as IRSA would give in a cluster): issue #13, C1 and the scope.

* a tenant namespace without a ClusterTargetStore cannot use that identity: `PolicyDenied`, nothing in moto;
* a store admits only the namespaces its `namespaceSelector` matches;
* with one, only its scope is writable: a name outside is refused, and a prune never deletes outside it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from tests.conftest import REPO
from tests.e2e.helpers import secrets_manager, wait_for
from tests.e2e.test_operator import CANARY, Scenario, kubectl, start_operator, stop_operator

pytestmark = [pytest.mark.testbed, pytest.mark.slow]
OWNER_TAG = "vaultbundle.io/owner"


@pytest.fixture(scope="module")
def ambient_operator(testbed: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    kubectl(testbed, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(testbed, "wait", "--for=condition=Established", "crd/clustertargetstores.vaultbundle.io", "--timeout=30s")
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    ambient = {
        "AWS_ACCESS_KEY_ID": testbed["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": testbed["AWS_SECRET_ACCESS_KEY"],
        "AWS_ENDPOINT_URL": testbed["AWS_ENDPOINT_URL"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    process, _ = start_operator(testbed, log, env=ambient)
    try:
        yield log
    finally:
        stop_operator(process, log)


@pytest.fixture
def kube(testbed: dict[str, str]) -> k8s.ApiClient:
    from kubernetes import config as k8s_config

    return k8s_config.new_client_from_config(config_file=testbed["KUBECONFIG"])


@contextlib.contextmanager
def bundle_tenant(testbed: dict[str, str], kube: k8s.ApiClient) -> Iterator[Scenario]:
    """A tenant namespace with a bundle holding API_KEY (the canary) and DB_URL; deleted afterwards."""
    made = Scenario(testbed, kube)
    made.push({".env.prod": f"API_KEY={CANARY}\nDB_URL=postgres://db/app\n".encode()})
    yield made
    made.core.delete_namespace(made.ns)


@pytest.fixture
def tenant(testbed: dict[str, str], kube: k8s.ApiClient, ambient_operator: Path) -> Iterator[Scenario]:
    with bundle_tenant(testbed, kube) as made:
        yield made


@pytest.fixture
def moto(testbed: dict[str, str]) -> Any:
    return secrets_manager(testbed)


@pytest.fixture
def store(kube: k8s.ApiClient) -> Iterator[str]:
    """A ClusterTargetStore lending the operator's ambient identity to namespaces labelled with a unique value."""
    name = f"aws-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": "vaultbundle.io/v1alpha1",
        "kind": "ClusterTargetStore",
        "metadata": {"name": name},
        "spec": {
            "awsSecretsManager": {"region": "us-east-1", "identity": {"ambient": {}}},
            "conditions": {"namespaceSelector": {"matchLabels": {"e2e.vaultbundle.io/store": name}}},
            "scope": {"namePrefix": "tenants/{namespace}/"},
            "allow": {"prune": True},
        },
    }
    custom = k8s.CustomObjectsApi(kube)
    custom.create_cluster_custom_object("vaultbundle.io", "v1alpha1", "clustertargetstores", body)
    yield name
    custom.delete_cluster_custom_object("vaultbundle.io", "v1alpha1", "clustertargetstores", name)


def apply(tenant: Scenario, name: str, aws: dict[str, Any]) -> None:
    """A VaultBundle whose only target is this awsSecretsManager (the spec's targets replace the default one)."""
    tenant.apply(name, {}, targets=[{"name": "aws", "awsSecretsManager": aws}])


def patch(tenant: Scenario, name: str, aws: dict[str, Any]) -> None:
    targets = [{"name": "aws", "awsSecretsManager": aws}]
    tenant.custom.patch_namespaced_custom_object(
        "vaultbundle.io", "v1alpha1", tenant.ns, "vaultbundles", name, {"spec": {"targets": targets}}
    )


def force(tenant: Scenario, name: str, token: str) -> None:
    """Resync now rather than on the next backoff."""
    annotations = {"metadata": {"annotations": {"vaultbundle.io/force-sync": token}}}
    tenant.custom.patch_namespaced_custom_object(
        "vaultbundle.io", "v1alpha1", tenant.ns, "vaultbundles", name, annotations
    )


def target(tenant: Scenario, name: str) -> dict[str, Any]:
    return next(iter(tenant.vb(name).get("status", {}).get("targets", [])), {})


def state(tenant: Scenario, name: str) -> tuple[str, str]:
    entry = target(tenant, name)
    return (str(entry.get("state", "")), str(entry.get("reason", "")))


def stored(moto: Any, prefix: str) -> dict[str, bool]:
    """Secret name -> scheduled for deletion, for every secret whose name contains *prefix*."""
    found: dict[str, bool] = {}
    for page in moto.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
        for entry in page["SecretList"]:
            if prefix in entry["Name"]:
                found[entry["Name"]] = entry.get("DeletedDate") is not None
    return found


def test_without_a_store_a_tenant_cannot_use_the_operator_identity(tenant: Scenario, moto: Any) -> None:
    apply(tenant, "ambient", {"region": "us-east-1", "namePrefix": f"{tenant.ns}/"})
    wait_for(lambda: state(tenant, "ambient") == ("Failed", "PolicyDenied"), "PolicyDenied", 60)
    assert "ClusterTargetStore" in target(tenant, "ambient")["message"]
    assert tenant.reason("ambient") == "TargetFailed"
    assert stored(moto, tenant.ns) == {}  # the operator's identity wrote nothing


def test_a_store_admits_only_selected_namespaces_and_confines_writes(
    tenant: Scenario, store: str, moto: Any, kube: k8s.ApiClient
) -> None:
    ns = tenant.ns
    apply(tenant, "shared", {"storeRef": {"name": store}, "prune": True})
    wait_for(lambda: state(tenant, "shared") == ("Failed", "PolicyDenied"), "not admitted yet", 60)
    assert "does not admit namespace" in target(tenant, "shared")["message"]
    assert stored(moto, ns) == {}

    tenant.core.patch_namespace(ns, {"metadata": {"labels": {"e2e.vaultbundle.io/store": store}}})
    force(tenant, "shared", "labelled")
    wait_for(lambda: state(tenant, "shared") == ("Synced", "Synced"), "synced through the store", 60)
    assert stored(moto, ns) == {f"tenants/{ns}/API_KEY": False, f"tenants/{ns}/DB_URL": False}
    assert moto.get_secret_value(SecretId=f"tenants/{ns}/API_KEY")["SecretString"] == CANARY

    # a secret of ours outside the scope (same owner tag): a prune must never reach it
    ours = [
        {"Key": OWNER_TAG, "Value": f"{ns}/shared"},
        {"Key": "app.kubernetes.io/managed-by", "Value": "vaultbundle"},
    ]
    moto.create_secret(Name=f"outside/{ns}/DB_URL", SecretString="x", Tags=ours)
    tenant.push({".env.prod": f"API_KEY={CANARY}\n".encode()})  # DB_URL leaves the bundle
    wait_for(lambda: stored(moto, ns).get(f"tenants/{ns}/DB_URL") is True, "the in-scope prune", 60)
    assert stored(moto, ns) == {
        f"tenants/{ns}/API_KEY": False,
        f"tenants/{ns}/DB_URL": True,  # scheduled for deletion (recovery window)
        f"outside/{ns}/DB_URL": False,
    }

    # a name that climbs out of the scope is refused before anything is written
    patch(tenant, "shared", {"storeRef": {"name": store}, "namePrefix": "../../escape/"})
    wait_for(lambda: state(tenant, "shared") == ("Failed", "PolicyDenied"), "outside the scope", 60)
    assert "outside the scope" in target(tenant, "shared")["message"]
    assert not any("escape" in name for name in stored(moto, ""))


def test_referent_identity_with_a_real_token_request(tenant: Scenario, moto: Any) -> None:
    """A ServiceAccount of the tenant's namespace, opted in: the apiserver mints its token, moto's STS exchanges it
    (AssumeRoleWithWebIdentity) for the role its annotation names, and the secrets are written as that role."""
    ns = tenant.ns
    annotations = {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/tenant-writer",
        "vaultbundle.io/token-audiences": "sts.amazonaws.com",
    }
    tenant.core.create_namespaced_service_account(ns, {"metadata": {"name": "aws-writer", "annotations": annotations}})
    aws = {"region": "us-east-1", "namePrefix": f"{ns}/", "auth": {"serviceAccountRef": {"name": "aws-writer"}}}
    apply(tenant, "referent", aws)
    wait_for(lambda: state(tenant, "referent") == ("Synced", "Synced"), "synced as the ServiceAccount's role", 60)
    assert moto.get_secret_value(SecretId=f"{ns}/API_KEY")["SecretString"] == CANARY

    tenant.core.patch_namespaced_service_account(  # the ServiceAccount withdraws its consent
        "aws-writer", ns, {"metadata": {"annotations": {"vaultbundle.io/token-audiences": None}}}
    )
    force(tenant, "referent", "withdrawn")
    wait_for(lambda: state(tenant, "referent") == ("Failed", "Forbidden"), "no token without the opt-in", 60)
