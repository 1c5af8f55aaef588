"""Smoke tests of the local test bed: each component, through the client library the product ships.

Each test must fail if its component misbehaves, and stay fast (a few seconds at most).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

pytestmark = pytest.mark.testbed

T = TypeVar("T")


def _eventually(probe: Callable[[], T | None], *, timeout: float = 30.0, what: str) -> T:
    """Poll ``probe`` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- Kubernetes ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kube(testbed: dict[str, str]) -> Iterator[Any]:
    from kubernetes import config

    with config.new_client_from_config(config_file=testbed["KUBECONFIG"]) as api_client:
        yield api_client


@pytest.fixture
def namespace(kube: Any) -> Iterator[str]:
    from kubernetes import client

    name = _unique("smoke")
    client.CoreV1Api(kube).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    client.CoreV1Api(kube).delete_namespace(name)


def _token_client(testbed: dict[str, str], token: str) -> Any:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = testbed["KUBE_APISERVER_URL"]
    configuration.ssl_ca_cert = testbed["KUBE_CA_FILE"]
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


def _service_account_token(kube: Any, namespace: str, name: str, audiences: list[str] | None = None) -> str:
    from kubernetes import client

    core = client.CoreV1Api(kube)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name)))
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=audiences or [], expiration_seconds=600)
    )
    token = core.create_namespaced_service_account_token(name, namespace, request).status.token
    assert token and token.count(".") == 2, "TokenRequest did not return a JWT"
    return str(token)


def test_kube_version(kube: Any) -> None:
    from kubernetes import client

    assert client.VersionApi(kube).get_code().git_version == "v1.34.4"


def test_kube_namespace_gets_default_service_account_and_deletes(kube: Any) -> None:
    """kube-controller-manager at work: default ServiceAccount, root CA ConfigMap, namespace deletion."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube)
    name = _unique("smoke-ns")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def default_sa() -> bool:
        return any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items)

    _eventually(default_sa, what="the default ServiceAccount")
    _eventually(
        lambda: any(cm.metadata.name == "kube-root-ca.crt" for cm in core.list_namespaced_config_map(name).items),
        what="the kube-root-ca.crt ConfigMap",
    )
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    _eventually(gone, what=f"namespace {name} to be deleted")


def test_kube_rbac_denies_then_allows_service_account(kube: Any, namespace: str, testbed: dict[str, str]) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    token = _service_account_token(kube, namespace, "unprivileged")
    with _token_client(testbed, token) as sa_client:
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(namespace=namespace, verb="list", resource="configmaps")
            )
        )
        authz = client.AuthorizationV1Api(sa_client)
        assert authz.create_self_subject_access_review(review).status.allowed is False
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(sa_client).list_namespaced_config_map(namespace)
        assert denied.value.status == 403

        rbac = client.RbacAuthorizationV1Api(kube)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="read-configmaps"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="read-configmaps"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="unprivileged", namespace=namespace)],
            ),
        )
        _eventually(
            lambda: authz.create_self_subject_access_review(review).status.allowed,
            timeout=10,
            what="RBAC to allow after the RoleBinding",
        )
        client.CoreV1Api(sa_client).list_namespaced_config_map(namespace)  # no 403 any more
        # Still denied outside the Role: no secrets.
        with pytest.raises(ApiException) as still_denied:
            client.CoreV1Api(sa_client).list_namespaced_secret(namespace)
        assert still_denied.value.status == 403


def test_kube_crd_with_status_subresource(kube: Any, namespace: str) -> None:
    from kubernetes import client

    group, plural = "smoke.vaultbundle.test", "widgets"
    ext = client.ApiextensionsV1Api(kube)
    crd_name = f"{plural}.{group}"
    schema = client.V1JSONSchemaProps(
        type="object",
        properties={
            "spec": client.V1JSONSchemaProps(
                type="object", properties={"size": client.V1JSONSchemaProps(type="integer")}
            ),
            "status": client.V1JSONSchemaProps(
                type="object", properties={"phase": client.V1JSONSchemaProps(type="string")}
            ),
        },
    )
    crd = client.V1CustomResourceDefinition(
        metadata=client.V1ObjectMeta(name=crd_name),
        spec=client.V1CustomResourceDefinitionSpec(
            group=group,
            scope="Namespaced",
            names=client.V1CustomResourceDefinitionNames(plural=plural, singular="widget", kind="Widget"),
            versions=[
                client.V1CustomResourceDefinitionVersion(
                    name="v1",
                    served=True,
                    storage=True,
                    schema=client.V1CustomResourceValidation(open_apiv3_schema=schema),
                    subresources=client.V1CustomResourceSubresources(status={}),
                )
            ],
        ),
    )
    try:
        ext.create_custom_resource_definition(crd)
    except client.rest.ApiException as exc:
        if exc.status != 409:  # left by an earlier run against the same test bed
            raise

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(crd_name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    _eventually(established, what="the CRD to be Established")
    objects = client.CustomObjectsApi(kube)
    body = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
        "status": {"phase": "ignored-on-create"},
    }
    created = _eventually(
        lambda: _create_custom_object(objects, group, namespace, plural, body),
        timeout=10,
        what="the Widget resource to be served",
    )
    assert "status" not in created or created["status"].get("phase") != "ignored-on-create", (
        "status must be ignored on the main resource when the status subresource is on"
    )

    patched = objects.patch_namespaced_custom_object_status(
        group, "v1", namespace, plural, "w1", {"status": {"phase": "Ready"}}
    )
    assert patched["status"]["phase"] == "Ready"
    assert patched["spec"] == {"size": 3}
    # A spec patch through the main resource leaves status alone.
    objects.patch_namespaced_custom_object(
        group, "v1", namespace, plural, "w1", {"spec": {"size": 5}, "status": {"phase": "x"}}
    )
    current = objects.get_namespaced_custom_object(group, "v1", namespace, plural, "w1")
    assert current["spec"]["size"] == 5 and current["status"]["phase"] == "Ready"


def _create_custom_object(
    objects: Any, group: str, namespace: str, plural: str, body: dict[str, Any]
) -> dict[str, Any] | None:
    from kubernetes.client.rest import ApiException

    try:
        return objects.create_namespaced_custom_object(group, "v1", namespace, plural, body)
    except ApiException as exc:
        if exc.status == 404:  # discovery of a just-established CRD can lag a moment
            return None
        raise


def test_kube_owner_reference_garbage_collection(kube: Any, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"k": "v"})
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="dependent",
                owner_references=[
                    client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
                ],
            ),
            data={"k": "v"},
        ),
    )
    core.delete_namespaced_config_map("owner", namespace, body=client.V1DeleteOptions(propagation_policy="Background"))

    def dependent_gone() -> bool:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    _eventually(dependent_gone, what="the garbage collector to delete the dependent ConfigMap")


def test_kubectl_and_helm(testbed: dict[str, str]) -> None:
    out = subprocess.run(
        [testbed["KUBECTL"], "--kubeconfig", testbed["KUBECONFIG"], "version", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    versions = json.loads(out)
    assert versions["serverVersion"]["gitVersion"] == "v1.34.4"
    assert versions["clientVersion"]["gitVersion"].startswith("v1.34.")
    helm = subprocess.run(
        [testbed["HELM"], "version", "--short"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    assert helm.startswith("v3.")


# --- OpenBao (Vault API) ------------------------------------------------------------------------------


def test_openbao_kv_v2(testbed: dict[str, str]) -> None:
    import hvac

    vault = hvac.Client(url=testbed["VAULT_ADDR"], token=testbed["VAULT_TOKEN"])
    assert vault.is_authenticated()
    path = _unique("smoke")
    kv = vault.secrets.kv.v2
    kv.create_or_update_secret(path=path, secret={"password": "one"}, mount_point="secret")
    kv.create_or_update_secret(path=path, secret={"password": "two"}, mount_point="secret")
    latest = kv.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
    assert latest["data"]["data"] == {"password": "two"}
    assert latest["data"]["metadata"]["version"] == 2
    first = kv.read_secret_version(path=path, version=1, mount_point="secret", raise_on_deleted_version=True)
    assert first["data"]["data"] == {"password": "one"}
    assert not hvac.Client(url=testbed["VAULT_ADDR"], token="not-the-token").is_authenticated()


def test_openbao_kubernetes_auth_login(kube: Any, namespace: str, testbed: dict[str, str]) -> None:
    """OpenBao validates a TokenRequest-issued ServiceAccount JWT against our kube-apiserver."""
    import hvac
    from hvac.exceptions import Forbidden

    vault = hvac.Client(url=testbed["VAULT_ADDR"], token=testbed["VAULT_TOKEN"])
    mount = testbed["VAULT_KUBERNETES_AUTH_MOUNT"]
    role = _unique("smoke-role")
    policy = _unique("smoke-policy")
    vault.sys.create_or_update_policy(policy, 'path "secret/data/smoke/*" { capabilities = ["read"] }')
    vault.auth.kubernetes.create_role(
        role,
        bound_service_account_names=["operator"],
        bound_service_account_namespaces=[namespace],
        policies=[policy],
        mount_point=mount,
    )
    jwt = _service_account_token(kube, namespace, "operator")
    login = hvac.Client(url=testbed["VAULT_ADDR"]).auth.kubernetes.login(role, jwt, mount_point=mount)
    assert policy in login["auth"]["policies"]
    assert login["auth"]["metadata"]["service_account_namespace"] == namespace

    other = _service_account_token(kube, namespace, "someone-else")
    with pytest.raises(Forbidden, match="service account name not authorized"):  # bound to "operator" only
        hvac.Client(url=testbed["VAULT_ADDR"]).auth.kubernetes.login(role, other, mount_point=mount)


# --- AWS: S3 and Secrets Manager (moto) -------------------------------------------------------------


def _aws(testbed: dict[str, str], service: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=testbed["AWS_ENDPOINT_URL"],
        region_name=testbed["AWS_DEFAULT_REGION"],
        aws_access_key_id=testbed["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=testbed["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )


def test_s3_put_get(testbed: dict[str, str]) -> None:
    s3 = _aws(testbed, "s3")
    bucket = _unique("smoke-bucket")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="bundle/a.json", Body=b'{"a": 1}')
    assert s3.get_object(Bucket=bucket, Key="bundle/a.json")["Body"].read() == b'{"a": 1}'
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["bundle/a.json"]
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="missing")


def test_secrets_manager_create_get(testbed: dict[str, str]) -> None:
    sm = _aws(testbed, "secretsmanager")
    name = _unique("smoke/secret")
    sm.create_secret(Name=name, SecretString="s3cr3t")
    sm.put_secret_value(SecretId=name, SecretString="rotated")
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "rotated"
    assert sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"] == "s3cr3t"
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.get_secret_value(SecretId=_unique("missing"))


# --- Azure Key Vault ----------------------------------------------------------------------------------


def test_azure_keyvault_set_get_over_tls(testbed: dict[str, str]) -> None:
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError
    from azure.core.pipeline.transport import RequestsTransport
    from azure.keyvault.secrets import SecretClient

    class StaticCredential:  # the emulator only checks that a bearer token is present
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("testbed", int(time.time()) + 3600)

    def secret_client(verify: str | bool) -> SecretClient:
        return SecretClient(
            vault_url=testbed["AZURE_KEYVAULT_URL"],
            credential=StaticCredential(),
            api_version=testbed["AZURE_KEYVAULT_API_VERSION"],
            verify_challenge_resource=False,
            transport=RequestsTransport(connection_verify=verify),
            retry_total=0,
        )

    kv = secret_client(testbed["AZURE_KEYVAULT_CA_FILE"])
    name = _unique("smoke-secret")
    first = kv.set_secret(name, "value-1", content_type="text/plain", tags={"owner": "smoke"})
    kv.set_secret(name, "value-2")
    latest = kv.get_secret(name)
    assert latest.value == "value-2"
    assert kv.get_secret(name, first.properties.version).value == "value-1"
    assert first.properties.tags == {"owner": "smoke"}
    versions = list(kv.list_properties_of_secret_versions(name))
    assert len(versions) == 2
    with pytest.raises(ResourceNotFoundError):
        kv.get_secret(_unique("missing"))
    # TLS is verified for real: the system trust store does not know the test bed's CA.
    with pytest.raises(ServiceRequestError):
        secret_client(True).get_secret(name)


# --- GCP Secret Manager -------------------------------------------------------------------------------


def test_gcp_secret_manager(testbed: dict[str, str]) -> None:
    import grpc
    from google.api_core.exceptions import NotFound
    from google.cloud import secretmanager
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    channel = grpc.insecure_channel(testbed["GCP_SECRET_MANAGER_ENDPOINT"])
    sm = secretmanager.SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))
    secret_id = _unique("smoke")
    secret = sm.create_secret(
        request={"parent": "projects/testbed", "secret_id": secret_id, "secret": {"replication": {"automatic": {}}}}
    )
    sm.add_secret_version(request={"parent": secret.name, "payload": {"data": b"v1"}})
    sm.add_secret_version(request={"parent": secret.name, "payload": {"data": b"v2"}})
    assert sm.access_secret_version(name=f"{secret.name}/versions/latest").payload.data == b"v2"
    assert sm.access_secret_version(name=f"{secret.name}/versions/1").payload.data == b"v1"
    with pytest.raises(NotFound):
        sm.access_secret_version(name=f"projects/testbed/secrets/{_unique('missing')}/versions/latest")
    channel.close()


# --- GitHub Actions secrets ---------------------------------------------------------------------------


def test_github_actions_repo_secret(testbed: dict[str, str]) -> None:
    from github import Auth, Github

    gh = Github(base_url=testbed["GITHUB_API_URL"], auth=Auth.Token(testbed["GITHUB_TOKEN"]))
    repo = gh.get_repo(f"smoke-owner/{_unique('repo')}")
    repo.create_secret("SMOKE_SECRET", "first")
    repo.create_secret("SMOKE_SECRET", "second")  # update

    with urllib.request.urlopen(f"{testbed['GITHUB_API_URL']}/_fake/secrets", timeout=10) as response:
        stored = json.load(response)
    mine = [s for s in stored if s.get("repo") == repo.name and s["name"] == "SMOKE_SECRET"]
    assert [s["value"] for s in mine] == ["second"], "the fake must hold the decrypted latest value"
    assert mine[0]["scope"] == "repo" and mine[0]["type"] == "actions"
