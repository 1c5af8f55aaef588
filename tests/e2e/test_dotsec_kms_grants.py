"""A dotsec source's KMS key on the real apiserver through the real operator, with the tenant's ServiceAccount (web
identity) or an awsKms ClusterTargetStore grant, against the bed's moto KMS and STS behind a recording TLS front.

The operator process HAS an ambient AWS identity (its own access key in the environment, and the front as its
default endpoint), as IRSA would give in a cluster. The front records every byte sent to AWS, so the tests can show
which key signed each request. moto's STS accepts any web identity token without checking it, so the test checks
the token itself: the apiserver's TokenReview must authenticate it as the tenant's ServiceAccount for the
sts.amazonaws.com audience, and the exchange must carry no signature at all.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from kubernetes import client as k8s
from tests.conftest import REPO
from tests.dotsec_writer import write_sec
from tests.e2e.helpers import wait_for
from tests.e2e.test_dotsec_source import CANARY, Tenant
from tests.e2e.test_operator import kubectl, start_operator, stop_operator
from tests.e2e.tls_front import TlsFront, bed_aws_front

from vaultbundle.dotsec_kms import ENCRYPTION_CONTEXT

pytestmark = [pytest.mark.testbed, pytest.mark.slow]
REGION = "us-east-1"
AMBIENT_KEY = "AKIAOPERATORAMBIENT7"  # the operator's own identity: only a store may lend it
Request = tuple[str, dict[str, str], bytes]


@pytest.fixture(scope="module")
def front(testbed: dict[str, str]) -> Iterator[TlsFront]:
    with bed_aws_front(testbed) as made:
        yield made


@pytest.fixture(scope="module")
def kube(testbed: dict[str, str]) -> Iterator[k8s.ApiClient]:
    from kubernetes import config as k8s_config

    with k8s_config.new_client_from_config(config_file=testbed["KUBECONFIG"]) as api:
        yield api


@pytest.fixture(scope="module")
def ambient_operator(
    testbed: dict[str, str], front: TlsFront, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    kubectl(testbed, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(testbed, "wait", "--for=condition=Established", "crd/clustertargetstores.vaultbundle.io", "--timeout=30s")
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    ambient = {
        "AWS_ACCESS_KEY_ID": AMBIENT_KEY,
        "AWS_SECRET_ACCESS_KEY": "operator-ambient-secret",
        "AWS_ENDPOINT_URL": front.url,  # whatever reaches AWS with the ambient chain passes the recorder too
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CA_BUNDLE": testbed["TESTBED_CA_FILE"],
    }
    process, _ = start_operator(testbed, log, env=ambient)
    try:
        yield
    finally:
        stop_operator(process, log)


@pytest.fixture
def tenant(kube: k8s.ApiClient, ambient_operator: None) -> Iterator[Tenant]:
    made = Tenant(kube)
    yield made
    made.core.delete_namespace(made.ns)


def kms_admin(testbed: dict[str, str]) -> Any:
    return boto3.client(
        "kms",
        region_name=REGION,
        endpoint_url=testbed["AWS_ENDPOINT_URL"],
        aws_access_key_id=testbed["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=testbed["AWS_SECRET_ACCESS_KEY"],
    )


def sec_file(kms: Any, key_arn: str, value: str) -> str:
    dek = os.urandom(32)
    wrapped = kms.encrypt(KeyId=key_arn, Plaintext=dek, EncryptionContext=ENCRYPTION_CONTEXT)["CiphertextBlob"]
    return write_sec(f"# @provider=aws\nAPI_TOKEN=<<{value}>>\n", dek=dek, wrapped_dek=wrapped)[0]


def parsed(stream: bytes) -> list[Request]:
    """The HTTP requests of one connection: (request line, headers in lower case, body)."""
    found: list[Request] = []
    position = 0
    while (end := stream.find(b"\r\n\r\n", position)) >= 0:
        head = stream[position:end].decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        length = int(headers.get("content-length", "0"))
        found.append((head[0], headers, stream[end + 4 : end + 4 + length]))
        position = end + 4 + length
    return found


def sent(front: TlsFront, since: int) -> list[Request]:
    return [request for stream in front.streams()[since:] for request in parsed(stream)]


def signer(request: Request) -> str:
    """The access key id that signed *request* ("" when unsigned)."""
    match = re.search(r"Credential=([A-Z0-9]+)/", request[1].get("authorization", ""))
    return match.group(1) if match else ""


def decrypts(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r[1].get("x-amz-target") == "TrentService.Decrypt"]


def force(tenant: Tenant, name: str, token: str) -> None:
    annotations = {"metadata": {"annotations": {"vaultbundle.io/force-sync": token}}}
    tenant.custom.patch_namespaced_custom_object(
        "vaultbundle.io", "v1alpha1", tenant.ns, "vaultbundles", name, annotations
    )


def test_web_identity_exchanges_a_token_request_of_the_tenants_service_account(
    tenant: Tenant, front: TlsFront, testbed: dict[str, str], kube: k8s.ApiClient
) -> None:
    kms = kms_admin(testbed)
    key = kms.create_key(Description="dotsec web identity e2e")["KeyMetadata"]["Arn"]
    account = key.split(":")[4]
    annotations = {
        "eks.amazonaws.com/role-arn": f"arn:aws:iam::{account}:role/dotsec-reader",
        "vaultbundle.io/token-audiences": "sts.amazonaws.com",
    }
    tenant.core.create_namespaced_service_account(
        tenant.ns, {"metadata": {"name": "kms-reader", "annotations": annotations}}
    )
    tenant.config_map("web-sec", {".sec": sec_file(kms, key, CANARY)})
    since = len(front.streams())
    auth = {"serviceAccountRef": {"name": "kms-reader"}}
    source = {
        "configMapRef": {"name": "web-sec"},
        "kms": {"region": REGION, "endpoint": front.url, "stsEndpoint": front.url, "auth": auth},
    }
    tenant.apply("web", "web-env", source)
    wait_for(lambda: tenant.reason("web") == "Synced", "the web identity sync", 90)
    assert tenant.data("web-env") == {"API_TOKEN": CANARY}

    requests = sent(front, since)
    exchanges = [r for r in requests if b"Action=AssumeRoleWithWebIdentity" in r[2]]
    assert len(exchanges) == 1
    (exchange,) = exchanges
    assert "authorization" not in exchange[1] and signer(exchange) == ""  # unsigned: nobody's credentials
    form = parse_qs(exchange[2].decode())
    assert form["RoleArn"] == [annotations["eks.amazonaws.com/role-arn"]]
    review = k8s.AuthenticationV1Api(kube).create_token_review(
        {"spec": {"token": form["WebIdentityToken"][0], "audiences": ["sts.amazonaws.com"]}}
    )
    assert review.status.authenticated, review.status.error
    assert review.status.user.username == f"system:serviceaccount:{tenant.ns}:kms-reader"
    assert review.status.audiences == ["sts.amazonaws.com"]
    (decrypt,) = decrypts(requests)
    assert signer(decrypt) not in ("", AMBIENT_KEY, testbed["AWS_ACCESS_KEY_ID"])  # the issued session's key
    assert AMBIENT_KEY not in {signer(r) for r in requests}  # the operator's identity reached AWS for nobody

    force(tenant, "web", "again")  # a cycle with the file unchanged: no token, no STS, no Decrypt
    wait_for(lambda: tenant.reason("web") == "Synced", "the forced cycle", 60)
    assert [r for r in sent(front, since) if b"AssumeRoleWithWebIdentity" in r[2]] == exchanges


def test_a_kms_store_grant_admits_namespaces_and_refuses_keys_outside_its_scope(
    tenant: Tenant, front: TlsFront, testbed: dict[str, str], kube: k8s.ApiClient
) -> None:
    kms = kms_admin(testbed)
    granted = kms.create_key(Description="dotsec store e2e")["KeyMetadata"]["Arn"]
    other = kms.create_key(Description="dotsec store e2e, not lent")["KeyMetadata"]["Arn"]
    account = granted.split(":")[4]
    name = f"kms-{uuid.uuid4().hex[:8]}"
    store = {
        "apiVersion": "vaultbundle.io/v1alpha1",
        "kind": "ClusterTargetStore",
        "metadata": {"name": name},
        "spec": {
            "awsKms": {"region": REGION, "endpoint": front.url, "identity": {"ambient": {}}},
            "conditions": {"namespaceSelector": {"matchLabels": {"e2e.vaultbundle.io/store": name}}},
            "scope": {"keys": [granted, f"arn:aws:kms:{REGION}:{account}:alias/tenants/{{namespace}}"]},
        },
    }
    custom = k8s.CustomObjectsApi(kube)
    custom.create_cluster_custom_object("vaultbundle.io", "v1alpha1", "clustertargetstores", store)
    try:
        tenant.config_map("app-sec", {".sec": sec_file(kms, granted, CANARY)})
        since = len(front.streams())
        tenant.apply("app", "app-env", {"configMapRef": {"name": "app-sec"}, "kms": {"storeRef": {"name": name}}})
        wait_for(lambda: tenant.reason("app") == "PolicyDenied", "not admitted yet", 60)
        assert "does not admit namespace" in tenant.status("app")["conditions"][0]["message"]
        assert tenant.data("app-env") is None and decrypts(sent(front, since)) == []

        tenant.core.patch_namespace(tenant.ns, {"metadata": {"labels": {"e2e.vaultbundle.io/store": name}}})
        force(tenant, "app", "labelled")
        wait_for(lambda: tenant.reason("app") == "Synced", "synced through the grant", 60)
        assert tenant.data("app-env") == {"API_TOKEN": CANARY}
        granted_calls = decrypts(sent(front, since))
        assert granted_calls and {signer(r) for r in granted_calls} == {AMBIENT_KEY}  # the store lends it

        tenant.config_map("app-sec", {".sec": sec_file(kms, other, "OUT-OF-SCOPE-" + CANARY)})
        wait_for(lambda: tenant.reason("app") == "PolicyDenied", "a key outside the scope", 60)
        ready = next(c for c in tenant.status("app")["conditions"] if c["type"] == "Ready")
        assert "spec.scope.keys" in ready["message"] and other not in ready["message"]
        assert tenant.data("app-env") == {"API_TOKEN": CANARY}  # nothing written
    finally:
        custom.delete_cluster_custom_object("vaultbundle.io", "v1alpha1", "clustertargetstores", name)
