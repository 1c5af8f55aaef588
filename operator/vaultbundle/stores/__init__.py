"""ClusterTargetStore policy: who may use an admin-owned store, with which identity, within which scope.

Why this package exists: without it every tenant can borrow the operator's own cloud identity (security review C1)
and send it to an endpoint of its choice (C2). A cluster admin now owns that decision through the cluster-scoped
``ClusterTargetStore`` CRD (``crds/vaultbundle.io_clustertargetstores.yaml``): a store kind with its connection and
identity, the namespaces that may use it, the scope a tenant's writes are confined to, and whether adopt, prune
and forceDeleteWithoutRecovery are allowed.

Every module here is pure: no I/O, no kopf, no SDK. The caller reads the ClusterTargetStore and the tenant's Namespace
(labels) and passes them in as plain dicts; everything here is a function of its arguments, so the policy is tested
exhaustively without a cluster.

How a store target uses it (one call per target, before any client is built)::

    store = parse_store(cts_body) if ref else None        # ref = store_ref(kind, body); None without storeRef
    grant = authorize(kind, body, store, namespace=ns, labels=ns_labels, vb_name=name)
    # grant.store is None: tenant-supplied credentials, the target's own fields, no operator identity.
    # grant.connection / grant.identity: the admin's connection and identity (never the tenant's fields).
    name = grant.scope.scoped_name(remote_name)          # AWS / GCP / Azure, before every create/adopt/delete
    grant.scope.check_path(mount, path)                  # Vault (authorize checked the spec's path already)
    grant.scope.check_repository("owner/repo")           # GitHub (likewise)
    prune = spec.prune and grant.allow_prune             # allow_adopt / allow_force_delete_without_recovery too

Every refusal is a ``PolicyDeniedError`` (reason ``PolicyDenied``) whose message says what the cluster admin must
configure and never names another tenant; a malformed ClusterTargetStore is a ``StoreInvalidError`` naming the
field. The AWS identity helpers (``assume_role_inputs``) and the per-namespace key derivation (``namespace_key``)
live here too: they are the same kind of pure "which identity, for whom" decision.

Modules: `model` (the ClusterTargetStore object, parsing, LabelSelector admission), `scope` (placeholders and the
scope checks), `policy` (`authorize`, the default deny), `identity` (AWS session identity, per-namespace keys).
Import the names from here.
"""

from vaultbundle.errors import PolicyDeniedError, StoreInvalidError
from vaultbundle.stores.identity import SESSION_TAG_KEYS, assume_role_inputs, namespace_key, role_session_name
from vaultbundle.stores.model import (
    Allow,
    AwsConnection,
    AzureConnection,
    ClusterTargetStore,
    Conditions,
    Connection,
    GcpConnection,
    GitHubAuth,
    GitHubConnection,
    Identity,
    LabelSelector,
    Requirement,
    SecretRef,
    VaultAuth,
    VaultConnection,
    admits,
    parse_store,
)
from vaultbundle.stores.policy import (
    CONNECTION_DEFAULTS,
    CONNECTION_FIELDS,
    ENDPOINT_FIELDS,
    Grant,
    authorize,
    has_tenant_credentials,
    require_tenant_credentials,
    store_ref,
)
from vaultbundle.stores.scope import (
    AWS,
    AZURE,
    GCP,
    GITHUB,
    KINDS,
    KMS,
    NAME_RULES,
    PLACEHOLDERS,
    VAULT,
    BoundScope,
    Scope,
    Template,
    expand,
    scoped_name,
)

__all__ = [
    "AWS",
    "AZURE",
    "CONNECTION_DEFAULTS",
    "CONNECTION_FIELDS",
    "ENDPOINT_FIELDS",
    "GCP",
    "GITHUB",
    "KINDS",
    "KMS",
    "NAME_RULES",
    "PLACEHOLDERS",
    "SESSION_TAG_KEYS",
    "VAULT",
    "Allow",
    "AwsConnection",
    "AzureConnection",
    "BoundScope",
    "ClusterTargetStore",
    "Conditions",
    "Connection",
    "GcpConnection",
    "GitHubAuth",
    "GitHubConnection",
    "Grant",
    "Identity",
    "LabelSelector",
    "PolicyDeniedError",
    "Requirement",
    "Scope",
    "SecretRef",
    "StoreInvalidError",
    "Template",
    "VaultAuth",
    "VaultConnection",
    "admits",
    "assume_role_inputs",
    "authorize",
    "expand",
    "has_tenant_credentials",
    "namespace_key",
    "parse_store",
    "require_tenant_credentials",
    "role_session_name",
    "scoped_name",
    "store_ref",
]
