"""The few Kubernetes API calls the operator makes, over the official client, run off the event loop.

Bodies are plain dicts (raw JSON), so nothing is lost in model conversion. Every write is counted in the
`vaultbundle_kubernetes_writes_total` metric (the e2e tests prove idle cycles write nothing from the
apiserver's audit log). `SecretsAPI` and `KubeAPI` are the seams the reconcile and the targets use; `Kube`
implements them, and tests/kit/ has an in-memory implementation.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from . import metrics
from .errors import Reason, VaultBundleError

GROUP, VERSION, PLURAL = "vaultbundle.io", "v1alpha1", "vaultbundles"
STORES_PLURAL = "clustertargetstores"
FIELD_MANAGER = "vaultbundle"


class KubeError(VaultBundleError):
    """An API call failed; `status` is the HTTP status (0 when unreachable). Never carries a body."""

    reason = Reason.KUBERNETES_API_ERROR

    def __init__(self, operation: str, status: int, reason: str) -> None:
        super().__init__(f"Kubernetes {operation} failed: HTTP {status} {reason}")
        self.status = status


def load_api_client(kubeconfig: str | None = None, *, connections: int = 10) -> k8s.ApiClient:
    """In-cluster credentials, else *kubeconfig*. *connections*: kept-alive connections to the API server —
    match the threads making calls, or each call beyond the pool's size pays a new TLS handshake (on both ends).
    """
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = connections
    return k8s.ApiClient(configuration)


class SecretsAPI(Protocol):
    """Secrets in a namespace: what the kubernetesSecret target and the source reads need."""

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret's raw JSON, or None when it does not exist."""
        ...

    async def apply_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Server-side apply as field manager `vaultbundle`; returns the Secret as written (its resourceVersion
        tells the watch event of this write apart from someone else's)."""
        ...

    async def delete_secret(self, namespace: str, name: str) -> None: ...


class KubeAPI(SecretsAPI, Protocol):
    """Everything one reconcile asks of Kubernetes (its own calls and its targets')."""

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ServiceAccount's raw JSON, or None when it does not exist."""
        ...

    async def create_token(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """A TokenRequest for the ServiceAccount; returns the TokenRequest with its `status.token`."""
        ...

    async def list_vaultbundles(self, namespace: str) -> list[dict[str, Any]]:
        """Every VaultBundle of the namespace (raw JSON): whose source Secrets are never adopted."""
        ...

    async def get_vaultbundle(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One VaultBundle's raw JSON, or None when it does not exist (a drift repair checks it is not being
        deleted before it recreates a Secret)."""
        ...

    async def get_cluster_target_store(self, name: str) -> dict[str, Any] | None:
        """The cluster-scoped ClusterTargetStore's raw JSON, or None when it does not exist."""
        ...

    async def get_namespace(self, name: str) -> dict[str, Any] | None:
        """The Namespace's raw JSON (its labels decide which ClusterTargetStores admit it), or None."""
        ...

    async def patch_pod_template(self, namespace: str, kind: str, name: str, annotations: dict[str, str]) -> None:
        """Set *annotations* on the pod template of a Deployment, StatefulSet or DaemonSet (a strategic merge
        patch of only those keys), which rolls its pods. A missing workload is a `KubeError` with status 404."""

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConfigMap's raw JSON (a dotsec source or a schema), or None when it does not exist."""
        ...


class Kube:
    """`KubeAPI` (and the Lease and VaultBundle reads) over the official client."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.coordination = k8s.CoordinationV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)

    async def _call(self, operation: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not operation.startswith(("get", "list")):
            metrics.API_WRITES.labels(operation).inc()
        try:
            response = await asyncio.to_thread(fn, *args, _preload_content=False, **kwargs)
        except ApiException as exc:
            raise KubeError(operation, int(exc.status or 0), str(exc.reason or "")) from None
        except OSError as exc:
            raise KubeError(operation, 0, type(exc).__name__) from None
        data = response.data
        return json.loads(data) if data else None

    async def _get(self, operation: str, fn: Any, *args: Any) -> dict[str, Any] | None:
        """A GET whose 404 means "absent" (None), not an error."""
        try:
            result: dict[str, Any] = await self._call(operation, fn, *args)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get("get_secret", self.core.read_namespaced_secret, name, namespace)

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get("get_config_map", self.core.read_namespaced_config_map, name, namespace)

    async def apply_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Server-side apply as field manager `vaultbundle`: only the fields we set are ours; others' stay."""
        written: dict[str, Any] | None = await self._call(
            "apply_secret",
            self.core.patch_namespaced_secret,
            body["metadata"]["name"],
            namespace,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
        return written

    async def delete_secret(self, namespace: str, name: str) -> None:
        await self._call("delete_secret", self.core.delete_namespaced_secret, name, namespace)

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get("get_service_account", self.core.read_namespaced_service_account, name, namespace)

    async def create_token(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "create_token", self.core.create_namespaced_service_account_token, name, namespace, body
        )
        return result

    async def get_cluster_target_store(self, name: str) -> dict[str, Any] | None:
        return await self._get(
            "get_cluster_target_store", self.custom.get_cluster_custom_object, GROUP, VERSION, STORES_PLURAL, name
        )

    async def get_namespace(self, name: str) -> dict[str, Any] | None:
        return await self._get("get_namespace", self.core.read_namespace, name)

    async def patch_pod_template(self, namespace: str, kind: str, name: str, annotations: dict[str, str]) -> None:
        patchers = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "StatefulSet": self.apps.patch_namespaced_stateful_set,
            "DaemonSet": self.apps.patch_namespaced_daemon_set,
        }
        body = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
        await self._call(
            "patch_pod_template",
            patchers[kind],
            name,
            namespace,
            body,
            field_manager=FIELD_MANAGER,
            _content_type="application/strategic-merge-patch+json",
        )

    async def get_vaultbundle(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(
            "get_vaultbundle", self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )

    async def list_vaultbundles(self, namespace: str) -> list[dict[str, Any]]:
        listing = await self._call(
            "list_vaultbundles", self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
        )
        return list((listing or {}).get("items") or [])

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get("get_lease", self.coordination.read_namespaced_lease, name, namespace)

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> None:
        await self._call("create_lease", self.coordination.create_namespaced_lease, namespace, body)

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        """Replace with the body's resourceVersion: a concurrent writer makes this fail with 409."""
        await self._call("replace_lease", self.coordination.replace_namespaced_lease, name, namespace, body)

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._call(
            "patch_status",
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
        )
