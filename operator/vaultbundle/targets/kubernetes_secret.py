"""Kubernetes Secret target: one Secret in the VaultBundle's own namespace, written by server-side apply.

We own exactly the fields we apply (field manager `vaultbundle`): keys, labels and annotations others add
are never clobbered, and a key we wrote earlier that left the selection disappears with the next apply
(`prune: true`) or is re-applied with its last value (`prune: false`). No template language: a template
entry names one bundle key or file, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..digest import Digester
from ..errors import Reason, SpecError, TargetError
from ..fields import SECRET_KEY, Selection, boolean, obj, string, string_map
from ..kube import FIELD_MANAGER, GROUP, VERSION, KubeAPI, KubeError
from ..selection import SelectionError, select
from ..vault import Vault
from .base import Owner, Plan, SecretBook, StoreKind, TargetContext, diff
from .ownership import (
    ADOPT_ANNOTATION,
    MANAGED_BY_VALUE,
    NEVER_WRITTEN_SECRET_TYPES,
    claim_one,
    secret_adopt_refusal,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
OWNER_ANNOTATION = "vaultbundle.io/owner"
OWNER_UID_ANNOTATION = "vaultbundle.io/owner-uid"
CONTENT_DIGEST_ANNOTATION = "vaultbundle.io/content-digest"

StoreState = Mapping[str, Any]  # the Secret as read at plan time


@dataclass(frozen=True)
class TemplateEntry:
    from_key: str | None = None
    from_file: str | None = None


@dataclass(frozen=True)
class KubernetesSecretSpec:
    name: str
    type: str = "Opaque"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    template: Mapping[str, TemplateEntry] = field(default_factory=dict)
    merge_selected: bool = False
    deletion_policy: str = "Retain"
    adopt: bool = False
    prune: bool = True


class KubernetesSecretKind(StoreKind):
    name = "kubernetesSecret"

    def writes_secrets(self, spec: KubernetesSecretSpec) -> tuple[str, ...]:
        return (spec.name,)

    def parse(self, raw: Mapping[str, Any], path: str) -> KubernetesSecretSpec:
        template = obj(raw.get("template"), f"{path}.template")
        entries: dict[str, TemplateEntry] = {}
        for key, entry_raw in obj(template.get("data"), f"{path}.template.data").items():
            entry = obj(entry_raw, f"{path}.template.data.{key}")
            from_key, from_file = entry.get("fromKey"), entry.get("fromFile")
            if (from_key is None) == (from_file is None):
                raise SpecError(f"{path}.template.data.{key} needs exactly one of fromKey or fromFile")
            entries[key] = TemplateEntry(
                from_key=string(from_key, "fromKey") or None, from_file=string(from_file, "fromFile") or None
            )
        policy = string(raw.get("deletionPolicy"), f"{path}.deletionPolicy", default="Retain")
        if policy not in ("Retain", "Delete"):
            raise SpecError(f"{path}.deletionPolicy must be Retain or Delete")
        kind = string(raw.get("type"), f"{path}.type", default="Opaque")
        if kind in NEVER_WRITTEN_SECRET_TYPES:  # the CRD's CEL rule says the same; a one-shot run has no CRD
            raise SpecError(
                f"{path}.type {kind} is never written by vaultbundle (the apiserver's tokens, Helm's release "
                "records); use Opaque or another type"
            )
        return KubernetesSecretSpec(
            name=string(raw.get("name"), f"{path}.name", required=True),
            type=kind,
            labels=string_map(raw.get("labels"), f"{path}.labels"),
            annotations=string_map(raw.get("annotations"), f"{path}.annotations"),
            template=entries,
            merge_selected=boolean(template.get("mergeSelected"), f"{path}.template.mergeSelected", False),
            deletion_policy=policy,
            adopt=boolean(raw.get("adopt"), f"{path}.adopt", False),
            prune=boolean(raw.get("prune"), f"{path}.prune", True),
        )

    def desired(self, vault: Vault, selection: Selection, spec: KubernetesSecretSpec) -> dict[str, bytes]:
        """The Secret's data: the template's entries (plus the selection when mergeSelected or no template)."""
        data = select(vault, selection) if spec.merge_selected or not spec.template else {}
        for key, entry in spec.template.items():
            if entry.from_key is not None:
                if entry.from_key not in vault.kv:
                    raise SelectionError(
                        f"template key {key!r} takes bundle key {entry.from_key!r}, which the bundle lacks"
                    )
                data[key] = vault.kv[entry.from_key].encode("utf-8")
            elif entry.from_file is not None:
                if entry.from_file not in vault.files:
                    raise SelectionError(f"template key {key!r} takes file {entry.from_file!r}, which the bundle lacks")
                data[key] = vault.files[entry.from_file]
        bad = sorted(name for name in data if not SECRET_KEY.fullmatch(name) or len(name) > 253)
        if bad:
            raise SelectionError(
                f"not valid Secret keys (allowed: letters, digits, '-', '_', '.'): {', '.join(bad)}; "
                "rename them in keys.rename / files.rename"
            )
        return data

    async def connect(self, spec: KubernetesSecretSpec, context: TargetContext) -> KubernetesSecretTarget:
        return KubernetesSecretTarget(context.kube, context.owner, spec, context.digester, context.book)


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
    def __init__(
        self,
        kube: KubeAPI,
        owner: Owner,
        spec: KubernetesSecretSpec,
        digester: Digester,
        book: SecretBook | None = None,
    ) -> None:
        self.kube, self.owner, self.spec, self.digester = kube, owner, spec, digester
        self.book = book

    def _report(self, secret: Mapping[str, Any] | None) -> None:
        """Tell drift detection the Secret we wrote or found in sync: its watch event is ours, not drift."""
        if self.book is not None and secret:
            self.book.seen(self.spec.name, secret.get("metadata") or {})

    def describe(self) -> str:
        return f"Secret {self.spec.name}"

    def status_extra(self) -> dict[str, Any]:
        return {}

    def _owner_of(self, current: Mapping[str, Any]) -> str | None:
        """The owner annotation, unless it names us but an earlier VaultBundle of this name (another uid) wrote
        it: that one is not ours without the adopt opt-in."""
        meta = current.get("metadata", {})
        annotations = meta.get("annotations") or {}
        owner, uid = annotations.get(OWNER_ANNOTATION), annotations.get(OWNER_UID_ANNOTATION)
        stripped = owner is None and uid in (None, self.owner.uid)
        if stripped and self.book is not None and self.book.written_object(self.spec.name, meta):
            return self.owner.ref  # our annotations were stripped from the very Secret we wrote: put them back
        if owner == self.owner.ref and uid and uid != self.owner.uid:
            return None
        return owner

    async def _check_ownership(self, current: Mapping[str, Any]) -> bool:
        """Raise `SecretNotOwned` unless we may write the Secret; True when it is adopted now."""
        where, name = f"namespace {self.owner.namespace}", f"Secret {self.spec.name}"
        adopting = claim_one(
            where=where,
            name=name,
            owner=self._owner_of(current),
            me=self.owner.ref,
            adopt=self.spec.adopt,
            marker=f"no {OWNER_ANNOTATION} annotation for this VaultBundle",
        )
        if adopting:
            refusal = secret_adopt_refusal(current, owner=self.owner, sources=await self._source_secrets())
            if refusal:
                raise TargetError(
                    Reason.SECRET_NOT_OWNED,
                    f"{where}: {name} exists and is not managed by vaultbundle; it is not adopted: {refusal}; "
                    "nothing was written",
                )
        return adopting

    async def _source_secrets(self) -> set[str]:
        """The config and passphrase Secrets of every VaultBundle in the namespace: never adopted."""
        try:
            bundles = await self.kube.list_vaultbundles(self.owner.namespace)
        except KubeError as exc:
            raise TargetError(Reason.KUBERNETES_API_ERROR, f"listing VaultBundles failed: {exc}") from None
        names: set[str] = set()
        for bundle in bundles:
            source = (bundle.get("spec") or {}).get("source") or {}
            for ref in ("configSecretRef", "passphraseSecretRef"):
                name = (source.get(ref) or {}).get("name")
                if isinstance(name, str):
                    names.add(name)
        return names

    def _check_type(self, current: Mapping[str, Any], *, adopting: bool) -> None:
        """A Secret's type is immutable: ours is deleted and re-created, an adopted one never is."""
        have = current.get("type", "Opaque")
        adopted = ADOPT_ANNOTATION in (current.get("metadata", {}).get("annotations") or {})
        if have != self.spec.type and (adopting or adopted):
            raise TargetError(
                Reason.TYPE_CHANGE_REFUSED,
                f"namespace {self.owner.namespace}: Secret {self.spec.name} is of type {have}, the target asks for "
                f"{self.spec.type}; an adopted Secret is never deleted to change its type: set type: {have}, or "
                "delete the Secret yourself",
            )

    def _metadata(self, data: Mapping[str, bytes]) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.spec.name,
            "namespace": self.owner.namespace,
            "labels": {**self.spec.labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "annotations": {
                **self.spec.annotations,
                OWNER_ANNOTATION: self.owner.ref,
                OWNER_UID_ANNOTATION: self.owner.uid,
                CONTENT_DIGEST_ANNOTATION: self.digester.digest(data),
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

    def _applied(self, plan: Plan[StoreState], desired: Mapping[str, bytes]) -> dict[str, bytes]:
        """What we apply: the desired keys, plus (prune: false) our earlier keys at their current values."""
        current: StoreState = plan.state or {}
        if self.spec.prune or not current:
            return dict(desired)
        kept = {k: v for k, v in _decoded_data(current).items() if k in _our_keys(current) and k not in desired}
        return {**kept, **desired}

    async def plan(self, desired: Mapping[str, bytes]) -> Plan[StoreState]:
        current = await self.kube.get_secret(self.owner.namespace, self.spec.name)
        if current is None:
            return diff({}, desired, prune=False)
        adopting = await self._check_ownership(current)
        self._check_type(current, adopting=adopting)
        data = _decoded_data(current)
        ours = _our_keys(current)
        if adopting:  # its values are never compared (a dry run is no equality oracle): every desired key is written
            plan: Plan[StoreState] = Plan(
                create=sorted(set(desired) - set(data)), update=sorted(set(desired) & set(data))
            )
        else:
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
        if not plan.changed:
            self._report(current)
        return plan

    async def apply(self, plan: Plan[StoreState], desired: Mapping[str, bytes]) -> None:
        data = self._applied(plan, desired)
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": self.spec.type,
            "metadata": self._metadata(data),
            "data": {k: base64.b64encode(v).decode("ascii") for k, v in data.items()},
        }
        current = plan.state
        if current is not None and current.get("type", "Opaque") != self.spec.type:
            await self.kube.delete_secret(self.owner.namespace, self.spec.name)  # a Secret's type is immutable
        self._report(await self.kube.apply_secret(self.owner.namespace, body))


KIND = KubernetesSecretKind()
