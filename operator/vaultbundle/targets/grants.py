"""The store policy applied to one target: look up its ClusterTargetStore, decide, and confine its writes.

`stores` decides (pure); this module does the reads that decision needs and applies the answer around a store:

* `authorize_target` runs before a store is connected. Without `storeRef` it makes no request at all: the
  target must bring its own credentials, or it gets `PolicyDenied` (no ambient identity for tenants, C1/C2).
  With `storeRef` it GETs the ClusterTargetStore (absent = denied) and the tenant's Namespace (its labels
  decide `namespaceSelector`) through `KubeAPI`.
* `capped` turns `prune` off where the store forbids it (adopt / forceDeleteWithoutRecovery asked for but not
  allowed were refused by `authorize` already).
* `ScopedTarget` puts the store's name prefix in front of every remote name a name-scoped store (AWS, GCP,
  Azure) plans, creates, adopts or deletes, and checks it belongs to this VaultBundle (`BoundScope.scoped_name`).
  Vault and GitHub write to one place the spec names (a mount + path, a repository / environment or an
  organization): `authorize` checks it on the spec, and those targets check it again before every read and
  write (`BoundScope.check_path`, `check_github`).

The Grant then travels in `TargetContext.grant`; `credentials.Credentials.admit` refuses every credential path
the grant does not cover, so a store cannot reach a credential the policy did not hand it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .. import stores
from ..kube import KubeAPI
from .base import Owner, Plan, Target

# Store kinds whose remote names are confined by `scope.namePrefix` (Vault and GitHub are checked statically).
NAME_SCOPED = frozenset({stores.AWS, stores.GCP, stores.AZURE})


async def authorize_target(kube: KubeAPI, owner: Owner, kind: str, raw: Mapping[str, Any]) -> stores.Grant | None:
    """The Grant for one external target (`raw`: its object under the kind key); None for `kubernetesSecret`
    (it writes into the VaultBundle's own namespace with the operator's Kubernetes client, nothing to lend).
    Raises `PolicyDeniedError`, `StoreInvalidError` (the admin's store is malformed) or `SpecError`."""
    if kind not in stores.KINDS:
        return None
    ref = stores.store_ref(kind, raw)
    store: stores.ClusterTargetStore | None = None
    labels: Mapping[str, str] = {}
    if ref is not None:
        body = await kube.get_cluster_target_store(ref)
        store = stores.parse_store(body) if body is not None else None
        namespace = await kube.get_namespace(owner.namespace)
        labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    return stores.authorize(kind, raw, store, namespace=owner.namespace, labels=labels, vb_name=owner.name)


def check_store_ref(kind: str, raw: Mapping[str, Any], where: str) -> None:
    """A malformed `storeRef` on an external store kind: `SpecError`, found when the spec is parsed."""
    if kind in stores.KINDS:
        stores.store_ref(kind, raw)


def capped(body: Any, grant: stores.Grant | None) -> Any:
    """The store's parsed spec with `prune` off when the grant forbids it (`spec.prune and grant.allow_prune`)."""
    if grant is None or grant.allow_prune or not getattr(body, "prune", False):
        return body
    return dataclasses.replace(body, prune=False)


class ScopedTarget:
    """A name-scoped store's target seen through its grant's scope: every remote name gets the scope prefix and
    must belong to this VaultBundle, before the store plans (reads), writes or deletes anything."""

    def __init__(self, inner: Target, scope: stores.BoundScope) -> None:
        self.inner, self.scope = inner, scope

    def _scoped(self, desired: Mapping[str, bytes]) -> dict[str, bytes]:
        return {self.scope.scoped_name(name): value for name, value in desired.items()}

    def describe(self) -> str:
        return f"{self.inner.describe()} (ClusterTargetStore {self.scope.store})"

    async def plan(self, desired: Mapping[str, bytes]) -> Plan[Any]:
        plan = await self.inner.plan(self._scoped(desired))
        for name in plan.delete:  # prune listings are filtered by the prefix already; this is the last check
            self.scope.check_name(name)
        return plan

    async def apply(self, plan: Plan[Any], desired: Mapping[str, bytes]) -> None:
        await self.inner.apply(plan, self._scoped(desired))

    def status_extra(self) -> dict[str, Any]:
        return self.inner.status_extra()


def scoped(target: Target, grant: stores.Grant | None) -> Target:
    """*target* confined to the grant's name scope where the kind has one; else *target* itself."""
    if grant is None or grant.scope is None or grant.kind not in NAME_SCOPED:
        return target
    return ScopedTarget(target, grant.scope)
