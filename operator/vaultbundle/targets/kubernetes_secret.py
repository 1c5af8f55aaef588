"""Kubernetes Secret target: one Secret in the VaultBundle's own namespace, written by server-side apply.

We own exactly the fields we apply (field manager `vaultbundle`): keys, labels and annotations others add
are never clobbered, and a key we wrote earlier that left the selection disappears with the next apply
(`prune: true`) or is re-applied with its last value (`prune: false`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..digest import Digester
from ..kube import FIELD_MANAGER, GROUP, VERSION, Kube
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

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def _decoded_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    data: dict[str, bytes] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            data[key] = b""
    return data


def _our_keys(secret: Mapping[str, Any]) -> set[str]:
    """The data keys our field manager owns, from managedFields (`f:data` -> `f:<key>`)."""
    keys: set[str] = set()
    for entry in secret.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply":
            fields = (entry.get("fieldsV1") or {}).get("f:data") or {}
            keys.update(name[2:] for name in fields if name.startswith("f:"))
    return keys


class KubernetesSecretTarget:
    kind = "kubernetesSecret"

    def __init__(self, kube: Kube, owner: Owner, spec: KubernetesSecretSpec, digester: Digester) -> None:
        self.kube, self.owner, self.spec, self.digester = kube, owner, spec, digester

    def _check_ownership(self, current: Mapping[str, Any]) -> None:
        other = (current.get("metadata", {}).get("annotations") or {}).get(OWNER)
        if other == self.owner.ref:
            return
        if other:  # another VaultBundle's Secret is never taken, not even with adopt
            raise TargetError(
                "SecretNotOwned", f"Secret {self.spec.name!r} is managed by VaultBundle {other!r}", retry=False
            )
        if not self.spec.adopt:
            raise TargetError(
                "SecretNotOwned",
                f"Secret {self.spec.name!r} exists and is not managed by vaultbundle; set adopt: true to take it over",
                retry=False,
            )

    def _metadata(self, data: Mapping[str, bytes]) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.spec.name,
            "namespace": self.owner.namespace,
            "labels": {**self.spec.labels, MANAGED_BY: "vaultbundle"},
            "annotations": {
                **self.spec.annotations,
                OWNER: self.owner.ref,
                OWNER_UID: self.owner.uid,
                CONTENT_DIGEST: self.digester.digest(data),
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

    def _applied(self, plan: Plan, desired: Mapping[str, bytes]) -> dict[str, bytes]:
        """What we apply: the desired keys, plus (prune: false) our earlier keys at their current values."""
        current: Mapping[str, Any] = plan.state or {}
        if self.spec.prune or not current:
            return dict(desired)
        kept = {k: v for k, v in _decoded_data(current).items() if k in _our_keys(current) and k not in desired}
        return {**kept, **desired}

    async def plan(self, desired: Mapping[str, bytes]) -> Plan:
        current = await self.kube.get_secret(self.owner.namespace, self.spec.name)
        if current is None:
            return diff({}, desired, prune=False)
        self._check_ownership(current)
        data = _decoded_data(current)
        ours = _our_keys(current)
        plan = diff({k: v for k, v in data.items() if k in ours or k in desired}, desired, prune=self.spec.prune)
        plan.state = current
        meta = current.get("metadata", {})
        want = self._metadata(self._applied(plan, desired))
        owner_refs = [ref for ref in meta.get("ownerReferences") or [] if ref.get("uid") == self.owner.uid]
        plan.metadata = (
            current.get("type", "Opaque") != self.spec.type
            or any((meta.get("labels") or {}).get(k) != v for k, v in want["labels"].items())
            or any((meta.get("annotations") or {}).get(k) != v for k, v in want["annotations"].items())
            or json.dumps(owner_refs, sort_keys=True) != json.dumps(want.get("ownerReferences", []), sort_keys=True)
        )
        return plan

    async def apply(self, plan: Plan, desired: Mapping[str, bytes]) -> None:
        data = self._applied(plan, desired)
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": self.spec.type,
            "metadata": self._metadata(data),
            "data": {k: base64.b64encode(v).decode("ascii") for k, v in data.items()},
        }
        current: Mapping[str, Any] | None = plan.state
        if current is not None and current.get("type", "Opaque") != self.spec.type:
            await self.kube.delete_secret(self.owner.namespace, self.spec.name)  # a Secret's type is immutable
        await self.kube.apply_secret(self.owner.namespace, body)
