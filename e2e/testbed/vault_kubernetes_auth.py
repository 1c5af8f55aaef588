"""Point OpenBao's Kubernetes auth method at the test bed's kube-apiserver.

OpenBao verifies a login JWT by sending a TokenReview to the apiserver, authenticated with a reviewer
ServiceAccount's token; that ServiceAccount is bound to ``system:auth-delegator``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import hvac
from kubernetes import client, config
from kubernetes.client.rest import ApiException

REVIEWER_NAMESPACE = "kube-system"
REVIEWER_NAME = "openbao-token-reviewer"
DEFAULT_MOUNT = "kubernetes"


def _create_if_absent(create: Callable[..., object], *args: object) -> None:
    try:
        create(*args)
    except ApiException as exc:
        if exc.status != 409:
            raise


def reviewer_token(kubeconfig: Path, lifetime_seconds: int = 7 * 24 * 3600) -> str:
    """Create the reviewer ServiceAccount and its binding if needed; return a TokenRequest-issued JWT."""
    with config.new_client_from_config(config_file=str(kubeconfig)) as api_client:
        core = client.CoreV1Api(api_client)
        rbac = client.RbacAuthorizationV1Api(api_client)
        _create_if_absent(
            core.create_namespaced_service_account,
            REVIEWER_NAMESPACE,
            client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=REVIEWER_NAME)),
        )
        _create_if_absent(
            rbac.create_cluster_role_binding,
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name=f"{REVIEWER_NAME}-auth-delegator"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="system:auth-delegator"
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name=REVIEWER_NAME, namespace=REVIEWER_NAMESPACE)
                ],
            ),
        )
        token = core.create_namespaced_service_account_token(
            REVIEWER_NAME,
            REVIEWER_NAMESPACE,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=lifetime_seconds)
            ),
        )
        return str(token.status.token)


def configure_kubernetes_auth(
    *,
    vault_addr: str,
    vault_token: str,
    kubeconfig: Path,
    apiserver_url: str,
    ca_file: Path,
    mount: str = DEFAULT_MOUNT,
) -> None:
    """Enable ``auth/<mount>`` (if needed) and configure it against the apiserver."""
    vault = hvac.Client(url=vault_addr, token=vault_token)
    if f"{mount}/" not in vault.sys.list_auth_methods()["data"]:
        vault.sys.enable_auth_method("kubernetes", path=mount)
    vault.auth.kubernetes.configure(
        kubernetes_host=apiserver_url,
        kubernetes_ca_cert=ca_file.read_text(),
        token_reviewer_jwt=reviewer_token(kubeconfig),
        mount_point=mount,
    )
