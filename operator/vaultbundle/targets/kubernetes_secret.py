"""Kubernetes Secret target: one Secret in the VaultBundle's own namespace, owned and marked by us."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..digest import Digester
from ..kube import GROUP, VERSION, Kube
from ..spec import KubernetesSecretSpec
from .base import Plan, TargetError, diff

MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER = "vaultbundle.io/owner"
OWNER_UID = "vaultbundle.io/owner-uid"
CONTENT_DIGEST = "vaultbundle.io/content-digest"


@dataclass(frozen=True)
class Owner:
    namespace: str
    name: str
    uid: str


class KubernetesSecretTarget:
    kind = "kubernetesSecret"

    def __init__(self, kube: Kube, owner: Owner, spec: KubernetesSecretSpec, digester: Digester) -> None:
        self.kube, self.owner, self.spec, self.digester = kube, owner, spec, digester

    def _metadata(self, desired: Mapping[str, bytes]) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.spec.name,
            "namespace": self.owner.namespace,
            "labels": {**self.spec.labels, MANAGED_BY: "vaultbundle"},
            "annotations": {
                **self.spec.annotations,
                OWNER: f"{self.owner.namespace}/{self.owner.name}",
                OWNER_UID: self.owner.uid,
                CONTENT_DIGEST: self.digester.digest(desired),
            },
        }
        if self.spec.deletion_policy == "Delete":
            metadata["ownerReferences"] = [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "VaultBundle",
                    "name": self.owner.name,
                    "uid": self.owner.uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ]
        return metadata

    def _check_ownership(self, current: dict[str, Any]) -> None:
        annotations = current.get("metadata", {}).get("annotations") or {}
        other = annotations.get(OWNER)
        ours = other == f"{self.owner.namespace}/{self.owner.name}"
        if other and not ours:  # another VaultBundle's Secret is never taken, not even with adopt
            raise TargetError(
                "SecretNotOwned", f"Secret {self.spec.name!r} is managed by VaultBundle {other!r}", retry=False
            )
        if not ours and not self.spec.adopt:
            raise TargetError(
                "SecretNotOwned",
                f"Secret {self.spec.name!r} exists and is not managed by vaultbundle; set adopt: true to take it over",
                retry=False,
            )

    async def plan(self, desired: Mapping[str, bytes]) -> Plan:
        current = await self.kube.get_secret(self.owner.namespace, self.spec.name)
        if current is None:
            plan = diff({}, desired, prune=False)
            plan.state = None
            return plan
        self._check_ownership(current)
        try:
            data = {k: base64.b64decode(v, validate=True) for k, v in (current.get("data") or {}).items()}
        except (binascii.Error, ValueError):
            data = {}
        plan = diff(data, desired, prune=self.spec.prune)
        want = self._metadata(self._final_data(data, desired, plan))
        meta = current.get("metadata", {})
        plan.metadata = (
            current.get("type", "Opaque") != self.spec.type
            or any((meta.get("labels") or {}).get(k) != v for k, v in want["labels"].items())
            or any((meta.get("annotations") or {}).get(k) != v for k, v in want["annotations"].items())
            or (meta.get("ownerReferences") or None) != want.get("ownerReferences")
        )
        plan.state = current
        return plan

    def _final_data(self, current: Mapping[str, bytes], desired: Mapping[str, bytes], plan: Plan) -> dict[str, bytes]:
        kept = {k: v for k, v in current.items() if k not in desired and k not in plan.delete}
        return {**kept, **desired}

    async def apply(self, plan: Plan, desired: Mapping[str, bytes]) -> None:
        current: dict[str, Any] | None = plan.state
        final = (
            desired
            if current is None
            else self._final_data(
                {k: base64.b64decode(v) for k, v in (current.get("data") or {}).items()}, desired, plan
            )
        )
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": self.spec.type,
            "metadata": self._metadata(final),
            "data": {k: base64.b64encode(v).decode("ascii") for k, v in final.items()},
        }
        if current is None:
            await self.kube.create_secret(self.owner.namespace, body)
            return
        old_meta = current.get("metadata", {})
        if current.get("type", "Opaque") != self.spec.type:  # type is immutable: replace the object
            await self.kube.delete_secret(self.owner.namespace, self.spec.name)
            await self.kube.create_secret(self.owner.namespace, body)
            return
        body["metadata"]["labels"] = {**(old_meta.get("labels") or {}), **body["metadata"]["labels"]}
        body["metadata"]["annotations"] = {**(old_meta.get("annotations") or {}), **body["metadata"]["annotations"]}
        body["metadata"]["resourceVersion"] = old_meta.get("resourceVersion")
        await self.kube.replace_secret(self.owner.namespace, self.spec.name, body)
