"""`KubeAPI` over dicts: Secrets, the VaultBundle status, ServiceAccounts, ClusterTargetStores, Namespaces,
workloads (pod template annotations); every call recorded, faults injectable."""

from __future__ import annotations

import base64
from typing import Any

from vaultbundle.kube import KubeAPI, KubeError

READS = frozenset(
    {
        "get_secret",
        "get_service_account",
        "list_vaultbundles",
        "get_vaultbundle",
        "get_cluster_target_store",
        "get_namespace",
        "get_config_map",
    }
)


class MemoryKube:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.service_accounts: dict[tuple[str, str], dict[str, Any]] = {}
        self.vaultbundles: dict[tuple[str, str], dict[str, Any]] = {}  # other VaultBundles (list_vaultbundles)
        self.stores: dict[str, dict[str, Any]] = {}  # ClusterTargetStores by name
        self.namespaces: dict[str, dict[str, Any]] = {}  # Namespaces by name
        # Deployments / StatefulSets / DaemonSets: (namespace, kind, name) -> pod template annotations
        self.workloads: dict[tuple[str, str, str], dict[str, str]] = {}
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.tokens: list[dict[str, Any]] = []  # every TokenRequest: namespace, name and its spec
        self.calls: list[str] = []
        self.failing: dict[str, int] = {}  # operation -> HTTP status it fails with (a KubeError)
        self.broken: dict[str, Exception] = {}  # operation -> an unexpected exception it raises (a bug)
        self.version = 0  # the last resourceVersion handed out (every Secret write takes the next one)

    def _next_version(self) -> str:
        self.version += 1
        return str(self.version)

    @property
    def writes(self) -> list[str]:
        return [call for call in self.calls if call not in READS]

    def _enter(self, operation: str) -> None:
        self.calls.append(operation)
        if operation in self.failing:
            raise KubeError(operation, self.failing[operation], "injected")
        if operation in self.broken:
            raise self.broken[operation]

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._enter("get_secret")
        return self.secrets.get((namespace, name))

    async def apply_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Like server-side apply: keys, labels and annotations other managers wrote stay; ours are replaced."""
        self._enter("apply_secret")
        fields: dict[str, Any] = {f"f:{key}": {} for key in body.get("data") or {}}
        managed = [{"manager": "vaultbundle", "operation": "Apply", "fieldsV1": {"f:data": fields}}]
        old = self.secrets.get((namespace, body["metadata"]["name"])) or {}
        old_meta = old.get("metadata") or {}
        ours = {
            name[2:]
            for entry in old_meta.get("managedFields") or []
            if entry.get("manager") == "vaultbundle"
            for name in (entry.get("fieldsV1") or {}).get("f:data") or {}
        }
        others = {k: v for k, v in (old.get("data") or {}).items() if k not in ours}
        meta = body["metadata"]
        self.secrets[(namespace, meta["name"])] = {
            **body,
            "data": {**others, **(body.get("data") or {})},
            "metadata": {
                **meta,
                "labels": {**(old_meta.get("labels") or {}), **(meta.get("labels") or {})},
                "annotations": {**(old_meta.get("annotations") or {}), **(meta.get("annotations") or {})},
                "managedFields": managed,
                "resourceVersion": self._next_version(),
                "uid": old_meta.get("uid") or f"secret-uid-{self.version}",
            },
        }
        return self.secrets[(namespace, meta["name"])]

    async def delete_secret(self, namespace: str, name: str) -> None:
        self._enter("delete_secret")
        del self.secrets[(namespace, name)]

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """A merge patch of the status, as the apiserver applies it: the fields sent replace theirs, the others
        stay (the reconcile sends the whole status, the cheap path only `rollouts`)."""
        self._enter("patch_status")
        self.status = {**self.status, **status}

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._enter("get_service_account")
        return self.service_accounts.get((namespace, name))

    async def create_token(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._enter("create_token")
        self.tokens.append({"namespace": namespace, "name": name, **body["spec"]})
        return {**body, "status": {"token": f"token-for-{namespace}-{name}"}}

    async def list_vaultbundles(self, namespace: str) -> list[dict[str, Any]]:
        self._enter("list_vaultbundles")
        return [body for (ns, _), body in sorted(self.vaultbundles.items()) if ns == namespace]

    async def get_vaultbundle(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The VaultBundle if a test put one in `vaultbundles`; else one that exists (the reconciled one)."""
        self._enter("get_vaultbundle")
        return self.vaultbundles.get((namespace, name), {"metadata": {"name": name, "namespace": namespace}})

    async def get_cluster_target_store(self, name: str) -> dict[str, Any] | None:
        self._enter("get_cluster_target_store")
        return self.stores.get(name)

    async def get_namespace(self, name: str) -> dict[str, Any] | None:
        self._enter("get_namespace")
        return self.namespaces.get(name)

    async def patch_pod_template(self, namespace: str, kind: str, name: str, annotations: dict[str, str]) -> None:
        self._enter("patch_pod_template")
        template = self.workloads.get((namespace, kind, name))
        if template is None:
            raise KubeError("patch_pod_template", 404, "Not Found")
        template.update(annotations)

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._enter("get_config_map")
        return self.config_maps.get((namespace, name))

    # --- test helpers -------------------------------------------------------------------------------------

    def put_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """A ConfigMap; its resourceVersion moves on every put, as the apiserver's does."""
        old = self.config_maps.get((namespace, name))
        version = int((old or {}).get("metadata", {}).get("resourceVersion", "0")) + 1
        metadata = {"name": name, "namespace": namespace, "resourceVersion": str(version)}
        self.config_maps[(namespace, name)] = {"metadata": metadata, "data": dict(data)}

    def put_secret(self, namespace: str, name: str, data: dict[str, str], **metadata: Any) -> None:
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        version = self._next_version()
        meta = {"name": name, "resourceVersion": version, "uid": f"secret-uid-{version}", **metadata}
        self.secrets[(namespace, name)] = {"metadata": meta, "data": encoded}

    def edit_secret(self, namespace: str, name: str, **data: str) -> str:
        """A hand edit (another manager, e.g. kubectl edit): set keys, bump the resourceVersion; returns it."""
        secret = self.secrets[(namespace, name)]
        secret["data"] = {**secret["data"], **{k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
        secret["metadata"]["resourceVersion"] = self._next_version()
        return str(secret["metadata"]["resourceVersion"])

    def put_vaultbundle(self, namespace: str, name: str, config: str, passphrase: str) -> None:
        source = {"configSecretRef": {"name": config}, "passphraseSecretRef": {"name": passphrase}}
        self.vaultbundles[(namespace, name)] = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"source": source},
        }

    def put_workload(self, namespace: str, kind: str, name: str) -> None:
        self.workloads[(namespace, kind, name)] = {}

    def data(self, namespace: str, name: str) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in self.secrets[(namespace, name)]["data"].items()}


def _conforms(kube: MemoryKube) -> KubeAPI:
    return kube  # mypy proves MemoryKube is a KubeAPI
