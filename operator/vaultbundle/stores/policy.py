"""authorize: may this VaultBundle target reach its store, with whose identity, within which scope?

Without `storeRef` a target must bring its own credentials (the default deny: no ambient identity for tenants), and
a tenant-chosen URL is only ever used with them. With `storeRef` the admin's ClusterTargetStore decides: it must
admit the namespace, the target sets none of the connection fields, and the store's allowances cap adopt, prune and
forceDeleteWithoutRecovery. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vaultbundle.errors import PolicyDeniedError, SpecError
from vaultbundle.stores.model import (
    ClusterTargetStore,
    Connection,
    GitHubConnection,
    Identity,
    SecretRef,
    VaultConnection,
    admits,
)
from vaultbundle.stores.scope import (
    AWS,
    AZURE,
    DNS_SUBDOMAIN,
    GCP,
    GITHUB,
    KINDS,
    KMS,
    VAULT,
    BoundScope,
    check_values,
)

# Fields of a VaultBundle target that choose a connection or a credential: with `storeRef` the tenant sets none of
# them (the CRD's CEL rule lists the same fields; tests keep the two equal).
CONNECTION_FIELDS: Mapping[str, tuple[str, ...]] = {
    AWS: ("region", "endpoint", "stsEndpoint", "roleArn", "externalId", "credentialsSecretRef", "auth"),
    GCP: ("project", "endpoint", "insecure", "credentialsSecretRef", "auth"),
    AZURE: ("vaultURL", "auth", "caBundleSecretRef"),
    VAULT: ("address", "namespace", "caBundleSecretRef", "auth"),
    GITHUB: ("apiURL", "auth"),
    KMS: ("region", "endpoint", "stsEndpoint", "credentialsSecretRef", "auth"),  # spec.source.dotsec.kms
}
# CRD defaults of some of those fields: a field at its default counts as unset.
CONNECTION_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    GCP: {"insecure": False},
    VAULT: {"namespace": ""},
    GITHUB: {"apiURL": "https://api.github.com"},
    KMS: {"endpoint": ""},
}
# Tenant-chosen URLs: only ever used together with tenant-supplied credentials (C2).
ENDPOINT_FIELDS: Mapping[str, tuple[str, ...]] = {
    AWS: ("endpoint", "stsEndpoint"),
    GCP: ("endpoint", "auth.tokenURL", "auth.serviceAccountImpersonationURL"),
    AZURE: ("vaultURL", "auth.authorityHost"),
    VAULT: ("address",),
    GITHUB: ("apiURL",),
    KMS: ("endpoint", "stsEndpoint"),
}


# --- authorize -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    """What a target may do. `store` None: tenant-supplied credentials and the target's own connection fields
    (the cloud decides, no operator identity is involved). Otherwise the admin's connection and identity and a
    scope. The `allow_*` flags cap the target's own settings: prune only if `spec.prune and grant.allow_prune`
    (adopt / forceDeleteWithoutRecovery asked for but not allowed are refused by `authorize` already)."""

    kind: str
    store: str | None
    connection: Connection | None
    scope: BoundScope | None
    allow_adopt: bool = True
    allow_prune: bool = True
    allow_force_delete_without_recovery: bool = True

    @property
    def identity(self) -> Identity | None:
        connection = self.connection
        if connection is None or isinstance(connection, VaultConnection | GitHubConnection):
            return None
        return connection.identity

    @property
    def operator_secrets(self) -> frozenset[str]:
        """The Secrets (in the operator's namespace) the store names: the only ones a target of it may read."""
        return frozenset(ref.name for ref in operator_secret_refs(self.connection))

    @property
    def operator_service_account(self) -> str:
        """Vault Kubernetes auth: the ServiceAccount (operator's namespace) the store logs in as; else ""."""
        connection = self.connection
        if isinstance(connection, VaultConnection) and connection.auth.method == "kubernetes":
            return connection.auth.service_account_name
        return ""


def operator_secret_refs(connection: Connection | None) -> tuple[SecretRef, ...]:
    """Every Secret of the operator's namespace a store's connection names (identity, Vault auth and CA, GitHub)."""
    refs: tuple[SecretRef | None, ...] = ()
    if isinstance(connection, VaultConnection):
        auth = connection.auth
        refs = (
            connection.ca_bundle_secret_ref,
            auth.token_secret_ref,
            auth.role_id_secret_ref,
            auth.secret_id_secret_ref,
        )
    elif isinstance(connection, GitHubConnection):
        refs = (connection.auth.token_secret_ref, connection.auth.private_key_secret_ref)
    elif connection is not None:
        refs = (connection.identity.secret_ref,)
    return tuple(ref for ref in refs if ref is not None)


def store_ref(kind: str, body: Mapping[str, Any]) -> str | None:
    """The ClusterTargetStore a target names (`storeRef.name`), or None."""
    ref = body.get("storeRef")
    if ref is None:
        return None
    if not isinstance(ref, dict) or set(ref) != {"name"} or not isinstance(ref["name"], str):
        raise SpecError(f"{kind}.storeRef must be {{name: <ClusterTargetStore>}}")
    if len(ref["name"]) > 253 or not DNS_SUBDOMAIN.fullmatch(ref["name"]):
        raise SpecError(f"{kind}.storeRef.name is not a valid object name")
    return ref["name"]


def has_tenant_credentials(kind: str, body: Mapping[str, Any]) -> bool:
    """True when the target brings its own credentials (a Secret or ServiceAccount in its namespace)."""
    if kind in (AWS, KMS):  # a static key, or a ServiceAccount of the namespace (AssumeRoleWithWebIdentity)
        return body.get("credentialsSecretRef") is not None or _set(body, "auth.serviceAccountRef")
    if kind == GCP:  # a service-account key, or a ServiceAccount of the namespace (workload identity federation)
        return body.get("credentialsSecretRef") is not None or _set(body, "auth.serviceAccountRef")
    if kind == AZURE:  # a client secret, or a ServiceAccount of the namespace (workload identity federation)
        return _set(body, "auth.clientSecretRef") or _set(body, "auth.serviceAccountRef")
    if kind in (VAULT, GITHUB):
        return bool(body.get("auth"))  # every Vault / GitHub login is the tenant's own
    raise SpecError(f"{kind} is not an external store kind")


def _set(body: Mapping[str, Any], dotted: str) -> bool:
    node: Any = body
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or node.get(part) in (None, ""):
            return False
        node = node[part]
    return True


def require_tenant_credentials(kind: str, body: Mapping[str, Any]) -> None:
    """The default for a target without `storeRef`: its own credentials, or `PolicyDenied` (C1, C2, M3, L5)."""
    anonymous = kind == GCP and body.get("insecure") is True  # loopback emulator: sends no credentials at all
    if not anonymous and not has_tenant_credentials(kind, body):
        urls = [f for f in ENDPOINT_FIELDS[kind] if _set(body, f)]
        why = f" (and {', '.join(urls)} would receive it)" if urls else ""
        raise PolicyDeniedError(
            f"{kind}: no ambient identity for tenants{why}; ask your cluster admin for a ClusterTargetStore "
            "(then set storeRef), or supply credentials from a Secret in this namespace"
        )
    if kind == AWS and body.get("externalId"):
        raise PolicyDeniedError(
            f"{kind}.externalId comes only from a ClusterTargetStore (set by your cluster "
            "admin), never from a VaultBundle"
        )
    if kind == AZURE and _set(body, "auth.managedIdentityClientID"):
        raise PolicyDeniedError(
            f"{kind}.auth.managedIdentityClientID selects an operator identity: only a "
            "ClusterTargetStore may choose one; ask your cluster admin"
        )


def _deny_not_admitted(ref: str, namespace: str) -> PolicyDeniedError:
    # One message for "missing", "wrong kind" and "not admitted": a tenant learns nothing about other stores.
    return PolicyDeniedError(
        f"ClusterTargetStore {ref} does not exist, is for another store kind, or does not admit namespace "
        f"{namespace}; ask your cluster admin to create it or add this namespace to its spec.conditions"
    )


def _check_requests(kind: str, body: Mapping[str, Any], store: ClusterTargetStore) -> None:
    if body.get("adopt") is True and not store.allow.adopt:
        raise PolicyDeniedError(
            f"{kind}.adopt: ClusterTargetStore {store.name} does not allow adopting existing "
            "secrets (spec.allow.adopt); ask your cluster admin, or choose new names"
        )
    if body.get("forceDeleteWithoutRecovery") is True and not store.allow.force_delete_without_recovery:
        raise PolicyDeniedError(
            f"{kind}.forceDeleteWithoutRecovery: ClusterTargetStore {store.name} does not allow "
            "it (spec.allow.forceDeleteWithoutRecovery); drop it or ask your cluster admin"
        )


def authorize(
    target_kind: str,
    target_body: Mapping[str, Any],
    store: ClusterTargetStore | None,
    namespace: str,
    labels: Mapping[str, str],
    vb_name: str,
) -> Grant:
    """Decide how a VaultBundle target (`target_body`: the object under its kind key) may reach its store.

    *store* is the parsed ClusterTargetStore the target's `storeRef` names (None if it names none, or the store
    does not exist). *labels* are the labels of the VaultBundle's Namespace. Raises `PolicyDeniedError` (what the
    admin must configure) or `SpecError` (the tenant's own spec is wrong).
    """
    if target_kind not in KINDS:
        raise SpecError(f"{target_kind} is not an external store kind ({', '.join(KINDS)})")
    check_values(namespace, vb_name)
    ref = store_ref(target_kind, target_body)
    if ref is None:
        require_tenant_credentials(target_kind, target_body)
        return Grant(target_kind, None, None, None)
    defaults = CONNECTION_DEFAULTS.get(target_kind, {})
    forbidden = [
        f
        for f in CONNECTION_FIELDS[target_kind]
        if f in target_body and (f not in defaults or target_body[f] != defaults[f])
    ]
    if forbidden:
        raise SpecError(
            f"{target_kind}: with storeRef the connection comes from the ClusterTargetStore; "
            f"remove {', '.join(forbidden)}"
        )
    if store is None or store.name != ref or store.kind != target_kind or not admits(store, namespace, labels):
        raise _deny_not_admitted(ref, namespace)
    _check_requests(target_kind, target_body, store)
    scope = BoundScope(store.name, target_kind, namespace, vb_name, store.scope)
    _check_static_scope(target_kind, target_body, scope)
    return Grant(
        kind=target_kind,
        store=store.name,
        connection=store.connection,
        scope=scope,
        allow_adopt=store.allow.adopt,
        allow_prune=store.allow.prune,  # pruning is some kinds' default: a store that forbids it turns it off quietly
        allow_force_delete_without_recovery=store.allow.force_delete_without_recovery,
    )


def _check_static_scope(kind: str, body: Mapping[str, Any], scope: BoundScope) -> None:
    """What the spec alone already fixes is checked at once: the Vault mount + path, the
    GitHub repository (and environment) or organization; the targets check the same again before every read and
    write. (Remote names of AWS / GCP / Azure come from the bundle: `scope.scoped_name` before each write.)"""
    if kind == VAULT and body.get("path"):
        scope.check_path(str(body.get("mount") or "secret"), str(body["path"]))
    elif kind == GITHUB:
        scope.check_github(
            str(body.get("repository") or ""),
            str(body.get("environment") or ""),
            str(body.get("organization") or ""),
            str(body.get("visibility") or "private"),
        )
