"""Credential resolution: the one place where a store gets what it authenticates with.

A store never calls `TargetContext.read_secret` or reaches for the operator's own identity by itself: it asks
`Credentials` (built with `credentials_for(context, kind, endpoint)`) for

* `secret(ref)` / `secret_keys(name, keys)`: keys of a tenant Secret in the VaultBundle's own namespace
  (credentials, and CA bundles too: every tenant Secret a store reads);
* `ambient()`: permission to use the operator's ambient identity (IRSA / default chain, workload identity /
  ADC, managed identity), for stores that have one and a spec that names no Secret;
* `service_account(name)`: permission to request a token for a ServiceAccount of the namespace (Vault's
  Kubernetes auth).

Every one of these passes through `Credentials.admit()`. Today it admits everything, so behaviour is what it
was. It is where issue #13 (`ClusterTargetStore`, tenant credentials only, egress policy) adds its check: a
refusal raises `TargetError(Reason.POLICY_DENIED, ...)` there, and because this is the only path to
credentials, no store can bypass it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from ..fields import SecretRef
from .base import TargetContext
from .threads import EgressScope, enter_scope


class Source(Enum):
    """Where a store's credentials come from."""

    TENANT = "tenant Secret"
    AMBIENT = "ambient identity"
    SERVICE_ACCOUNT = "ServiceAccount token"


@dataclass(frozen=True)
class Credentials:
    """The credentials one target may use (see the module docstring)."""

    context: TargetContext
    kind: str  # the spec.targets[] kind, e.g. "awsSecretsManager"
    endpoint: str = ""  # where the credentials will be sent ("" = the store's public default)
    egress: EgressScope | None = None  # this target's egress scope (its SDK calls run under it)

    def adopt_allowed(self) -> bool:
        """True when the ClusterTargetStore lending this connection allows `adopt` without the object's own
        opt-in tag (its Grant; set where the store's ClusterTargetStore is resolved). A tenant's own
        connection never does: there the object must opt in (`ownership.Consent`)."""
        return False

    def admin_connection(self) -> None:
        """The connection (endpoint, identity) comes from a cluster admin's `ClusterTargetStore`, not from the
        tenant: the target's SDK calls are then not restricted by the tenant egress policy."""
        if self.egress is not None:
            self.egress.admin()

    def admit(self, source: Source, detail: str) -> None:
        """The policy check for every credential path (issue #13 adds its rules here). Admits all today."""

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


def credentials_for(context: TargetContext, kind: str, endpoint: str = "") -> Credentials:
    """The target's credentials; also starts its egress scope: every later `in_thread` SDK call of this target
    runs under the operator's egress policy, and *endpoint* is checked against it before the first one."""
    scope = enter_scope(context.egress, f"{kind} target", endpoint)
    return Credentials(context, kind, endpoint, scope)
