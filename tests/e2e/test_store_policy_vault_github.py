"""ClusterTargetStore enforcement for hashicorpVault and githubActions on the real apiserver, with an operator
process whose identity for those stores lives in ITS namespace (issue #13): a Vault token (and a ServiceAccount for
Kubernetes auth) and a GitHub token, all broader than any one tenant's scope.

* Vault: the bed's OpenBao behind a recording TLS front (a store's address must be https); GitHub: the HTTPS GitHub
  fake, which opens every sealed box and records every request.
* Without a store that admits the namespace, the tenant cannot use the operator's identity: `PolicyDenied`, and no
  request at all reaches the server.
* With one, only its scope is writable: a path / repository / environment outside it is `PolicyDenied` and nothing
  reaches the server for it; `namespaceSelector` (Vault) and `namespaces` (GitHub) decide who may use it.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from e2e.fakes.github_actions import FakeGitHubServer, start_in_process
from kubernetes import client as k8s
from tests.conftest import REPO
from tests.e2e.helpers import wait_for
from tests.e2e.test_operator import CANARY, Scenario, kubectl, start_operator, stop_operator
from tests.e2e.test_store_policy import bundle_tenant, force, state, target
from tests.e2e.tls_front import TlsFront

pytestmark = [pytest.mark.testbed, pytest.mark.slow]
hvac = pytest.importorskip("hvac")

GROUP, VERSION = "vaultbundle.io", "v1alpha1"
OPERATOR_NS = f"vbstore-{uuid.uuid4().hex[:6]}"
AUDIENCES_ANNOTATION = "vaultbundle.io/token-audiences"
POLICY = """
path "secret/data/tenants/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/tenants/*" { capabilities = ["create", "read", "update"] }
"""


def _pki(testbed: dict[str, str]) -> tuple[Path, Path]:
    """The bed's 127.0.0.1 server certificate and key (signed by TESTBED_CA_FILE)."""
    pki = Path(testbed["TESTBED_DIR"]) / "pki"
    return pki / "keyvault.crt", pki / "keyvault.key"


@pytest.fixture(scope="module")
def kube(testbed: dict[str, str]) -> Iterator[k8s.ApiClient]:
    from kubernetes import config as k8s_config

    with k8s_config.new_client_from_config(config_file=testbed["KUBECONFIG"]) as api:
        yield api


@pytest.fixture(scope="module")
def root(testbed: dict[str, str]) -> Any:
    client = hvac.Client(url=testbed["VAULT_ADDR"], token=testbed["VAULT_TOKEN"])
    client.sys.create_or_update_policy("vbstore-tenants", POLICY)
    return client


@pytest.fixture(scope="module")
def github(testbed: dict[str, str]) -> Iterator[FakeGitHubServer]:
    cert, key = _pki(testbed)
    server = start_in_process(tls=(str(cert), str(key)))
    yield server
    server.stop()


def _operator_secret(core: k8s.CoreV1Api, name: str, data: dict[str, str]) -> None:
    core.create_namespaced_secret(OPERATOR_NS, {"metadata": {"name": name}, "stringData": data})


@pytest.fixture(scope="module")
def store_operator(
    testbed: dict[str, str], kube: k8s.ApiClient, root: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The operator, in namespace OPERATOR_NS holding the stores' Secrets (a Vault token that may write under every
    tenant's path, the GitHub token, the bed's CA). It trusts the bed's CA for GitHub, as an operator image trusts a
    GitHub Enterprise Server's CA."""
    kubectl(testbed, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(testbed, "wait", "--for=condition=Established", "crd/clustertargetstores.vaultbundle.io", "--timeout=30s")
    core = k8s.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": OPERATOR_NS}})
    token = root.auth.token.create(policies=["vbstore-tenants"], ttl="2h")["auth"]["client_token"]
    _operator_secret(core, "vault-token", {"token": token})
    _operator_secret(core, "vault-ca", {"ca.crt": Path(testbed["TESTBED_CA_FILE"]).read_text()})
    _operator_secret(core, "gh-token", {"token": "testbed-token"})  # the GitHub fake's token
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    env = {"POD_NAMESPACE": OPERATOR_NS, "REQUESTS_CA_BUNDLE": testbed["TESTBED_CA_FILE"]}
    process, _ = start_operator(testbed, log, env=env)
    try:
        yield log
    finally:
        stop_operator(process, log)
        core.delete_namespace(OPERATOR_NS)


@pytest.fixture
def tenant(testbed: dict[str, str], kube: k8s.ApiClient, store_operator: Path) -> Iterator[Scenario]:
    with bundle_tenant(testbed, kube) as made:
        yield made


@pytest.fixture
def vault_front(testbed: dict[str, str]) -> Iterator[TlsFront]:
    """A TLS front of its own per test: its record holds exactly this test's Vault requests."""
    port = urlsplit(testbed["VAULT_ADDR"]).port
    assert port is not None
    with TlsFront(port, *_pki(testbed)) as front:
        yield front


@pytest.fixture
def make_store(kube: k8s.ApiClient) -> Iterator[Callable[[str, dict[str, Any], dict[str, Any], dict[str, Any]], str]]:
    custom = k8s.CustomObjectsApi(kube)
    made: list[str] = []

    def create(kind: str, connection: dict[str, Any], conditions: dict[str, Any], scope: dict[str, Any]) -> str:
        name = f"{kind.lower()[:6]}-{uuid.uuid4().hex[:8]}"
        spec = {kind: connection, "conditions": conditions, "scope": scope}
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterTargetStore", "metadata": {"name": name}}
        custom.create_cluster_custom_object(GROUP, VERSION, "clustertargetstores", {**body, "spec": spec})
        made.append(name)
        return name

    yield create
    for name in made:
        custom.delete_cluster_custom_object(GROUP, VERSION, "clustertargetstores", name)


# --- helpers ---------------------------------------------------------------------------------------------------------
def apply(tenant: Scenario, name: str, kind: str, body: dict[str, Any]) -> None:
    tenant.apply(name, {}, targets=[{"name": "ext", kind: body}])


def patch(tenant: Scenario, name: str, kind: str, body: dict[str, Any]) -> None:
    targets = [{"name": "ext", kind: body}]
    tenant.custom.patch_namespaced_custom_object(
        GROUP, VERSION, tenant.ns, "vaultbundles", name, {"spec": {"targets": targets}}
    )


def vault_data(root: Any, path: str) -> dict[str, Any] | None:
    try:
        response = root.secrets.kv.v2.read_secret_version(path, mount_point="secret", raise_on_deleted_version=True)
    except hvac.exceptions.InvalidPath:
        return None
    return dict(response["data"]["data"])


def vault_owner(root: Any, path: str) -> str:
    meta = root.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")["data"]
    return str((meta.get("custom_metadata") or {}).get("vaultbundle-owner"))


def github_requests(server: FakeGitHubServer) -> list[tuple[str, str]]:
    with server.state.lock:
        return list(server.state.requests)


def github_held(server: FakeGitHubServer, **where: str) -> dict[str, str]:
    return {s["name"]: s["value"] for s in server.state.dump() if all(s.get(k) == v for k, v in where.items())}


def vault_store(front: TlsFront, auth: dict[str, Any]) -> dict[str, Any]:
    return {"address": front.url, "caBundleSecretRef": {"name": "vault-ca"}, "auth": auth}


VAULT_SCOPE = {"mount": "secret", "pathPrefix": "tenants/{namespace}"}


# --- HashiCorp Vault -------------------------------------------------------------------------------------------------
def test_vault_store_admits_by_selector_and_confines_writes_to_its_scope(
    tenant: Scenario, vault_front: TlsFront, root: Any, make_store: Callable[..., str]
) -> None:
    ns = tenant.ns
    label = f"vbstore-{uuid.uuid4().hex[:6]}"
    name = make_store(
        "hashicorpVault",
        vault_store(vault_front, {"tokenSecretRef": {"name": "vault-token"}}),
        {"namespaceSelector": {"matchLabels": {"e2e.vaultbundle.io/store": label}}},
        VAULT_SCOPE,
    )
    # not admitted yet: the operator's token is not lent, and nothing at all reaches Vault
    apply(tenant, "v", "hashicorpVault", {"storeRef": {"name": name}, "path": f"tenants/{ns}/app"})
    wait_for(lambda: state(tenant, "v") == ("Failed", "PolicyDenied"), "not admitted", 60)
    assert "does not admit namespace" in target(tenant, "v")["message"]
    assert vault_front.requests() == [] and vault_data(root, f"tenants/{ns}/app") is None

    tenant.core.patch_namespace(ns, {"metadata": {"labels": {"e2e.vaultbundle.io/store": label}}})
    force(tenant, "v", "labelled")
    wait_for(lambda: state(tenant, "v") == ("Synced", "Synced"), "synced through the store", 60)
    assert vault_data(root, f"tenants/{ns}/app") == {"API_KEY": CANARY, "DB_URL": "postgres://db/app"}
    assert vault_owner(root, f"tenants/{ns}/app") == f"{ns}/v"
    message = target(tenant, "v").get("message", "") + str(tenant.events())
    assert vault_front.url not in message  # the tenant is told the store's name, not its address

    # the operator's token may write under every tenant: the scope, not the token, stops this one
    other = f"tenants/{ns}x/app"
    seen = len(vault_front.requests())
    patch(tenant, "v", "hashicorpVault", {"storeRef": {"name": name}, "path": other})
    wait_for(lambda: state(tenant, "v") == ("Failed", "PolicyDenied"), "outside the scope", 60)
    assert "outside the scope" in target(tenant, "v")["message"]
    assert vault_data(root, other) is None
    assert not any(f"{ns}x" in path for _, path in vault_front.requests()[seen:])

    # another mount (the token could reach none, but the scope refuses before asking)
    patch(tenant, "v", "hashicorpVault", {"storeRef": {"name": name}, "path": f"tenants/{ns}/app", "mount": "kv"})
    wait_for(lambda: "Vault mount" in target(tenant, "v").get("message", ""), "another mount is refused", 60)
    assert not any("/v1/kv" in path for _, path in vault_front.requests())


def test_vault_store_kubernetes_auth_with_a_service_account_of_the_operator_namespace(
    testbed: dict[str, str], tenant: Scenario, vault_front: TlsFront, root: Any, make_store: Callable[..., str]
) -> None:
    ns = tenant.ns
    account, role = f"vb-vault-{uuid.uuid4().hex[:6]}", f"vbstore-{uuid.uuid4().hex[:6]}"
    mount = testbed["VAULT_KUBERNETES_AUTH_MOUNT"]
    root.auth.kubernetes.create_role(
        role,
        bound_service_account_names=[account],
        bound_service_account_namespaces=[OPERATOR_NS],
        policies=["vbstore-tenants"],
        audience="vault",
        mount_point=mount,
    )
    tenant.core.create_namespaced_service_account(
        OPERATOR_NS, {"metadata": {"name": account, "annotations": {AUDIENCES_ANNOTATION: "vault"}}}
    )
    # the tenant's namesake ServiceAccount: never used (and Vault's role would not accept it)
    tenant.core.create_namespaced_service_account(
        ns, {"metadata": {"name": account, "annotations": {AUDIENCES_ANNOTATION: "vault"}}}
    )
    name = make_store(
        "hashicorpVault",
        vault_store(vault_front, {"kubernetes": {"role": role, "serviceAccountName": account, "mount": mount}}),
        {"namespaces": [ns]},
        VAULT_SCOPE,
    )
    apply(tenant, "k", "hashicorpVault", {"storeRef": {"name": name}, "path": f"tenants/{ns}/k8s"})
    wait_for(lambda: state(tenant, "k") == ("Synced", "Synced"), "synced with Kubernetes auth", 60)
    assert vault_data(root, f"tenants/{ns}/k8s") == {"API_KEY": CANARY, "DB_URL": "postgres://db/app"}
    assert ("POST", f"/v1/auth/{mount}/login") in vault_front.requests()


# --- GitHub Actions --------------------------------------------------------------------------------------------------
def test_github_store_admits_listed_namespaces_and_confines_writes_to_its_scope(
    tenant: Scenario, github: FakeGitHubServer, make_store: Callable[..., str], kube: k8s.ApiClient
) -> None:
    ns = tenant.ns
    github.state.reset()
    # '_' separates: namespace names cannot contain it (with '-', acme/vb-1-web would be namespace vb's too)
    scope = {"repositories": ["acme/{namespace}_*"], "environments": ["{namespace}_*"]}
    connection = {"apiURL": github.base_url, "auth": {"tokenSecretRef": {"name": "gh-token"}}}
    name = make_store("githubActions", connection, {"namespaces": [f"{ns}-someone-else"]}, scope)
    body = {"storeRef": {"name": name}, "repository": f"acme/{ns}_web"}

    apply(tenant, "g", "githubActions", body)
    wait_for(lambda: state(tenant, "g") == ("Failed", "PolicyDenied"), "not listed", 60)
    assert github_requests(github) == []  # the operator's GitHub token was never sent

    k8s.CustomObjectsApi(kube).patch_cluster_custom_object(
        GROUP, VERSION, "clustertargetstores", name, {"spec": {"conditions": {"namespaces": [ns]}}}
    )
    force(tenant, "g", "listed")
    wait_for(lambda: state(tenant, "g") == ("Synced", "Synced"), "synced through the store", 60)
    assert github_held(github, scope="repo", owner="acme", repo=f"{ns}_web") == {
        "API_KEY": CANARY,  # the fake opened the sealed box: this is what GitHub would hold
        "DB_URL": "postgres://db/app",
    }

    for outside, needle, path in (
        ({"repository": f"acme/{ns}x_web"}, "repository", f"/repos/acme/{ns}x_web"),
        ({"repository": f"acme/{ns}_web", "environment": "production"}, "environment", "/environments/production"),
        ({"organization": "acme"}, "organization", "/orgs/acme"),  # the store grants no organization secrets
    ):
        patch(tenant, "g", "githubActions", {"storeRef": {"name": name}, **outside})
        wait_for(
            lambda n=needle: (
                state(tenant, "g") == ("Failed", "PolicyDenied")
                and f"{n} " in target(tenant, "g").get("message", "").split(" is outside the scope")[0]
            ),
            f"{needle} outside the scope",
            60,
        )
        assert not [p for _, p in github_requests(github) if path in p]  # nothing reached GitHub for it

    patch(tenant, "g", "githubActions", body | {"environment": f"{ns}_prod"})
    wait_for(lambda: state(tenant, "g") == ("Synced", "Synced"), "an environment in scope", 60)
    assert github_held(github, scope="environment", environment=f"{ns}_prod") == {
        "API_KEY": CANARY,
        "DB_URL": "postgres://db/app",
    }
    assert base64.b64encode(CANARY.encode()).decode() not in str(target(tenant, "g"))
