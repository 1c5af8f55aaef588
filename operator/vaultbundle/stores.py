"""ClusterTargetStore policy: who may use an admin-owned store, with which identity, within which scope.

Why this module exists: without it every tenant can borrow the operator's own cloud identity (security review C1)
and send it to an endpoint of its choice (C2). A cluster admin now owns that decision through the cluster-scoped
``ClusterTargetStore`` CRD (``crds/vaultbundle.io_clustertargetstores.yaml``): a store kind with its connection and
identity, the namespaces that may use it, the scope a tenant's writes are confined to, and whether adopt, prune
and forceDeleteWithoutRecovery are allowed.

The module is pure: no I/O, no kopf, no SDK. The caller reads the ClusterTargetStore and the tenant's Namespace
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
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vaultbundle.errors import PolicyDeniedError, Reason, SpecError, StoreInvalidError, TargetError

AWS, GCP, AZURE, VAULT, GITHUB = (
    "awsSecretsManager",
    "gcpSecretManager",
    "azureKeyVault",
    "hashicorpVault",
    "githubActions",
)
KINDS = (AWS, GCP, AZURE, VAULT, GITHUB)

# Fields of a VaultBundle target that choose a connection or a credential: with `storeRef` the tenant sets none of
# them (the CRD's CEL rule lists the same fields; tests keep the two equal).
CONNECTION_FIELDS: Mapping[str, tuple[str, ...]] = {
    AWS: ("region", "endpoint", "stsEndpoint", "roleArn", "externalId", "credentialsSecretRef"),
    GCP: ("project", "endpoint", "insecure", "credentialsSecretRef"),
    AZURE: ("vaultURL", "auth", "caBundleSecretRef", "verifyChallengeResource"),
    VAULT: ("address", "namespace", "caBundleSecretRef", "auth"),
    GITHUB: ("apiURL", "auth"),
}
# CRD defaults of some of those fields: a field at its default counts as unset.
CONNECTION_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    GCP: {"insecure": False},
    AZURE: {"verifyChallengeResource": True},
    VAULT: {"namespace": ""},
    GITHUB: {"apiURL": "https://api.github.com"},
}
# Tenant-chosen URLs: only ever used together with tenant-supplied credentials (C2).
ENDPOINT_FIELDS: Mapping[str, tuple[str, ...]] = {
    AWS: ("endpoint", "stsEndpoint"),
    GCP: ("endpoint",),
    AZURE: ("vaultURL", "auth.authorityHost"),
    VAULT: ("address",),
    GITHUB: ("apiURL",),
}

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}|[{}]")
PLACEHOLDERS = ("{namespace}", "{name}")
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


# --- typed store -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SecretRef:
    """A Secret in the OPERATOR's namespace (never a tenant's): its name and the data keys to read."""

    name: str
    keys: tuple[tuple[str, str], ...] = ()

    def key(self, field_name: str) -> str:
        return dict(self.keys)[field_name]


@dataclass(frozen=True)
class Identity:
    """`ambient`: the operator's own IRSA / workload identity / managed identity; else a Secret of the operator."""

    ambient: bool
    secret_ref: SecretRef | None = None
    managed_identity_client_id: str = ""  # Azure, ambient only: which user-assigned identity


@dataclass(frozen=True)
class AwsConnection:
    region: str
    endpoint: str
    sts_endpoint: str
    role_arn: str
    external_id: str
    identity: Identity


@dataclass(frozen=True)
class GcpConnection:
    project: str
    endpoint: str
    identity: Identity


@dataclass(frozen=True)
class AzureConnection:
    vault_url: str
    authority_host: str
    identity: Identity


@dataclass(frozen=True)
class VaultAuth:
    """One Vault login method; every Secret/ServiceAccount it names lives in the operator's namespace."""

    method: Literal["token", "kubernetes", "appRole"]
    mount: str = ""
    role: str = ""
    service_account_name: str = ""
    audiences: tuple[str, ...] = ()
    token_secret_ref: SecretRef | None = None
    role_id_secret_ref: SecretRef | None = None
    secret_id_secret_ref: SecretRef | None = None


@dataclass(frozen=True)
class VaultConnection:
    address: str
    namespace: str
    ca_bundle_secret_ref: SecretRef | None
    auth: VaultAuth


@dataclass(frozen=True)
class GitHubAuth:
    method: Literal["token", "app"]
    token_secret_ref: SecretRef | None = None
    app_id: str = ""
    installation_id: int = 0
    private_key_secret_ref: SecretRef | None = None


@dataclass(frozen=True)
class GitHubConnection:
    api_url: str
    auth: GitHubAuth


Connection = AwsConnection | GcpConnection | AzureConnection | VaultConnection | GitHubConnection


@dataclass(frozen=True)
class Requirement:
    """One matchExpressions entry of a metav1.LabelSelector."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """metav1.LabelSelector: every matchLabels pair AND every expression; an empty selector selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )


@dataclass(frozen=True)
class Conditions:
    """Which namespaces may use the store: the selector matches OR the name is listed. Neither set: none."""

    namespace_selector: LabelSelector | None = None
    namespaces: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Scope:
    """The admin's scope templates (with `{namespace}` / `{name}`), applicable fields depend on the kind."""

    name_prefix: str = ""  # AWS, GCP, Azure
    mount: str = ""  # Vault
    path_prefix: str = ""  # Vault
    repositories: tuple[str, ...] = ()  # GitHub `owner/repo` patterns; `*` matches within the repo name
    organization: str = ""  # GitHub


@dataclass(frozen=True)
class Allow:
    adopt: bool = False
    prune: bool = True
    force_delete_without_recovery: bool = False


@dataclass(frozen=True)
class ClusterTargetStore:
    name: str
    kind: str
    connection: Connection
    conditions: Conditions
    scope: Scope
    allow: Allow


# --- field helpers (errors carry the store's path) -------------------------------------------------------------------
def _where(store: str, path: str) -> str:
    return f"ClusterTargetStore {store}: {path}"


def _obj(raw: Any, store: str, path: str, *, required: bool = False) -> dict[str, Any]:
    if raw is None and not required:
        return {}
    if not isinstance(raw, dict):
        raise StoreInvalidError(f"{_where(store, path)} must be an object")
    return raw


def _str(raw: Any, store: str, path: str, *, required: bool = False, pattern: re.Pattern[str] | None = None) -> str:
    if raw is None or raw == "":
        if required:
            raise StoreInvalidError(f"{_where(store, path)} is required")
        return ""
    if not isinstance(raw, str):
        raise StoreInvalidError(f"{_where(store, path)} must be a string")
    if pattern is not None and not pattern.fullmatch(raw):
        raise StoreInvalidError(f"{_where(store, path)} has an invalid format")
    return raw


def _bool(raw: Any, store: str, path: str, default: bool) -> bool:
    if raw is None:
        return default
    if not isinstance(raw, bool):
        raise StoreInvalidError(f"{_where(store, path)} must be true or false")
    return raw


def _strs(raw: Any, store: str, path: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise StoreInvalidError(f"{_where(store, path)} must be a list of strings")
    return tuple(_str(item, store, f"{path}[{i}]", required=True) for i, item in enumerate(raw))


_URL = re.compile(r"https://[^\s/?#@]+(/[^\s?#]*)?")


def _url(raw: Any, store: str, path: str, *, required: bool = False) -> str:
    text = _str(raw, store, path, required=required)
    if text and not _URL.fullmatch(text):
        raise StoreInvalidError(f"{_where(store, path)} must be an https:// URL without credentials or query")
    return text


def _secret_ref(raw: Any, store: str, path: str, defaults: Mapping[str, str]) -> SecretRef | None:
    if raw is None:
        return None
    ref = _obj(raw, store, path)
    if "namespace" in ref:
        raise StoreInvalidError(
            f"{_where(store, path)}.namespace is refused: the Secret is read from the operator's own namespace"
        )
    unknown = set(ref) - {"name", *defaults}
    if unknown:
        raise StoreInvalidError(f"{_where(store, path)}: unknown fields {sorted(unknown)}")
    name = _str(ref.get("name"), store, f"{path}.name", required=True, pattern=_DNS_SUBDOMAIN)
    keys = tuple(
        (f, _str(ref.get(f), store, f"{path}.{f}", pattern=_SECRET_KEY) or default) for f, default in defaults.items()
    )
    return SecretRef(name=name, keys=keys)


# --- parsing a ClusterTargetStore ------------------------------------------------------------------------------------
_IDENTITY_KEYS: Mapping[str, Mapping[str, str]] = {
    AWS: {"accessKeyIdKey": "access-key-id", "secretAccessKeyKey": "secret-access-key", "sessionTokenKey": ""},
    GCP: {"key": "credentials.json"},
    AZURE: {"tenantIdKey": "tenant-id", "clientIdKey": "client-id", "clientSecretKey": "client-secret"},
}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _identity(raw: Any, store: str, path: str, kind: str) -> Identity:
    body = _obj(raw, store, path, required=True)
    if ("ambient" in body) == ("secretRef" in body):
        raise StoreInvalidError(f"{_where(store, path)} must set exactly one of ambient or secretRef")
    if "secretRef" in body:
        return Identity(
            ambient=False, secret_ref=_secret_ref(body["secretRef"], store, f"{path}.secretRef", _IDENTITY_KEYS[kind])
        )
    ambient = _obj(body["ambient"], store, f"{path}.ambient")
    client_id = ""
    if kind == AZURE:
        client_id = _str(
            ambient.get("managedIdentityClientID"), store, f"{path}.ambient.managedIdentityClientID", pattern=_GUID
        )
    elif ambient:
        raise StoreInvalidError(f"{_where(store, path)}.ambient takes no fields for {kind}")
    return Identity(ambient=True, managed_identity_client_id=client_id)


_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+-[0-9]+")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")
_GCP_PROJECT = re.compile(r"(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}")
_GRPC_ENDPOINT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}")
_VAULT_PATH = re.compile(r"[A-Za-z0-9._~@=+:,-]+(/[A-Za-z0-9._~@=+:,-]+)*")


def _aws(body: dict[str, Any], store: str, path: str) -> AwsConnection:
    role_arn = _str(body.get("roleArn"), store, f"{path}.roleArn", pattern=_ROLE_ARN)
    external_id = _str(body.get("externalId"), store, f"{path}.externalId", pattern=_EXTERNAL_ID)
    if external_id and not role_arn:
        raise StoreInvalidError(f"{_where(store, path)}.externalId is only used with roleArn")
    return AwsConnection(
        region=_str(body.get("region"), store, f"{path}.region", required=True, pattern=_REGION),
        endpoint=_url(body.get("endpoint"), store, f"{path}.endpoint"),
        sts_endpoint=_url(body.get("stsEndpoint"), store, f"{path}.stsEndpoint"),
        role_arn=role_arn,
        external_id=external_id,
        identity=_identity(body.get("identity"), store, f"{path}.identity", AWS),
    )


def _gcp(body: dict[str, Any], store: str, path: str) -> GcpConnection:
    return GcpConnection(
        project=_str(body.get("project"), store, f"{path}.project", required=True, pattern=_GCP_PROJECT),
        endpoint=_str(body.get("endpoint"), store, f"{path}.endpoint", pattern=_GRPC_ENDPOINT),
        identity=_identity(body.get("identity"), store, f"{path}.identity", GCP),
    )


def _azure(body: dict[str, Any], store: str, path: str) -> AzureConnection:
    return AzureConnection(
        vault_url=_url(body.get("vaultURL"), store, f"{path}.vaultURL", required=True),
        authority_host=_url(body.get("authorityHost"), store, f"{path}.authorityHost"),
        identity=_identity(body.get("identity"), store, f"{path}.identity", AZURE),
    )


def _vault_auth(raw: Any, store: str, path: str) -> VaultAuth:
    body = _obj(raw, store, path, required=True)
    methods = [m for m in ("tokenSecretRef", "kubernetes", "appRole") if m in body]
    if len(methods) != 1:
        raise StoreInvalidError(f"{_where(store, path)} must set exactly one of tokenSecretRef, kubernetes, appRole")
    if methods == ["tokenSecretRef"]:
        return VaultAuth(
            "token",
            token_secret_ref=_secret_ref(body["tokenSecretRef"], store, f"{path}.tokenSecretRef", {"key": "token"}),
        )
    if methods == ["kubernetes"]:
        k8s = _obj(body["kubernetes"], store, f"{path}.kubernetes")
        return VaultAuth(
            "kubernetes",
            mount=_str(k8s.get("mount"), store, f"{path}.kubernetes.mount", pattern=_VAULT_PATH) or "kubernetes",
            role=_str(k8s.get("role"), store, f"{path}.kubernetes.role", required=True),
            service_account_name=_str(
                k8s.get("serviceAccountName"),
                store,
                f"{path}.kubernetes.serviceAccountName",
                required=True,
                pattern=_DNS_SUBDOMAIN,
            ),
            audiences=_strs(k8s.get("audiences"), store, f"{path}.kubernetes.audiences"),
        )
    app = _obj(body["appRole"], store, f"{path}.appRole")
    return VaultAuth(
        "appRole",
        mount=_str(app.get("mount"), store, f"{path}.appRole.mount", pattern=_VAULT_PATH) or "approle",
        role_id_secret_ref=_secret_ref(
            app.get("roleIdSecretRef"), store, f"{path}.appRole.roleIdSecretRef", {"key": "role-id"}
        ),
        secret_id_secret_ref=_secret_ref(
            app.get("secretIdSecretRef"), store, f"{path}.appRole.secretIdSecretRef", {"key": "secret-id"}
        ),
    )


def _vault(body: dict[str, Any], store: str, path: str) -> VaultConnection:
    address = _str(body.get("address"), store, f"{path}.address", required=True)
    if not _URL.fullmatch(address):
        raise StoreInvalidError(f"{_where(store, path)}.address must be an https:// URL")
    return VaultConnection(
        address=address,
        namespace=_str(body.get("namespace"), store, f"{path}.namespace", pattern=_VAULT_PATH),
        ca_bundle_secret_ref=_secret_ref(
            body.get("caBundleSecretRef"), store, f"{path}.caBundleSecretRef", {"key": "ca.crt"}
        ),
        auth=_vault_auth(body.get("auth"), store, f"{path}.auth"),
    )


def _github(body: dict[str, Any], store: str, path: str) -> GitHubConnection:
    auth = _obj(body.get("auth"), store, f"{path}.auth", required=True)
    if ("tokenSecretRef" in auth) == ("app" in auth):
        raise StoreInvalidError(f"{_where(store, path)}.auth must set exactly one of tokenSecretRef or app")
    if "tokenSecretRef" in auth:
        method = GitHubAuth(
            "token",
            token_secret_ref=_secret_ref(
                auth["tokenSecretRef"], store, f"{path}.auth.tokenSecretRef", {"key": "token"}
            ),
        )
    else:
        app = _obj(auth["app"], store, f"{path}.auth.app")
        installation = app.get("installationID")
        if not isinstance(installation, int) or isinstance(installation, bool) or installation <= 0:
            raise StoreInvalidError(f"{_where(store, path)}.auth.app.installationID must be a positive integer")
        method = GitHubAuth(
            "app",
            app_id=_str(str(app.get("appID") or ""), store, f"{path}.auth.app.appID", required=True),
            installation_id=installation,
            private_key_secret_ref=_secret_ref(
                app.get("privateKeySecretRef"),
                store,
                f"{path}.auth.app.privateKeySecretRef",
                {"key": "private-key.pem"},
            ),
        )
    return GitHubConnection(
        api_url=_url(body.get("apiURL"), store, f"{path}.apiURL") or "https://api.github.com", auth=method
    )


_CONNECTIONS: Mapping[str, Callable[[dict[str, Any], str, str], Connection]] = {
    AWS: _aws,
    GCP: _gcp,
    AZURE: _azure,
    VAULT: _vault,
    GITHUB: _github,
}


def _selector(raw: Any, store: str, path: str) -> LabelSelector | None:
    if raw is None:
        return None
    body = _obj(raw, store, path)
    labels = _obj(body.get("matchLabels"), store, f"{path}.matchLabels")
    for key, value in labels.items():
        _label_key(key, store, f"{path}.matchLabels")
        _str(value, store, f"{path}.matchLabels[{key}]", pattern=_LABEL_VALUE)
    expressions = body.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise StoreInvalidError(f"{_where(store, path)}.matchExpressions must be a list")
    return LabelSelector(
        match_labels=tuple(sorted(labels.items())),
        match_expressions=tuple(
            _requirement(e, store, f"{path}.matchExpressions[{i}]") for i, e in enumerate(expressions)
        ),
    )


def _label_key(key: Any, store: str, path: str) -> str:
    text = _str(key, store, path, required=True)
    prefix, _, name = text.rpartition("/")
    if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix))) or not (
        len(name) <= 63 and _LABEL_NAME.fullmatch(name)
    ):
        raise StoreInvalidError(f"{_where(store, path)}: {text!r} is not a valid label key")
    return text


def _requirement(raw: Any, store: str, path: str) -> Requirement:
    body = _obj(raw, store, path, required=True)
    key = _label_key(body.get("key"), store, f"{path}.key")
    operator = body.get("operator")
    if operator not in _SELECTOR_OPERATORS:
        raise StoreInvalidError(f"{_where(store, path)}.operator must be one of {', '.join(_SELECTOR_OPERATORS)}")
    values = _strs(body.get("values"), store, f"{path}.values")
    for i, value in enumerate(values):
        _str(value, store, f"{path}.values[{i}]", pattern=_LABEL_VALUE)
    if operator in ("In", "NotIn") and not values:
        raise StoreInvalidError(f"{_where(store, path)}.values must be non-empty for operator {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise StoreInvalidError(f"{_where(store, path)}.values must be empty for operator {operator}")
    return Requirement(key=key, operator=operator, values=frozenset(values))


def _conditions(raw: Any, store: str) -> Conditions:
    body = _obj(raw, store, "spec.conditions")
    names = _strs(body.get("namespaces"), store, "spec.conditions.namespaces")
    for i, name in enumerate(names):
        if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
            raise StoreInvalidError(f"{_where(store, f'spec.conditions.namespaces[{i}]')} is not a namespace name")
    return Conditions(
        namespace_selector=_selector(body.get("namespaceSelector"), store, "spec.conditions.namespaceSelector"),
        namespaces=frozenset(names),
    )


_SCOPE_FIELDS: Mapping[str, tuple[str, ...]] = {
    AWS: ("namePrefix",),
    GCP: ("namePrefix",),
    AZURE: ("namePrefix",),
    VAULT: ("mount", "pathPrefix"),
    GITHUB: ("repositories", "organization"),
}


def _scope(raw: Any, store: str, kind: str) -> Scope:
    body = _obj(raw, store, "spec.scope", required=True)
    wrong = set(body) - set(_SCOPE_FIELDS[kind])
    if wrong:
        raise StoreInvalidError(
            f"{_where(store, 'spec.scope')}: {sorted(wrong)} do not apply to {kind} "
            f"(use {', '.join(_SCOPE_FIELDS[kind])})"
        )
    scope = Scope(
        name_prefix=_str(body.get("namePrefix"), store, "spec.scope.namePrefix"),
        mount=_str(body.get("mount"), store, "spec.scope.mount", pattern=_VAULT_PATH),
        path_prefix=_str(body.get("pathPrefix"), store, "spec.scope.pathPrefix"),
        repositories=_strs(body.get("repositories"), store, "spec.scope.repositories"),
        organization=_str(body.get("organization"), store, "spec.scope.organization"),
    )
    for path, template in _templates(scope):
        try:
            Template.parse(template, wildcards=path.startswith("repositories"))
        except SpecError as exc:
            raise StoreInvalidError(f"{_where(store, 'spec.scope.' + path)}: {exc}") from None
    _require_scope(scope, store, kind)
    _check_literals(scope, store, kind)
    if scope.name_prefix and Template.parse(scope.name_prefix).parts[-1] in (_NS, _NAME):
        raise StoreInvalidError(
            f"{_where(store, 'spec.scope.namePrefix')} must not end with a placeholder: every name after it would "
            "be ambiguous (end it with a separator, e.g. tenants/{namespace}/)"
        )
    return scope


def _check_literals(scope: Scope, store: str, kind: str) -> None:
    """The template's own characters must already obey the store's name rules (checked on a sample expansion)."""
    if kind in NAME_RULES:
        path, template, rule = "spec.scope.namePrefix", scope.name_prefix, NAME_RULES[kind].chars
    elif kind == VAULT:
        path, template, rule = "spec.scope.pathPrefix", scope.path_prefix.strip("/"), _VAULT_PATH
    else:
        return
    try:
        sample = expand(template, "ns", "name")
    except SpecError as exc:
        raise StoreInvalidError(f"{_where(store, path)}: {exc}") from None
    if not rule.fullmatch(sample):
        raise StoreInvalidError(f"{_where(store, path)} has characters {kind} does not allow in names")


def _templates(scope: Scope) -> list[tuple[str, str]]:
    found = [("namePrefix", scope.name_prefix), ("pathPrefix", scope.path_prefix), ("organization", scope.organization)]
    found += [(f"repositories[{i}]", r) for i, r in enumerate(scope.repositories)]
    return [(p, t) for p, t in found if t]


def _require_scope(scope: Scope, store: str, kind: str) -> None:
    """Every store has a scope: an admin who wants a whole account for one namespace still writes a prefix."""
    if kind in (AWS, GCP, AZURE) and not scope.name_prefix:
        raise StoreInvalidError(f"{_where(store, 'spec.scope.namePrefix')} is required, e.g. tenants/{{namespace}}/")
    if kind == VAULT and not (scope.mount and scope.path_prefix):
        raise StoreInvalidError(f"{_where(store, 'spec.scope')}: mount and pathPrefix are required for {kind}")
    if kind == GITHUB and not (scope.repositories or scope.organization):
        raise StoreInvalidError(f"{_where(store, 'spec.scope')}: set repositories or organization for {kind}")


def parse_store(body: Mapping[str, Any]) -> ClusterTargetStore:
    """A ClusterTargetStore object (as read from the apiserver) -> typed store; `StoreInvalidError` names the field."""
    name = str((body.get("metadata") or {}).get("name") or "<unnamed>")
    spec = _obj(body.get("spec"), name, "spec", required=True)
    kinds = [k for k in KINDS if k in spec]
    if len(kinds) != 1:
        raise StoreInvalidError(f"{_where(name, 'spec')} must set exactly one store kind ({', '.join(KINDS)})")
    kind = kinds[0]
    allow = _obj(spec.get("allow"), name, "spec.allow")
    if allow.get("forceDeleteWithoutRecovery") is True and kind != AWS:
        raise StoreInvalidError(f"{_where(name, 'spec.allow.forceDeleteWithoutRecovery')} only applies to {AWS}")
    return ClusterTargetStore(
        name=name,
        kind=kind,
        connection=_CONNECTIONS[kind](_obj(spec[kind], name, f"spec.{kind}", required=True), name, f"spec.{kind}"),
        conditions=_conditions(spec.get("conditions"), name),
        scope=_scope(spec.get("scope"), name, kind),
        allow=Allow(
            adopt=_bool(allow.get("adopt"), name, "spec.allow.adopt", False),
            prune=_bool(allow.get("prune"), name, "spec.allow.prune", True),
            force_delete_without_recovery=_bool(
                allow.get("forceDeleteWithoutRecovery"), name, "spec.allow.forceDeleteWithoutRecovery", False
            ),
        ),
    )


# --- admission -------------------------------------------------------------------------------------------------------
def admits(store: ClusterTargetStore, namespace: str, namespace_labels: Mapping[str, str]) -> bool:
    """True when *namespace* may use *store*: listed by name, or its labels match the selector. Default: no."""
    conditions = store.conditions
    if namespace in conditions.namespaces:
        return True
    return conditions.namespace_selector is not None and conditions.namespace_selector.matches(namespace_labels)


# --- placeholders and scope matching ---------------------------------------------------------------------------------
def _check_values(namespace: str, name: str) -> None:
    if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        raise SpecError(f"namespace {namespace!r:.80} is not a Kubernetes namespace name (DNS label)")
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise SpecError(f"name {name!r:.80} is not a Kubernetes object name (DNS subdomain)")


def _check_segments(text: str) -> None:
    """Refuse what could leave a scope: '..' / '.' segments, empty segments, a leading '/', control characters."""
    if text.startswith("/") or "//" in text:
        raise SpecError(f"{text!r:.120} has an empty path segment")
    if any(seg in (".", "..") for seg in text.split("/")):
        raise SpecError(f"{text!r:.120} has a '.' or '..' segment")
    if any(ord(c) < 0x21 or c == "\x7f" for c in text):
        raise SpecError(f"{text!r:.120} contains whitespace or control characters")


_NS, _NAME, _WILD = "{namespace}", "{name}", "*"


@dataclass(frozen=True)
class Template:
    """A scope template split into literals and tokens (`{namespace}`, `{name}`, and `*` where allowed)."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, *, wildcards: bool = False) -> Template:
        for brace in _PLACEHOLDER.findall(text):
            if brace not in PLACEHOLDERS:
                raise SpecError(f"{brace!r} is not a placeholder (use {{namespace}} or {{name}})")
        pieces = re.split(r"(\{namespace\}|\{name\}" + (r"|\*" if wildcards else "") + ")", text)
        parts = tuple(p for p in pieces if p)
        tokens = [p for p in parts if p in (_NS, _NAME, _WILD)]
        if tokens.count(_NS) > 1 or tokens.count(_NAME) > 1 or tokens.count(_WILD) > 1:
            raise SpecError("each placeholder (and '*') may appear at most once")
        for left, right in itertools.pairwise(parts):
            if left in (_NS, _NAME, _WILD) and right in (_NS, _NAME, _WILD):
                raise SpecError(f"{left} and {right} must be separated by a literal (else the scope is ambiguous)")
        return cls(parts=parts)

    def uses(self) -> tuple[bool, bool]:
        return _NS in self.parts, _NAME in self.parts

    def owners(self, text: str, *, tail: bool, fold: bool, wild_chars: str = "") -> set[tuple[str | None, str | None]]:
        """Every (namespace, name) under which *text* is in this template's scope (`tail`: a prefix scope).

        A placeholder value must itself be a valid namespace / object name; `*` and the tail match any run of
        characters (the tail may be empty only for exact paths: the caller decides). Used to prove a name belongs
        to exactly one tenant: e.g. ``{namespace}-`` makes ``team-a-x`` belong to both ``team`` and ``team-a``.
        """
        parts = tuple(p.lower() if fold and p not in (_NS, _NAME, _WILD) else p for p in self.parts)
        subject = text.lower() if fold else text
        found: set[tuple[str | None, str | None]] = set()
        _match(parts + ((_WILD,) if tail else ()), subject, 0, None, None, found, wild_chars)
        return found


_TOKEN_CHARS = {
    _NS: frozenset("abcdefghijklmnopqrstuvwxyz0123456789-"),
    _NAME: frozenset("abcdefghijklmnopqrstuvwxyz0123456789-."),
}


def _valid_value(token: str, value: str) -> bool:
    if token == _NS:
        return len(value) <= 63 and _DNS_LABEL.fullmatch(value) is not None
    return len(value) <= 253 and _DNS_SUBDOMAIN.fullmatch(value) is not None


def _match(
    parts: tuple[str, ...],
    s: str,
    pos: int,
    ns: str | None,
    nm: str | None,
    found: set[tuple[str | None, str | None]],
    wild_chars: str,
) -> None:
    if not parts:
        if pos == len(s):
            found.add((ns, nm))
        return
    head, rest = parts[0], parts[1:]
    if head not in (_NS, _NAME, _WILD):
        if s.startswith(head, pos):
            _match(rest, s, pos + len(head), ns, nm, found, wild_chars)
        return
    if head == _WILD and not rest and not wild_chars:
        found.add((ns, nm))  # a prefix scope's tail: anything goes
        return
    limit = {_NS: 63, _NAME: 253}.get(head, len(s))
    start = pos if head == _WILD else pos + 1
    for end in range(start, min(len(s), pos + limit) + 1):
        value = s[pos:end]
        if head == _WILD:
            if wild_chars and value and value[-1] not in wild_chars:
                break
            _match(rest, s, end, ns, nm, found, wild_chars)
        elif value[-1] not in _TOKEN_CHARS[head]:
            break  # no longer value can be valid either
        elif _valid_value(head, value):
            _match(rest, s, end, value if head == _NS else ns, value if head == _NAME else nm, found, wild_chars)


def expand(template: str, namespace: str, name: str) -> str:
    """Fill `{namespace}` and `{name}` (the VaultBundle's namespace and name) into an admin's scope template.

    Only those two placeholders exist; any other `{...}` or a stray brace is refused, as are values that are not a
    namespace / object name and results with '..', '.' or empty segments.
    """
    _check_values(namespace, name)
    Template.parse(template)
    result = template.replace(_NS, namespace).replace(_NAME, name)
    _check_segments(result)
    return result


def scoped_name(prefix: str, name: str) -> str:
    """The store-side name of *name* under an (expanded) *prefix*: the prefix, then the name, nothing in between."""
    if not name:
        raise SpecError("a secret name under a store prefix must not be empty")
    return prefix + name


# --- per-kind name rules ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _NameRule:
    chars: re.Pattern[str]
    max_length: int
    fold: bool
    describe: str


NAME_RULES: Mapping[str, _NameRule] = {
    AWS: _NameRule(re.compile(r"[A-Za-z0-9/_+=.@-]+"), 512, False, "letters, digits and /_+=.@-"),
    GCP: _NameRule(re.compile(r"[A-Za-z0-9_-]+"), 255, False, "letters, digits, '_' and '-'"),
    AZURE: _NameRule(re.compile(r"[A-Za-z0-9-]+"), 127, True, "letters, digits and '-'"),
}
_REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")
_ORGANIZATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}")
_REPO_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789._-"


@dataclass(frozen=True)
class BoundScope:
    """A store's scope for one VaultBundle (namespace + name): the checks a target makes before every write."""

    store: str
    kind: str
    namespace: str
    name: str
    templates: Scope

    def _deny(self, what: str) -> PolicyDeniedError:
        return PolicyDeniedError(
            f"{what} is outside the scope ClusterTargetStore {self.store} grants to this "
            "VaultBundle; pick a name inside it, or ask your cluster admin to change spec.scope"
        )

    def _owned(self, template: Template, owners: set[tuple[str | None, str | None]]) -> bool:
        uses_ns, uses_name = template.uses()
        ours = (self.namespace if uses_ns else None, self.name if uses_name else None)
        return owners == {ours}

    @property
    def prefix(self) -> str:
        """AWS / GCP / Azure: the expanded name prefix every remote name of this VaultBundle starts with."""
        return expand(self.templates.name_prefix, self.namespace, self.name)

    def scoped_name(self, name: str) -> str:
        """AWS / GCP / Azure: prefix + *name*, checked (`check_name`); use it for every create, adopt and delete."""
        full = scoped_name(self.prefix, name)
        self.check_name(full)
        return full

    def check_name(self, full_name: str) -> None:
        """AWS / GCP / Azure: *full_name* obeys the store's name rules and belongs to this VaultBundle alone."""
        rule = NAME_RULES[self.kind]
        if len(full_name) > rule.max_length or not rule.chars.fullmatch(full_name):
            raise TargetError(
                Reason.INVALID_SELECTION,
                f"secret name {full_name!r:.140} is not a valid {self.kind} name "
                f"(1..{rule.max_length} {rule.describe})",
            )
        if "/" in full_name:
            try:
                _check_segments(full_name)
            except SpecError:
                raise self._deny(f"secret name {full_name!r:.140}") from None
        template = Template.parse(self.templates.name_prefix)
        owners = template.owners(full_name, tail=True, fold=rule.fold)
        if not self._owned(template, owners) or full_name == self.prefix:
            raise self._deny(f"secret name {full_name!r:.140}")

    def check_path(self, mount: str, path: str) -> None:
        """Vault: *mount* is the store's mount and *path* is the prefix itself or below it, for this tenant only."""
        if mount.strip("/") != self.templates.mount.strip("/"):
            raise self._deny(f"Vault mount {mount!r:.80}")
        if not path or not _VAULT_PATH.fullmatch(path) or any(s in (".", "..") for s in path.split("/")):
            raise self._deny(f"Vault path {path!r:.140}")
        template = Template.parse(self.templates.path_prefix.strip("/"))
        owners = template.owners(path, tail=False, fold=False)
        below = Template(parts=(*template.parts, "/")).owners(path, tail=True, fold=False)
        if not self._owned(template, owners | below):
            raise self._deny(f"Vault path {path!r:.140}")

    def check_repository(self, repository: str) -> None:
        """GitHub: `owner/repo` matches one of the store's repository patterns, for this tenant only."""
        if not _REPOSITORY.fullmatch(repository):
            raise PolicyDeniedError(f"{repository!r:.150} is not an owner/repo name")
        for pattern in self.templates.repositories:
            template = Template.parse(pattern, wildcards=True)
            owners = template.owners(repository, tail=False, fold=True, wild_chars=_REPO_CHARS)
            if owners and self._owned(template, owners):
                return
        raise self._deny(f"repository {repository}")

    def check_organization(self, organization: str) -> None:
        """GitHub: organization secrets only for the store's organization (case-insensitive)."""
        allowed = self.templates.organization
        if not allowed or not _ORGANIZATION.fullmatch(organization):
            raise self._deny(f"organization {organization!r:.60}")
        if expand(allowed, self.namespace, self.name).lower() != organization.lower():
            raise self._deny(f"organization {organization}")


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


def store_ref(kind: str, body: Mapping[str, Any]) -> str | None:
    """The ClusterTargetStore a target names (`storeRef.name`), or None."""
    ref = body.get("storeRef")
    if ref is None:
        return None
    if not isinstance(ref, dict) or set(ref) != {"name"} or not isinstance(ref["name"], str):
        raise SpecError(f"{kind}.storeRef must be {{name: <ClusterTargetStore>}}")
    if len(ref["name"]) > 253 or not _DNS_SUBDOMAIN.fullmatch(ref["name"]):
        raise SpecError(f"{kind}.storeRef.name is not a valid object name")
    return ref["name"]


def has_tenant_credentials(kind: str, body: Mapping[str, Any]) -> bool:
    """True when the target brings its own credentials (a Secret or ServiceAccount in its namespace)."""
    if kind in (AWS, GCP):
        return body.get("credentialsSecretRef") is not None
    if kind == AZURE:
        return (body.get("auth") or {}).get("clientSecretRef") is not None
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
    _check_values(namespace, vb_name)
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
    """What the spec alone already fixes is checked at once: the Vault mount + path, the GitHub repository or
    organization. (Remote names of AWS / GCP / Azure come from the bundle: `scope.scoped_name` before each write.)"""
    if kind == VAULT and body.get("path"):
        scope.check_path(str(body.get("mount") or "secret"), str(body["path"]))
    elif kind == GITHUB and body.get("repository"):
        scope.check_repository(str(body["repository"]))
    elif kind == GITHUB and body.get("organization"):
        scope.check_organization(str(body["organization"]))


# --- AWS identity (M3) -----------------------------------------------------------------------------------------------
SESSION_TAG_KEYS = ("vaultbundle-namespace", "vaultbundle-name", "vaultbundle-uid")
_SESSION_SAFE = re.compile(r"[^\w+=,.@-]")


def role_session_name(namespace: str, name: str) -> str:
    """An injective RoleSessionName (≤ 64 chars of [\\w+=,.@-]): `vb-` + 26 base32 chars of SHA-256(namespace NUL
    name) + `-` + a readable, truncated `namespace.name`. The hash decides identity; the tail is for humans."""
    _check_values(namespace, name)
    digest = hashlib.sha256(namespace.encode() + b"\0" + name.encode()).digest()
    tag = base64.b32encode(digest).decode().rstrip("=").lower()[:26]
    readable = _SESSION_SAFE.sub("-", f"{namespace}.{name}")
    return f"vb-{tag}-{readable}"[:64]


def assume_role_inputs(namespace: str, name: str, uid: str, external_id: str = "") -> dict[str, Any]:
    """Keyword arguments for STS AssumeRole (besides RoleArn) identifying one VaultBundle.

    Session tags namespace / name / uid are transitive (`TransitiveTagKeys`): a chained role session inherits them
    and cannot override them, so IAM trust and ABAC policies can key on `aws:PrincipalTag/vaultbundle-namespace`.
    The ExternalId comes only from a ClusterTargetStore (pass `store.connection.external_id`).
    """
    _check_values(namespace, name)
    if not re.fullmatch(r"[0-9a-f-]{1,64}", uid):
        raise SpecError("uid must be a Kubernetes object UID")
    tags = [
        {"Key": SESSION_TAG_KEYS[0], "Value": namespace},
        {"Key": SESSION_TAG_KEYS[1], "Value": name},
        {"Key": SESSION_TAG_KEYS[2], "Value": uid},
    ]
    inputs: dict[str, Any] = {
        "RoleSessionName": role_session_name(namespace, name),
        "Tags": tags,
        "TransitiveTagKeys": list(SESSION_TAG_KEYS),
    }
    if external_id:
        inputs["ExternalId"] = external_id
    return inputs


# --- per-namespace digest keys (L1) ----------------------------------------------------------------------------------
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")
_HKDF_SALT = b"vaultbundle.io/namespace-key/v1"


def namespace_key(operator_key: bytes, namespace: str, purpose: str) -> bytes:
    """A 32-byte key for one namespace and one purpose (e.g. "digest"), HKDF-SHA256 from the operator's key.

    info = purpose NUL namespace (neither may contain NUL, so the encoding is injective). A digest under one
    namespace's key says nothing about another namespace's digests of the same value.
    """
    if len(operator_key) < 16:
        raise SpecError("the operator key must be at least 16 bytes")
    if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        raise SpecError(f"namespace {namespace!r:.80} is not a Kubernetes namespace name")
    if not _PURPOSE.fullmatch(purpose):
        raise SpecError(f"purpose {purpose!r:.80} must be a short lower-case label, e.g. 'digest'")
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=purpose.encode() + b"\0" + namespace.encode()
    )
    return hkdf.derive(operator_key)
