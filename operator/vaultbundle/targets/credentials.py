"""Credential resolution: the one place where a store gets what it authenticates with.

A store never calls `TargetContext.read_secret` or reaches for the operator's own identity by itself: it asks
`Credentials` (built with `credentials_for(context, kind, endpoint)`) for

* `secret(ref)` / `secret_keys(name, keys)`: keys of a tenant Secret in the VaultBundle's own namespace
  (credentials, and CA bundles too: every tenant Secret a store reads);
* `ambient()`: permission to use the operator's ambient identity (IRSA / default chain, workload identity /
  ADC, managed identity), for stores that have one and a spec that names no Secret;
* `service_account(name)`: permission to request a token for a ServiceAccount of the namespace (Vault's
  Kubernetes auth).

* `store_secret(ref, field)`: a key of a Secret a ClusterTargetStore names, in the OPERATOR's namespace;
* `store_service_account(name)`: permission to request a token for the ServiceAccount a ClusterTargetStore names
  (Vault's Kubernetes auth), in the OPERATOR's namespace, which it returns.

Every one of these passes through `Credentials.admit()`, which admits only what the target's Grant
(`grants.authorize_target`, in `TargetContext.grant`) covers:

* no Grant: nothing (fail closed);
* a Grant without a store (the target brings its own credentials): tenant Secrets and the tenant's own
  ServiceAccounts; never the operator's ambient identity or a Secret of the operator (C1, C2);
* a Grant from a ClusterTargetStore: only the identity the store names (its ambient identity, or its Secrets
  and ServiceAccount in the operator's namespace: `Grant.operator_secrets`, `Grant.operator_service_account`);
  never a tenant Secret or ServiceAccount, so connection and identity come from the admin's object alone.

A refusal is `PolicyDeniedError` (reason `PolicyDenied`); because this is the only path to credentials, no
store can bypass it.

`credentials_for` also starts the target's egress scope: the tenant egress policy for a tenant's own
connection, none for a ClusterTargetStore's (the admin chose it). `adopt_allowed()` is that store's allowance.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from .. import stores
from ..digest_key import operator_namespace
from ..errors import PolicyDeniedError, StoreInvalidError
from ..fields import SecretRef
from ..kube import KubeError
from .base import TargetContext
from .threads import EgressScope, enter_scope


class Source(Enum):
    """Where a store's credentials come from."""

    TENANT = "tenant Secret"
    AMBIENT = "ambient identity"
    SERVICE_ACCOUNT = "ServiceAccount token"
    STORE = "ClusterTargetStore Secret"
    STORE_SERVICE_ACCOUNT = "ClusterTargetStore ServiceAccount token"


@dataclass(frozen=True)
class Credentials:
    """The credentials one target may use (see the module docstring)."""

    context: TargetContext
    kind: str  # the spec.targets[] kind, e.g. "awsSecretsManager"
    endpoint: str = ""  # where the credentials will be sent ("" = the store's public default)
    egress: EgressScope | None = None  # this target's egress scope (its SDK calls run under it)

    def adopt_allowed(self) -> bool:
        """True when the ClusterTargetStore lending this connection allows `adopt` (its `spec.allow.adopt`,
        carried by the Grant): then the store's objects need no opt-in tag of their own. A tenant's own
        connection never does: there the object must opt in (`ownership.Consent`)."""
        grant = self.context.grant
        return grant is not None and grant.store is not None and grant.allow_adopt

    def admit(self, source: Source, detail: str) -> None:
        """The policy check for every credential path (see the module docstring); raises `PolicyDeniedError`."""
        grant = self.context.grant
        if grant is None or grant.kind != self.kind:
            raise PolicyDeniedError(f"{self.kind}: no store policy decision was made for this target; refusing")
        if grant.store is None:
            if source in (Source.TENANT, Source.SERVICE_ACCOUNT):
                return
            raise PolicyDeniedError(
                f"{self.kind}: no ambient identity for tenants; ask your cluster admin for a ClusterTargetStore "
                "(then set storeRef), or supply credentials from a Secret in this namespace"
            )
        identity = grant.identity
        if source == Source.AMBIENT and identity is not None and identity.ambient:
            return
        if source == Source.STORE and detail in grant.operator_secrets:
            return
        if source == Source.STORE_SERVICE_ACCOUNT and detail and detail == grant.operator_service_account:
            return
        raise PolicyDeniedError(
            f"{self.kind}: with storeRef the identity comes from ClusterTargetStore {grant.store} only "
            f"({source.value} refused)"
        )

    async def secret(self, ref: SecretRef) -> str:
        self.admit(Source.TENANT, ref.name)
        return await self.context.read_secret(ref.name, ref.key)

    async def secret_keys(self, name: str, keys: Sequence[str]) -> list[str]:
        """Several keys of one Secret, in the order asked."""
        self.admit(Source.TENANT, name)
        return [await self.context.read_secret(name, key) for key in keys]

    def ambient(self) -> None:
        self.admit(Source.AMBIENT, self.kind)

    def service_account(self, name: str) -> None:
        self.admit(Source.SERVICE_ACCOUNT, name)

    def _operator_namespace(self, what: str) -> str:
        namespace = operator_namespace()
        if namespace is None:
            raise StoreInvalidError(
                f"{self.kind}: the operator does not know its own namespace (set POD_NAMESPACE), so the "
                f"ClusterTargetStore's {what} cannot be read"
            )
        return namespace

    def store_service_account(self, name: str) -> str:
        """The operator's namespace, where the store's ServiceAccount *name* lives (its token is requested there)."""
        self.admit(Source.STORE_SERVICE_ACCOUNT, name)
        return self._operator_namespace(f"ServiceAccount {name}")

    async def store_secret(self, ref: stores.SecretRef, field: str) -> str:
        """The value under `ref.key(field)` of the store's Secret in the operator's own namespace."""
        self.admit(Source.STORE, ref.name)
        namespace = self._operator_namespace(f"Secret {ref.name}")
        try:
            secret = await self.context.kube.get_secret(namespace, ref.name)
        except KubeError as exc:
            if exc.status != 403:
                raise
            raise StoreInvalidError(
                f"{self.kind}: the operator may not read the ClusterTargetStore's Secret {ref.name} in its own "
                f"namespace {namespace} (HTTP 403); when the chart's watchNamespaces leaves that namespace out, list "
                "the Secret in rbac.storeSecrets. Ask your cluster admin"
            ) from None
        encoded = ((secret or {}).get("data") or {}).get(ref.key(field))
        try:
            value = base64.b64decode(encoded or "", validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError):
            value = ""
        if not value:
            raise StoreInvalidError(
                f"{self.kind}: the ClusterTargetStore's Secret {ref.name} (operator namespace) has no usable key "
                f"{ref.key(field)!r}; ask your cluster admin"
            )
        return value


def credentials_for(context: TargetContext, kind: str, endpoint: str = "") -> Credentials:
    """The target's credentials; also starts its egress scope. A tenant's own connection runs under the
    operator's egress policy (every later `in_thread` SDK call of this target; *endpoint* is checked before the
    first one). A ClusterTargetStore's connection was configured by a cluster admin, not chosen by the tenant:
    it gets the unrestricted admin scope."""
    if _admin_connection(context):
        return Credentials(context, kind, endpoint, enter_scope(None, f"{kind} target"))
    return Credentials(context, kind, endpoint, enter_scope(context.egress, f"{kind} target", endpoint))


def _admin_connection(context: TargetContext) -> bool:
    """The target's connection (endpoint, identity) comes from a cluster admin's ClusterTargetStore."""
    return context.grant is not None and context.grant.store is not None
