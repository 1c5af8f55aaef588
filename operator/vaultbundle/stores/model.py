"""The ClusterTargetStore object: typed, frozen, and parsed with an error path for every field.

`parse_store` turns the object as read from the apiserver into dataclasses and re-checks what the CRD's schema and
CEL rules check (the operator never relies on the apiserver having run them); `admits` is Kubernetes'
LabelSelector semantics, exactly. Pure; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vaultbundle.errors import SpecError, StoreInvalidError
from vaultbundle.stores.scope import (
    AWS,
    AZURE,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    GCP,
    GITHUB,
    KINDS,
    KMS,
    KMS_ALIAS_ARN,
    KMS_ALIAS_NAME,
    KMS_KEY_ARN,
    NAME_RULES,
    PLACEHOLDERS,
    VAULT,
    VAULT_PATH,
    Scope,
    Template,
    expand,
)

_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
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
        expected = _FORMATS.get(pattern, "in the format the CRD describes (kubectl explain clustertargetstore.spec)")
        raise StoreInvalidError(f"{_where(store, path)} must be {expected}")
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
    name = _str(ref.get("name"), store, f"{path}.name", required=True, pattern=DNS_SUBDOMAIN)
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
_IDENTITY_KEYS = {**_IDENTITY_KEYS, KMS: _IDENTITY_KEYS[AWS]}
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


_FORMATS: Mapping[re.Pattern[str], str] = {
    DNS_LABEL: "a namespace name (lower-case letters, digits and '-')",
    DNS_SUBDOMAIN: "an object name (DNS subdomain: lower-case letters, digits, '-' and '.')",
    VAULT_PATH: "a Vault path such as secret or auth/kubernetes (no empty, '.' or '..' segments)",
    _SECRET_KEY: "a Secret data key (letters, digits, '-', '_' and '.')",
    _LABEL_VALUE: "a label value (up to 63 letters, digits, '-', '_' and '.')",
    _GUID: "a client ID (GUID), e.g. 00000000-0000-0000-0000-000000000000",
    _REGION: "an AWS region, e.g. eu-west-1",
    _ROLE_ARN: "an IAM role ARN, e.g. arn:aws:iam::123456789012:role/vaultbundle",
    _EXTERNAL_ID: "2 to 1224 characters of letters, digits and +=,.@:/-",
    _GCP_PROJECT: "a GCP project ID (e.g. acme-prod) or number",
    _GRPC_ENDPOINT: "host:port, e.g. secretmanager.googleapis.com:443",
}


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
            mount=_str(k8s.get("mount"), store, f"{path}.kubernetes.mount", pattern=VAULT_PATH) or "kubernetes",
            role=_str(k8s.get("role"), store, f"{path}.kubernetes.role", required=True),
            service_account_name=_str(
                k8s.get("serviceAccountName"),
                store,
                f"{path}.kubernetes.serviceAccountName",
                required=True,
                pattern=DNS_SUBDOMAIN,
            ),
            audiences=_strs(k8s.get("audiences"), store, f"{path}.kubernetes.audiences"),
        )
    app = _obj(body["appRole"], store, f"{path}.appRole")
    return VaultAuth(
        "appRole",
        mount=_str(app.get("mount"), store, f"{path}.appRole.mount", pattern=VAULT_PATH) or "approle",
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
        namespace=_str(body.get("namespace"), store, f"{path}.namespace", pattern=VAULT_PATH),
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
    KMS: _aws,  # the same connection and identity as awsSecretsManager (region, endpoints, role, externalId)
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
    if (prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.fullmatch(prefix))) or not (
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
        if len(name) > 63 or not DNS_LABEL.fullmatch(name):
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
    GITHUB: ("repositories", "organization", "environments"),
    KMS: ("keys",),
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
        mount=_str(body.get("mount"), store, "spec.scope.mount", pattern=VAULT_PATH),
        path_prefix=_str(body.get("pathPrefix"), store, "spec.scope.pathPrefix"),
        repositories=_strs(body.get("repositories"), store, "spec.scope.repositories"),
        organization=_str(body.get("organization"), store, "spec.scope.organization"),
        environments=_strs(body.get("environments"), store, "spec.scope.environments"),
        keys=_strs(body.get("keys"), store, "spec.scope.keys"),
    )
    for path, template in _templates(scope):
        try:
            Template.parse(template, wildcards=path.startswith(("repositories", "environments")))
        except SpecError as exc:
            raise StoreInvalidError(f"{_where(store, 'spec.scope.' + path)}: {exc}") from None
    _require_scope(scope, store, kind)
    _check_literals(scope, store, kind)
    if scope.name_prefix and Template.parse(scope.name_prefix).parts[-1] in PLACEHOLDERS:
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
        path, template, rule = "spec.scope.pathPrefix", scope.path_prefix.strip("/"), VAULT_PATH
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
    found += [(f"environments[{i}]", e) for i, e in enumerate(scope.environments)]
    found += [(f"keys[{i}]", k) for i, k in enumerate(scope.keys)]
    return [(p, t) for p, t in found if t]


def _require_scope(scope: Scope, store: str, kind: str) -> None:
    """Every store has a scope: an admin who wants a whole account for one namespace still writes a prefix."""
    if kind in (AWS, GCP, AZURE) and not scope.name_prefix:
        raise StoreInvalidError(f"{_where(store, 'spec.scope.namePrefix')} is required, e.g. tenants/{{namespace}}/")
    if kind == VAULT and not (scope.mount and scope.path_prefix):
        raise StoreInvalidError(f"{_where(store, 'spec.scope')}: mount and pathPrefix are required for {kind}")
    if kind == GITHUB and not (scope.repositories or scope.organization):
        raise StoreInvalidError(f"{_where(store, 'spec.scope')}: set repositories or organization for {kind}")
    if kind == KMS and not scope.keys:
        raise StoreInvalidError(
            f"{_where(store, 'spec.scope.keys')} is required: the KMS key and alias ARNs tenants may decrypt with"
        )
    if scope.environments and not scope.repositories:
        raise StoreInvalidError(f"{_where(store, 'spec.scope.environments')} needs repositories (their environments)")


def _check_kms_keys(scope: Scope, region: str, store: str) -> None:
    """awsKms: every entry is a key ARN (literal: key IDs are random, a placeholder there means nothing) or an alias
    ARN (placeholders only in the alias name, never an AWS-managed `alias/aws/...`), in the store's region."""
    for i, entry in enumerate(scope.keys):
        path = f"spec.scope.keys[{i}]"
        try:
            sample = expand(entry, "ns", "name")
        except SpecError as exc:
            raise StoreInvalidError(f"{_where(store, path)}: {exc}") from None
        key, alias = KMS_KEY_ARN.fullmatch(entry), KMS_ALIAS_ARN.fullmatch(sample)
        if key is None and (
            alias is None
            or not KMS_ALIAS_NAME.fullmatch(alias["alias"])
            or alias["alias"].startswith("aws/")
            or any(p in entry.partition(":alias/")[0] for p in PLACEHOLDERS)
        ):
            raise StoreInvalidError(
                f"{_where(store, path)} must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>) or an "
                "alias ARN (...:alias/<name>, placeholders allowed in the name, not alias/aws/...)"
            )
        found = key or alias
        if found is not None and found["region"] != region:
            raise StoreInvalidError(f"{_where(store, path)} is not in the store's region {region}")


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
    if kind == KMS and allow.get("adopt") is True:
        raise StoreInvalidError(f"{_where(name, 'spec.allow.adopt')} does not apply to {KMS}: it only decrypts")
    connection = _CONNECTIONS[kind](_obj(spec[kind], name, f"spec.{kind}", required=True), name, f"spec.{kind}")
    scope = _scope(spec.get("scope"), name, kind)
    if isinstance(connection, AwsConnection) and kind == KMS:
        _check_kms_keys(scope, connection.region, name)
    return ClusterTargetStore(
        name=name,
        kind=kind,
        connection=connection,
        conditions=_conditions(spec.get("conditions"), name),
        scope=scope,
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
