"""Workload identity federation for GCP Secret Manager and Azure Key Vault (#13 referent identity): spec parsing,
the store policy, and what `connect` hands the cloud SDKs (a token of the tenant's own ServiceAccount, minted per
sync for the cloud's audience; never the operator's identity). The exchanges themselves run against the test bed's
STS / Entra fakes in tests/e2e/test_federation.py."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.kit.kube import MemoryKube
from vaultbundle import stores
from vaultbundle.digest import Digester
from vaultbundle.egress import EgressDenied, EgressPolicy
from vaultbundle.errors import PolicyDeniedError, SpecError, TargetError
from vaultbundle.targets import azure_key_vault as akv
from vaultbundle.targets import gcp_secret_manager as gcp
from vaultbundle.targets import grants
from vaultbundle.targets.base import Owner, TargetContext

GCP = "spec.targets[0].gcpSecretManager"
AZURE = "spec.targets[0].azureKeyVault"
OWNER = Owner("team-a", "web", "0f0e0d0c-0000-0000-0000-000000000001")
PROVIDER = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/tenants/providers/cluster"
IMPERSONATE = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/w@p.iam.gserviceaccount.com:generateAccessToken"
TENANT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "66666666-7777-8888-9999-000000000000"


def gcp_raw(**auth: Any) -> dict[str, Any]:
    return {"project": "acme-prod", "auth": {"serviceAccountRef": {"name": "gcp-writer"}, "audience": PROVIDER, **auth}}


def azure_raw(**auth: Any) -> dict[str, Any]:
    body = {"serviceAccountRef": {"name": "kv-writer"}, "tenantID": TENANT_ID, "clientID": CLIENT_ID, **auth}
    return {"vaultURL": "https://team-a.vault.azure.net", "auth": body}


# --- parsing -------------------------------------------------------------------------------------------------------
def test_gcp_workload_identity_defaults() -> None:
    spec = gcp.KIND.parse(gcp_raw(), GCP)
    identity = spec.workload_identity
    assert identity is not None and spec.credentials_ref is None
    assert (identity.service_account, identity.audience) == ("gcp-writer", PROVIDER)
    assert identity.token_url == "https://sts.googleapis.com/v1/token" and identity.impersonation_url == ""
    assert identity.token_audience == "https:" + PROVIDER  # the provider's default allowed audience
    spec = gcp.KIND.parse(
        gcp_raw(serviceAccountImpersonationURL=IMPERSONATE, tokenURL="https://sts.example/v1/token"), GCP
    )
    assert spec.workload_identity is not None and spec.workload_identity.impersonation_url == IMPERSONATE


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (gcp_raw(audience="//iam.googleapis.com/projects/p/pools/x"), f"{GCP}.auth.audience must name a workload"),
        (gcp_raw(audience=""), f"{GCP}.auth.audience is required"),
        (gcp_raw(tokenURL="http://sts.googleapis.com/v1/token"), f"{GCP}.auth.tokenURL must be an https URL"),
        (
            gcp_raw(serviceAccountImpersonationURL="https://evil.example/steal"),
            f"{GCP}.auth.serviceAccountImpersonationURL must be an https URL",
        ),
        (gcp_raw(credentialsFile="/etc/x"), f"{GCP}.auth: unknown fields credentialsFile"),
        ({"project": "acme-prod", "auth": {"audience": PROVIDER}}, f"{GCP}.auth.serviceAccountRef is required"),
        (gcp_raw(serviceAccountRef={"name": "x", "namespace": "other"}), "serviceAccountRef must be {name"),
        (gcp_raw(serviceAccountRef={"name": "Not_A_Name"}), "serviceAccountRef.name is not a valid"),
        ({**gcp_raw(), "credentialsSecretRef": {"name": "key"}}, "excludes credentialsSecretRef and insecure"),
    ],
)
def test_gcp_workload_identity_errors_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        gcp.KIND.parse(raw, GCP)


def test_azure_workload_identity() -> None:
    spec = akv.KIND.parse(azure_raw(authorityHost="https://login.microsoftonline.us"), AZURE)
    assert spec.workload_identity == akv.WorkloadIdentity("kv-writer", TENANT_ID, CLIENT_ID)
    assert spec.client_secret is None and spec.authority_host == "https://login.microsoftonline.us"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (azure_raw(tenantID="contoso"), f"{AZURE}.auth.tenantID must be a GUID"),
        (azure_raw(clientID=""), f"{AZURE}.auth.clientID is required"),
        (azure_raw(clientSecretRef={"name": "sp"}), "clientSecretRef and serviceAccountRef exclude each other"),
        (azure_raw(managedIdentityClientID=CLIENT_ID), "managedIdentityClientID excludes"),
        (
            {"vaultURL": "https://v.vault.azure.net", "auth": {"clientID": CLIENT_ID}},
            f"{AZURE}.auth.clientID is only used with serviceAccountRef",
        ),
        (azure_raw(serviceAccountRef={"name": "kv", "namespace": "team-b"}), "serviceAccountRef must be {name"),
    ],
)
def test_azure_workload_identity_errors_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        akv.KIND.parse(raw, AZURE)


# --- policy --------------------------------------------------------------------------------------------------------
def test_a_service_account_is_tenant_supplied_credentials() -> None:
    for kind, raw in ((stores.GCP, gcp_raw()), (stores.AZURE, azure_raw())):
        grant = stores.authorize(kind, raw, None, namespace="team-a", labels={}, vb_name="web")
        assert grant.store is None  # the tenant's own identity: no ClusterTargetStore needed, no operator identity
    without = {"project": "acme-prod"}
    with pytest.raises(PolicyDeniedError, match="no ambient identity for tenants"):
        stores.authorize(stores.GCP, without, None, namespace="team-a", labels={}, vb_name="web")
    # with storeRef the identity is the store's: a tenant's federation settings are connection fields
    with pytest.raises(SpecError, match="remove project, auth"):
        stores.authorize(stores.GCP, {**gcp_raw(), "storeRef": {"name": "s"}}, None, "team-a", {}, "web")


# --- connect ---------------------------------------------------------------------------------------------------------
def kube_with(account: str, audiences: str | None) -> MemoryKube:
    kube = MemoryKube()
    annotations = {} if audiences is None else {"vaultbundle.io/token-audiences": audiences}
    kube.service_accounts[("team-a", account)] = {"metadata": {"name": account, "annotations": annotations}}
    return kube


async def context(kube: MemoryKube, kind: str, raw: dict[str, Any]) -> TargetContext:
    async def read_secret(name: str, key: str) -> str:
        raise AssertionError("federation reads no Secret")

    return TargetContext(
        kube=kube,
        owner=OWNER,
        digester=Digester(b"k" * 32),
        previous={},
        read_secret=read_secret,
        grant=await grants.authorize_target(kube, OWNER, kind, raw),
        egress=EgressPolicy(allow_local=True),
    )


class Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.status, self.headers, self.data = 200, {}, json.dumps(body).encode()


class RecordingRequest:
    """A google.auth transport Request that answers STS and IAM Credentials like Google does, and records."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None, **_: Any) -> Response:
        text = body.decode() if isinstance(body, bytes) else str(body or "")
        fields = {k: v[0] for k, v in parse_qs(text).items()} if "=" in text and "{" not in text else json.loads(text)
        self.seen.append((url, fields, dict(headers or {})))
        if url.endswith(":generateAccessToken"):
            return Response({"accessToken": "impersonated", "expireTime": "2099-01-01T00:00:00Z"})
        return Response({"access_token": "federated", "token_type": "Bearer", "expires_in": 3600})


async def test_gcp_exchanges_a_fresh_token_of_the_tenants_service_account() -> None:
    kube = kube_with("gcp-writer", "https:" + PROVIDER)
    raw = gcp_raw(serviceAccountImpersonationURL=IMPERSONATE)
    spec = gcp.KIND.parse(raw, GCP)
    assert spec.workload_identity is not None
    ctx = await context(kube, gcp.KIND.name, raw)
    credentials = gcp.credentials_for(ctx, gcp.KIND.name)
    federated = await gcp._federated(spec.workload_identity, ctx, credentials)
    assert kube.tokens == [
        {"namespace": "team-a", "name": "gcp-writer", "audiences": ["https:" + PROVIDER], "expirationSeconds": 600}
    ]
    assert credentials.egress is not None and IMPERSONATE in credentials.egress.pending
    assert "token-for" not in repr(federated.__dict__.get("_subject_token_supplier"))  # never in a repr
    request = RecordingRequest()
    federated.refresh(request)
    (sts_url, sts, sts_headers), (iam_url, _, iam_headers) = request.seen
    assert sts_url == "https://sts.googleapis.com/v1/token"
    assert sts["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert (sts["audience"], sts["subject_token"]) == (PROVIDER, "token-for-team-a-gcp-writer")
    assert sts["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert "authorization" not in {h.lower() for h in sts_headers}  # nothing of the operator's own rides along
    assert iam_url == IMPERSONATE and iam_headers["authorization"] == "Bearer federated"
    assert federated.token == "impersonated"


async def test_gcp_federation_needs_the_service_account_opt_in() -> None:
    kube = kube_with("gcp-writer", "sts.amazonaws.com")  # opted in for another audience only
    raw = gcp_raw()
    with pytest.raises(TargetError, match="does not allow tokens for audience") as refused:
        await gcp.KIND.connect(gcp.KIND.parse(raw, GCP), await context(kube, gcp.KIND.name, raw))
    assert refused.value.reason == "Forbidden" and "create_token" not in kube.calls


async def test_gcp_federation_errors_carry_no_remote_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth import exceptions

    class Refusing:
        def refresh(self, request: Any) -> None:
            raise exceptions.RefreshError("server said: internal detail 10.0.0.7", "{body}")

    spec = gcp.KIND.parse(gcp_raw(), GCP)
    with pytest.raises(TargetError) as failed:
        gcp._client(spec, None, Refusing())
    assert failed.value.reason == "AuthFailed" and "10.0.0.7" not in str(failed.value)
    assert "workload identity federation" in str(failed.value)


async def test_azure_presents_a_fresh_token_of_the_tenants_service_account(monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.identity

    made: list[dict[str, Any]] = []

    class Assertion:
        def __init__(self, tenant_id: str, client_id: str, func: Any, **options: Any) -> None:
            made.append({"tenant": tenant_id, "client": client_id, "assertion": func(), **options})

        def get_token(self, *scopes: str, **_: Any) -> Any:
            raise AssertionError("not called here")

    monkeypatch.setattr(azure.identity, "ClientAssertionCredential", Assertion)
    kube = kube_with("kv-writer", "api://AzureADTokenExchange")
    raw = azure_raw(authorityHost="https://login.microsoftonline.us")
    target = await akv.KIND.connect(akv.KIND.parse(raw, AZURE), await context(kube, akv.KIND.name, raw))
    assert made == [
        {
            "tenant": TENANT_ID,
            "client": CLIENT_ID,
            "assertion": "token-for-team-a-kv-writer",
            "authority": "https://login.microsoftonline.us",
            "retry_total": 2,
        }
    ]
    assert kube.calls.count("create_token") == 1
    assert target.describe() == "Azure Key Vault https://team-a.vault.azure.net"
    # the next sync mints a new token: federated clients are never cached across syncs
    await akv.KIND.connect(akv.KIND.parse(raw, AZURE), await context(kube, akv.KIND.name, raw))
    assert kube.calls.count("create_token") == 2 and len(made) == 2


async def test_azure_federation_needs_the_service_account_and_its_opt_in() -> None:
    raw = azure_raw()
    missing = MemoryKube()
    with pytest.raises(TargetError, match="not found; create the ServiceAccount") as absent:
        await akv.KIND.connect(akv.KIND.parse(raw, AZURE), await context(missing, akv.KIND.name, raw))
    assert absent.value.reason == "AuthFailed"
    silent = kube_with("kv-writer", None)
    with pytest.raises(TargetError, match="api://AzureADTokenExchange") as refused:
        await akv.KIND.connect(akv.KIND.parse(raw, AZURE), await context(silent, akv.KIND.name, raw))
    assert refused.value.reason == "Forbidden" and "create_token" not in silent.calls


@pytest.mark.parametrize(
    "auth",
    [
        {"tokenURL": "https://169.254.169.254/v1/token"},
        {"serviceAccountImpersonationURL": IMPERSONATE.replace("iamcredentials.googleapis.com", "169.254.169.254")},
    ],
)
async def test_gcp_federation_urls_pass_the_egress_policy(
    auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The STS and impersonation URLs are the tenant's: a metadata address is refused before any request."""
    from google.auth import identity_pool

    refreshed: list[str] = []
    monkeypatch.setattr(identity_pool.Credentials, "refresh", lambda self, request: refreshed.append("sent"))
    kube = kube_with("gcp-writer", "https:" + PROVIDER)
    raw = gcp_raw(**auth)
    with pytest.raises(EgressDenied, match=r"169\.254\.169\.254") as refused:
        await gcp.KIND.connect(gcp.KIND.parse(raw, GCP), await context(kube, gcp.KIND.name, raw))
    assert refused.value.reason == "PolicyDenied" and refreshed == []


async def test_azure_authority_host_passes_the_egress_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.identity

    monkeypatch.setattr(azure.identity, "ClientAssertionCredential", lambda *a, **k: pytest.fail("no credential"))
    kube = kube_with("kv-writer", "api://AzureADTokenExchange")
    raw = azure_raw(authorityHost="https://169.254.169.254")
    with pytest.raises(EgressDenied, match=r"169\.254\.169\.254"):
        await akv.KIND.connect(akv.KIND.parse(raw, AZURE), await context(kube, akv.KIND.name, raw))
