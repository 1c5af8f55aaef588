"""`KubeAPI` over dicts: Secrets, the VaultBundle status, ServiceAccounts, ClusterTargetStores, Namespaces;
every call recorded, faults injectable."""

from __future__ import annotations

import base64
from typing import Any

from vaultbundle.kube import KubeAPI, KubeError

READS = frozenset(
    {
        "get_secret",
        "get_service_account",
        "list_vaultbundles",
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
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.calls: list[str] = []
        self.failing: dict[str, int] = {}  # operation -> HTTP status it fails with (a KubeError)
        self.broken: dict[str, Exception] = {}  # operation -> an unexpected exception it raises (a bug)

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

    async def apply_secret(self, namespace: str, body: dict[str, Any]) -> None:
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
            },
        }

    async def delete_secret(self, namespace: str, name: str) -> None:
        self._enter("delete_secret")
        del self.secrets[(namespace, name)]

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._enter("patch_status")
        self.status = status

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._enter("get_service_account")
        return self.service_accounts.get((namespace, name))

    async def create_token(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._enter("create_token")
        return {**body, "status": {"token": f"token-for-{namespace}-{name}"}}

    async def list_vaultbundles(self, namespace: str) -> list[dict[str, Any]]:
        self._enter("list_vaultbundles")
        return [body for (ns, _), body in sorted(self.vaultbundles.items()) if ns == namespace]

    async def get_cluster_target_store(self, name: str) -> dict[str, Any] | None:
        self._enter("get_cluster_target_store")
        return self.stores.get(name)

    async def get_namespace(self, name: str) -> dict[str, Any] | None:
        self._enter("get_namespace")
        return self.namespaces.get(name)

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
        self.secrets[(namespace, name)] = {"metadata": {"name": name, **metadata}, "data": encoded}

    def put_vaultbundle(self, namespace: str, name: str, config: str, passphrase: str) -> None:
        source = {"configSecretRef": {"name": config}, "passphraseSecretRef": {"name": passphrase}}
        self.vaultbundles[(namespace, name)] = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"source": source},
        }

    def data(self, namespace: str, name: str) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in self.secrets[(namespace, name)]["data"].items()}


def _conforms(kube: MemoryKube) -> KubeAPI:
    return kube  # mypy proves MemoryKube is a KubeAPI
