"""GCP and Azure workload identity federation on the real apiserver (#13, referent identity): the cloud decides
per namespace.

An operator process runs with an ambient identity of its own for both clouds (a token file of its own
ServiceAccount, as GKE / AKS workload identity would give it), which the fakes would accept. Tenants A and B each
own a ServiceAccount and a VaultBundle that signs in as it (`auth.serviceAccountRef`). The fakes verify every
presented token with a TokenReview against this apiserver and map its subject through their tables:

* tenant A writes where A's mapping allows, and nowhere else (Forbidden, nothing written);
* tenant B cannot use A's ServiceAccount: it can only name ServiceAccounts of its own namespace, and one of its
  own with the same name is a different subject, which A's identity does not trust;
* the operator's own identity never reaches a token endpoint (the ledgers show only tenant subjects).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import urllib3
from e2e.fakes.gcp_secret_manager import make_client
from google.api_core import exceptions as api
from google.cloud.secretmanager_v1 import SecretManagerServiceClient
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)
from kubernetes import client as k8s
from tests.conftest import REPO
from tests.e2e.helpers import keyvault_admin, wait_for
from tests.e2e.test_operator import CANARY, Scenario, kubectl, start_operator, stop_operator

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

PROJECT = "fed-project"
PROVIDER = "//iam.googleapis.com/projects/424242/locations/global/workloadIdentityPools/bed-pool/providers/bed-cluster"
ENTRA_TENANT = "00000000-0000-0000-0000-000000000000"  # the bed vault's directory (AZURE_KEYVAULT_TENANT_ID)
EXCHANGE = "api://AzureADTokenExchange"
OPERATOR_SA = "vaultbundle-operator"


def control(testbed: dict[str, str], base: str, method: str, path: str, body: Any = None) -> Any:
    """A test-only endpoint of a fake (HTTPS, the bed's CA)."""
    http = urllib3.PoolManager(ca_certs=testbed["TESTBED_CA_FILE"])
    data = None if body is None else json.dumps(body).encode()
    response = http.request(method, base + path, body=data, headers={"Content-Type": "application/json"})
    assert response.status == 200, response.data
    return json.loads(response.data)


def gcp_base(testbed: dict[str, str]) -> str:
    return testbed["GCP_IAM_CREDENTIALS_URL"]


def ledgers(testbed: dict[str, str]) -> list[dict[str, Any]]:
    gcp = control(testbed, gcp_base(testbed), "GET", "/_fake/token-requests")["value"]
    entra = control(testbed, testbed["AZURE_AUTHORITY_HOST"], "GET", "/_fake/token-requests")["value"]
    return [*gcp, *entra]


def subject(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


@dataclass(frozen=True)
class OperatorIdentity:
    namespace: str
    subject: str


@pytest.fixture(scope="module")
def kube(testbed: dict[str, str]) -> k8s.ApiClient:
    from kubernetes import config as k8s_config

    return k8s_config.new_client_from_config(config_file=testbed["KUBECONFIG"])


@pytest.fixture(scope="module")
def operator_identity(testbed: dict[str, str], kube: k8s.ApiClient) -> Iterator[OperatorIdentity]:
    """The operator's own ServiceAccount, trusted by both fakes for everything: if the operator ever signed in
    as itself for a tenant, the writes would succeed and its subject would be in the ledgers."""
    core = k8s.CoreV1Api(kube)
    namespace = f"vb-op-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": OPERATOR_SA}})
    me = subject(namespace, OPERATOR_SA)
    control(
        testbed,
        gcp_base(testbed),
        "PUT",
        "/_fake/federation",
        {"providers": [PROVIDER], "principals": {me: {"project": PROJECT, "namePrefix": ""}}},
    )
    apps = {"apps": {str(uuid.UUID(int=1)): {"tenantID": ENTRA_TENANT, "subjects": [me], "namePrefix": ""}}}
    control(testbed, testbed["AZURE_AUTHORITY_HOST"], "PUT", "/_fake/federation", apps)
    yield OperatorIdentity(namespace, me)
    core.delete_namespace(namespace)


def mint(kube: k8s.ApiClient, namespace: str, name: str, audience: str) -> str:
    body = {"spec": {"audiences": [audience], "expirationSeconds": 3600}}
    response = k8s.CoreV1Api(kube).create_namespaced_service_account_token(name, namespace, body)
    return str(response.status.token)


@pytest.fixture(scope="module")
def operator(
    testbed: dict[str, str], kube: k8s.ApiClient, operator_identity: OperatorIdentity, tmp_path_factory: Any
) -> Iterator[Path]:
    kubectl(testbed, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    home = tmp_path_factory.mktemp("operator")
    gcp_token, azure_token = home / "gcp-token", home / "azure-token"
    gcp_token.write_text(mint(kube, operator_identity.namespace, OPERATOR_SA, "https:" + PROVIDER))
    azure_token.write_text(mint(kube, operator_identity.namespace, OPERATOR_SA, EXCHANGE))
    adc = home / "adc.json"  # the operator's ambient Google identity (ADC): federation with its own token
    adc.write_text(
        json.dumps(
            {
                "type": "external_account",
                "audience": PROVIDER,
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_url": testbed["GCP_STS_URL"],
                "credential_source": {"file": str(gcp_token)},
            }
        )
    )
    ambient = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
        "AZURE_TENANT_ID": ENTRA_TENANT,
        "AZURE_CLIENT_ID": str(uuid.UUID(int=1)),
        "AZURE_FEDERATED_TOKEN_FILE": str(azure_token),
        "AZURE_AUTHORITY_HOST": testbed["AZURE_AUTHORITY_HOST"],
        # the bed's CA, as a cluster would mount its private CA: gRPC and google-auth (requests) use these
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": testbed["TESTBED_CA_FILE"],
        "REQUESTS_CA_BUNDLE": testbed["TESTBED_CA_FILE"],
    }
    log = home / "operator.log"
    process, _ = start_operator(testbed, log, env=ambient)
    try:
        yield log
    finally:
        stop_operator(process, log)
        text = log.read_text(errors="replace")
        for token in (gcp_token.read_text(), azure_token.read_text()):
            assert token[:40] not in text
        assert "eyJ" not in text  # no JWT of any ServiceAccount in the operator's log


@pytest.fixture
def tenants(testbed: dict[str, str], kube: k8s.ApiClient, operator: Path) -> Iterator[tuple[Scenario, Scenario]]:
    made = []
    for _ in range(2):
        scenario = Scenario(testbed, kube)
        scenario.push({".env.prod": f"API_KEY={CANARY}\nDB_URL=postgres://db/app\n".encode()})
        made.append(scenario)
    yield made[0], made[1]
    for scenario in made:
        scenario.core.delete_namespace(scenario.ns)


def account(tenant: Scenario, name: str, audience: str) -> str:
    annotations = {"vaultbundle.io/token-audiences": audience}
    tenant.core.create_namespaced_service_account(tenant.ns, {"metadata": {"name": name, "annotations": annotations}})
    return subject(tenant.ns, name)


def apply(tenant: Scenario, name: str, kind: str, body: dict[str, Any]) -> None:
    tenant.apply(name, {}, targets=[{"name": "cloud", kind: body}])


def patch(tenant: Scenario, name: str, kind: str, body: dict[str, Any]) -> None:
    targets = [{"name": "cloud", kind: body}]
    tenant.custom.patch_namespaced_custom_object(
        "vaultbundle.io", "v1alpha1", tenant.ns, "vaultbundles", name, {"spec": {"targets": targets}}
    )


def entry(tenant: Scenario, name: str) -> dict[str, Any]:
    targets: list[dict[str, Any]] = tenant.vb(name).get("status", {}).get("targets", [])
    return targets[0] if targets else {}


def state(tenant: Scenario, name: str) -> tuple[str, str]:
    found = entry(tenant, name)
    return (str(found.get("state", "")), str(found.get("reason", "")))


def message(tenant: Scenario, name: str) -> str:
    return str(entry(tenant, name).get("message", ""))


def settle(tenant: Scenario, name: str, expected: tuple[str, str], what: str) -> None:
    try:
        wait_for(lambda: state(tenant, name) == expected, what, 120)
    except pytest.fail.Exception:
        pytest.fail(f"{what}: target is {state(tenant, name)}: {message(tenant, name)}")


# --- GCP -----------------------------------------------------------------------------------------------------------
def gcp_ids(testbed: dict[str, str], prefix: str) -> dict[str, bytes]:
    """Secret ID -> latest payload of every secret of the project whose ID starts with *prefix* (admin view)."""
    client = make_client(testbed["GCP_SECRET_MANAGER_ENDPOINT"])
    found = {}
    for secret in client.list_secrets(request={"parent": f"projects/{PROJECT}"}):
        short = secret.name.rsplit("/", 1)[-1]
        if short.startswith(prefix):
            found[short] = client.access_secret_version(name=f"{secret.name}/versions/latest").payload.data
    return found


def gcp_target(testbed: dict[str, str], account_name: str, prefix: str, **auth: Any) -> dict[str, Any]:
    return {
        "project": PROJECT,
        "endpoint": testbed["GCP_SECRET_MANAGER_TLS_ENDPOINT"],
        "auth": {
            "serviceAccountRef": {"name": account_name},
            "audience": PROVIDER,
            "tokenURL": testbed["GCP_STS_URL"],
            **auth,
        },
        "naming": {"prefix": prefix},
    }


def test_gcp_the_pool_decides_per_namespace(
    testbed: dict[str, str], tenants: tuple[Scenario, Scenario], operator_identity: OperatorIdentity
) -> None:
    a, b = tenants
    a_subject = account(a, "team-a-writer", "https:" + PROVIDER)
    b_subject = account(b, "team-a-writer", "https:" + PROVIDER)  # same name, B's own namespace
    email = f"writer-{a.ns}@{PROJECT}.iam.gserviceaccount.com"
    control(
        testbed,
        gcp_base(testbed),
        "PUT",
        "/_fake/federation",
        {
            "principals": {a_subject: {"project": PROJECT, "namePrefix": f"{a.ns}-"}},
            "serviceAccounts": {email: {"project": PROJECT, "namePrefix": f"{a.ns}-sa-", "members": [a_subject]}},
        },
    )

    apply(a, "gcp", "gcpSecretManager", gcp_target(testbed, "team-a-writer", f"{a.ns}-"))
    settle(a, "gcp", ("Synced", "Synced"), "A synced as its own principal")
    assert gcp_ids(testbed, f"{a.ns}-") == {f"{a.ns}-API_KEY": CANARY.encode(), f"{a.ns}-DB_URL": b"postgres://db/app"}

    # outside A's binding: refused by the cloud, nothing written
    patch(a, "gcp", "gcpSecretManager", gcp_target(testbed, "team-a-writer", f"x{a.ns}-"))
    settle(a, "gcp", ("Failed", "Forbidden"), "A outside its binding")
    assert gcp_ids(testbed, f"x{a.ns}-") == {}

    # impersonating the Google service account A's principal may use
    impersonate = f"{gcp_base(testbed)}/v1/projects/-/serviceAccounts/{email}:generateAccessToken"
    body = gcp_target(testbed, "team-a-writer", f"{a.ns}-sa-", serviceAccountImpersonationURL=impersonate)
    patch(a, "gcp", "gcpSecretManager", body)
    settle(a, "gcp", ("Synced", "Synced"), "A synced as the impersonated service account")
    assert set(gcp_ids(testbed, f"{a.ns}-sa-")) == {f"{a.ns}-sa-API_KEY", f"{a.ns}-sa-DB_URL"}

    # B names "team-a-writer": only its own namespace's ServiceAccount of that name can be meant, whose subject
    # A's bindings do not trust: no write into A's names, directly or by impersonation
    apply(b, "gcp", "gcpSecretManager", gcp_target(testbed, "team-a-writer", f"{a.ns}-"))
    settle(b, "gcp", ("Failed", "Forbidden"), "B refused in A's names")
    patch(b, "gcp", "gcpSecretManager", body)
    settle(b, "gcp", ("Failed", "AuthFailed"), "B may not impersonate A's service account")
    assert set(gcp_ids(testbed, f"{a.ns}-")) == {
        f"{a.ns}-API_KEY",
        f"{a.ns}-DB_URL",
        f"{a.ns}-sa-API_KEY",
        f"{a.ns}-sa-DB_URL",
    }

    seen = [e for e in ledgers(testbed) if e.get("subject") in (a_subject, b_subject)]
    assert {e["subject"] for e in seen} == {a_subject, b_subject}
    assert not [e for e in ledgers(testbed) if e.get("subject") == operator_identity.subject]


# --- Azure ---------------------------------------------------------------------------------------------------------
def vault_names(testbed: dict[str, str], prefix: str) -> set[str]:
    with keyvault_admin(testbed) as client:
        return {p.name for p in client.list_properties_of_secrets() if p.name.startswith(prefix)}


def azure_target(testbed: dict[str, str], account_name: str, client_id: str, prefix: str) -> dict[str, Any]:
    return {
        "vaultURL": testbed["AZURE_KEYVAULT_URL"],
        "apiVersion": testbed["AZURE_KEYVAULT_API_VERSION"],
        "caBundleSecretRef": {"name": "vault-ca"},
        "auth": {
            "serviceAccountRef": {"name": account_name},
            "tenantID": ENTRA_TENANT,
            "clientID": client_id,
            "authorityHost": testbed["AZURE_AUTHORITY_HOST"],
        },
        "naming": {"prefix": prefix, "underscoresToDashes": True},
    }


def test_azure_the_app_decides_per_namespace(
    testbed: dict[str, str], tenants: tuple[Scenario, Scenario], operator_identity: OperatorIdentity
) -> None:
    a, b = tenants
    ca = Path(testbed["AZURE_KEYVAULT_CA_FILE"]).read_text()
    for tenant in tenants:
        tenant.secret("vault-ca", {"ca.crt": ca})
    a_subject = account(a, "kv-writer", EXCHANGE)
    b_subject = account(b, "kv-writer", EXCHANGE)
    app_a = str(uuid.uuid4())
    apps = {app_a: {"tenantID": ENTRA_TENANT, "subjects": [a_subject], "namePrefix": f"{a.ns}-"}}
    control(testbed, testbed["AZURE_AUTHORITY_HOST"], "PUT", "/_fake/federation", {"apps": apps})

    apply(a, "kv", "azureKeyVault", azure_target(testbed, "kv-writer", app_a, f"{a.ns}-"))
    settle(a, "kv", ("Synced", "Synced"), "A synced as its app")
    assert vault_names(testbed, f"{a.ns}-") == {f"{a.ns}-API-KEY", f"{a.ns}-DB-URL"}

    patch(a, "kv", "azureKeyVault", azure_target(testbed, "kv-writer", app_a, f"x{a.ns}-"))
    settle(a, "kv", ("Failed", "Forbidden"), "A outside its app's role assignment")
    assert vault_names(testbed, f"x{a.ns}-") == set()

    # B presents its own ServiceAccount's token for A's app: no federated credential of A's app matches it
    apply(b, "kv", "azureKeyVault", azure_target(testbed, "kv-writer", app_a, f"{a.ns}-"))
    settle(b, "kv", ("Failed", "AuthFailed"), "B refused by A's app")
    assert "AADSTS" not in message(b, "kv")  # no remote text in status
    # and B cannot name A's ServiceAccount: a name means one of B's own namespace
    apply(b, "kv2", "azureKeyVault", azure_target(testbed, "team-a-only", app_a, f"{a.ns}-"))
    settle(b, "kv2", ("Failed", "AuthFailed"), "no such ServiceAccount in B's namespace")
    assert "not found" in message(b, "kv2")

    entries = ledgers(testbed)
    mine = [e for e in entries if e.get("client_id") == app_a]
    assert {(e["subject"], e["outcome"]) for e in mine} >= {(a_subject, "issued"), (b_subject, "invalid_client")}
    assert not any(e.get("client_secret") for e in entries)
    assert not [e for e in entries if e.get("subject") == operator_identity.subject]


def test_the_fakes_verify_what_they_receive(
    testbed: dict[str, str], kube: k8s.ApiClient, operator_identity: OperatorIdentity
) -> None:
    """A real token of a trusted ServiceAccount, but for the wrong audience, and a forged one: both refused."""
    http = urllib3.PoolManager(ca_certs=testbed["TESTBED_CA_FILE"])
    namespace, name = operator_identity.namespace, OPERATOR_SA
    wrong_audience = mint(kube, namespace, name, "vault")
    header, _, signature = mint(kube, namespace, name, EXCHANGE).split(".")
    forged_body = json.dumps({"sub": subject(namespace, name), "aud": [EXCHANGE]}).encode()

    forged = ".".join([header, base64.urlsafe_b64encode(forged_body).decode().rstrip("="), signature])
    entra = f"{testbed['AZURE_AUTHORITY_HOST']}/{ENTRA_TENANT}/oauth2/v2.0/token"
    for assertion in (wrong_audience, forged):
        fields = {
            "grant_type": "client_credentials",
            "client_id": str(uuid.UUID(int=1)),  # the operator's app: it trusts this very ServiceAccount
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": "https://vault.azure.net/.default",
        }
        refused = http.request_encode_body("POST", entra, fields=fields, encode_multipart=False)
        assert refused.status == 400 and json.loads(refused.data)["error"] == "invalid_client"
        exchange = {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "audience": PROVIDER,
            "subject_token": assertion,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }
        sts = http.request_encode_body("POST", testbed["GCP_STS_URL"], fields=exchange, encode_multipart=False)
        assert sts.status == 400 and json.loads(sts.data)["error"] == "invalid_grant"
    # the TLS Secret Manager port refuses calls without a token it issued
    roots = Path(testbed["TESTBED_CA_FILE"]).read_bytes()
    call = grpc.composite_call_credentials(grpc.access_token_call_credentials("not-issued-here"))
    channel = grpc.secure_channel(
        testbed["GCP_SECRET_MANAGER_TLS_ENDPOINT"],
        grpc.composite_channel_credentials(grpc.ssl_channel_credentials(roots), call),
    )
    client = SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))
    with pytest.raises(api.Unauthenticated):
        client.get_secret(name=f"projects/{PROJECT}/secrets/anything")
