"""Azure Key Vault target: one secret per selected key, through azure-keyvault-secrets and azure-identity.

The Azure SDKs are the `azure` install extra and are imported lazily (in `connect` and the functions it calls).
Narrow SDK surface (`SecretClient`): get_secret, get_deleted_secret, set_secret, update_secret_properties,
begin_recover_deleted_secret, begin_delete_secret, list_properties_of_secrets.

* Names: the selection's renames, then `naming`; the result must be 1..127 letters, digits and '-'. Key Vault
  names are case-insensitive, so two names differing only in case are a collision. All problems are reported
  before anything is written.
* Values are strings. UTF-8 values are stored as they are, with `contentType` (default text/plain); any other
  value (a binary file) is stored base64-encoded with content type application/octet-stream and the tag
  `file-encoding=base64` (what `az keyvault secret set --encoding base64` writes).
* Ownership: tags `managed-by=vaultbundle` and `vaultbundle-owner=<namespace>/<name>` on every version we write.
  A secret without our owner tag is never written or deleted unless `adopt: true`; another VaultBundle's never.
* Idempotence: value, content type and our tags are compared with the current version; equal -> no write;
  only tags differ -> the current version's properties are updated (no new version).
* Prune: secrets with our owner tag that this target wrote (status `managedSecrets`, lower-case: Key Vault
  names are case-insensitive) and that left the selection are deleted (soft delete: recoverable for the
  vault's retention period; never purged); two targets of one VaultBundle never prune each other. A
  soft-deleted secret of ours that comes back is recovered, then updated.
* Credentials: a service principal's client secret in a Secret of the namespace (`auth.clientSecretRef`); or
  workload identity federation (`auth.serviceAccountRef` + `tenantID` + `clientID`): a TokenRequest mints a
  short-lived token of the tenant's own ServiceAccount (audience `api://AzureADTokenExchange`), which
  azure-identity's `ClientAssertionCredential` presents to Microsoft Entra ID as the client assertion, so the
  app's federated identity credentials (issuer + subject `system:serviceaccount:<ns>:<name>`) decide per
  namespace; or, with `storeRef`, the ClusterTargetStore's identity. Never the operator's ambient identity for
  a tenant.
* Errors become TargetError with a reason (AuthFailed, Forbidden, Throttled, Unavailable, ...); the SDK's
  message text is never copied.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .. import stores
from ..errors import Reason, SpecError, TargetError
from ..fields import SecretRef, Selection, boolean, checked_tags, obj, secret_key, secret_object, secret_ref, string
from ..selection import SelectionError, select
from ..vault import Vault
from . import tokens
from .base import Plan, StoreKind, TargetContext, WrittenNames
from .checks import is_loopback
from .credentials import Credentials, credentials_for
from .errormap import Messages, first_match, reason_for_status, translated
from .naming import NameRule, Naming, parse_naming, remote_names
from .ownership import ADOPT_KEY, MANAGED_BY_KEY, MANAGED_BY_VALUE, adopt_token, claim_tagged
from .threads import ThreadedTarget, in_thread

OWNER_TAG = "vaultbundle-owner"
ENCODING_TAG = "file-encoding"
RESERVED_TAGS = (MANAGED_BY_KEY, OWNER_TAG, ENCODING_TAG)
MAX_USER_TAGS = 12  # Key Vault allows 15 tags per secret; the operator uses up to 3
MAX_VALUE_BYTES = 25 * 1024  # Key Vault's limit on a secret value
BINARY_CONTENT_TYPE = "application/octet-stream"
_VAULT_URL = re.compile(r"https://[A-Za-z0-9.-]+(:\d{1,5})?/?")
_API_VERSION = re.compile(r"\d{1,2}\.\d{1,2}(-preview)?|\d{4}-\d{2}-\d{2}(-preview)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----")
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 - the audience Entra requires, not a secret

NAME_RULE = NameRule(
    store="Azure Key Vault",
    pattern=re.compile(r"[0-9A-Za-z-]+"),
    max_length=127,
    description="only letters, digits and '-' are allowed (naming.underscoresToDashes helps)",
)


@dataclass(frozen=True)
class ClientSecretRef:
    """A Secret in the VaultBundle's namespace holding a service principal's tenant, client id and secret."""

    name: str
    tenant_id_key: str = "tenant-id"
    client_id_key: str = "client-id"
    client_secret_key: str = "client-secret"  # noqa: S105 - a key name, not a secret


@dataclass(frozen=True)
class WorkloadIdentity:
    """`auth.serviceAccountRef`: Entra workload identity federation with a ServiceAccount of the namespace."""

    service_account: str
    tenant_id: str
    client_id: str


@dataclass(frozen=True)
class AzureKeyVaultSpec:
    vault_url: str
    content_type: str = "text/plain"
    tags: Mapping[str, str] = field(default_factory=dict)
    client_secret: ClientSecretRef | None = None
    workload_identity: WorkloadIdentity | None = None
    managed_identity_client_id: str = ""
    authority_host: str = ""
    api_version: str = ""
    verify_challenge_resource: bool = True  # not a spec field: False only for a loopback vault on a test bed
    ca_bundle: SecretRef | None = None
    naming: Naming = field(default_factory=Naming)
    adopt: bool = False
    prune: bool = False


def _tag_problem(key: str, value: str) -> str | None:
    if key.lower() in RESERVED_TAGS:
        return f"{key!r} is reserved (the operator sets {', '.join(RESERVED_TAGS)})"
    if not 1 <= len(key) <= 512:
        return f"key {key!r} must be 1..512 characters"
    if len(value) > 256:
        return f"value of {key!r} must be at most 256 characters"
    return None


def _tags(raw: Any, path: str) -> dict[str, str]:
    limit = "Key Vault allows 15 and the operator uses up to 3"
    return checked_tags(raw, path, _tag_problem, max_tags=MAX_USER_TAGS, limit_note=limit)


def _workload_identity(auth: Mapping[str, Any], path: str) -> WorkloadIdentity | None:
    if auth.get("serviceAccountRef") is None:
        for name in ("tenantID", "clientID"):
            if auth.get(name) not in (None, ""):
                raise SpecError(f"{path}.{name} is only used with serviceAccountRef (workload identity federation)")
        return None
    ids = {}
    for name in ("tenantID", "clientID"):
        ids[name] = string(auth.get(name), f"{path}.{name}", required=True)
        if not _UUID.fullmatch(ids[name]):
            raise SpecError(f"{path}.{name} must be a GUID, e.g. 00000000-0000-0000-0000-000000000000")
    return WorkloadIdentity(
        service_account=tokens.service_account_ref(auth["serviceAccountRef"], f"{path}.serviceAccountRef"),
        tenant_id=ids["tenantID"],
        client_id=ids["clientID"],
    )


class AzureKeyVaultKind(StoreKind):
    name = "azureKeyVault"
    extra = "azure"
    sdk = ("azure.keyvault.secrets", "azure.identity")

    def parse(self, raw: Mapping[str, Any], path: str) -> AzureKeyVaultSpec:
        with_store = raw.get("storeRef") is not None  # then the vault comes from the ClusterTargetStore
        vault_url = string(raw.get("vaultURL"), f"{path}.vaultURL", required=not with_store)
        if vault_url and not _VAULT_URL.fullmatch(vault_url):
            raise SpecError(f"{path}.vaultURL must be an https URL of a vault, like https://my-vault.vault.azure.net")
        auth = obj(raw.get("auth"), f"{path}.auth")
        client_secret: ClientSecretRef | None = None
        if auth.get("clientSecretRef") is not None:
            where = f"{path}.auth.clientSecretRef"
            ref, name = secret_object(auth.get("clientSecretRef"), where)
            client_secret = ClientSecretRef(
                name=name,
                tenant_id_key=secret_key(ref.get("tenantIdKey"), f"{where}.tenantIdKey", default="tenant-id"),
                client_id_key=secret_key(ref.get("clientIdKey"), f"{where}.clientIdKey", default="client-id"),
                client_secret_key=secret_key(
                    ref.get("clientSecretKey"), f"{where}.clientSecretKey", default="client-secret"
                ),
            )
        workload_identity = _workload_identity(auth, f"{path}.auth")
        if workload_identity is not None and client_secret is not None:
            raise SpecError(f"{path}.auth: clientSecretRef and serviceAccountRef exclude each other")
        managed_identity = string(auth.get("managedIdentityClientID"), f"{path}.auth.managedIdentityClientID")
        if managed_identity and not _UUID.fullmatch(managed_identity):
            raise SpecError(f"{path}.auth.managedIdentityClientID must be a client id (a UUID)")
        if managed_identity and (client_secret or workload_identity):
            raise SpecError(f"{path}.auth: managedIdentityClientID excludes clientSecretRef and serviceAccountRef")
        authority = string(auth.get("authorityHost"), f"{path}.auth.authorityHost")
        if authority and not _VAULT_URL.fullmatch(authority):
            raise SpecError(f"{path}.auth.authorityHost must be an https URL, like https://login.microsoftonline.us")
        api_version = string(raw.get("apiVersion"), f"{path}.apiVersion")
        if api_version and not _API_VERSION.fullmatch(api_version):
            raise SpecError(f"{path}.apiVersion must look like 7.6 or 2025-07-01")
        content_type = string(raw.get("contentType"), f"{path}.contentType", default="text/plain")
        if len(content_type) > 255:
            raise SpecError(f"{path}.contentType must be at most 255 characters")
        if "verifyChallengeResource" in raw:
            raise SpecError(
                f"{path}.verifyChallengeResource was removed: the vault's authentication challenge is always "
                "verified against vaultURL's domain and the token scope is pinned to Key Vault's; delete the field"
            )
        ca_bundle: SecretRef | None = None
        if raw.get("caBundleSecretRef") is not None:
            ca_bundle = secret_ref(raw.get("caBundleSecretRef"), f"{path}.caBundleSecretRef", "ca.crt")
        return AzureKeyVaultSpec(
            vault_url=vault_url.rstrip("/"),
            content_type=content_type,
            tags=_tags(raw.get("tags"), f"{path}.tags"),
            client_secret=client_secret,
            workload_identity=workload_identity,
            managed_identity_client_id=managed_identity,
            authority_host=authority,
            api_version=api_version,
            ca_bundle=ca_bundle,
            naming=parse_naming(raw.get("naming"), f"{path}.naming"),
            adopt=boolean(raw.get("adopt"), f"{path}.adopt", False),
            prune=boolean(raw.get("prune"), f"{path}.prune", False),
        )

    def desired(self, vault: Vault, selection: Selection, spec: AzureKeyVaultSpec) -> dict[str, bytes]:
        """Secret name -> value; names checked (incl. case-insensitive collisions) and sizes bounded."""
        result = remote_names(select(vault, selection), spec.naming, NAME_RULE)
        by_folded: dict[str, list[str]] = {}
        for name in result:
            by_folded.setdefault(name.lower(), []).append(name)
        clashes = sorted(" and ".join(repr(n) for n in sorted(names)) for names in by_folded.values() if len(names) > 1)
        if clashes:
            raise SelectionError(
                "invalid Azure Key Vault secret names: Key Vault names are case-insensitive, so these collide: "
                + "; ".join(clashes)
                + " (adjust keys.rename or naming.case)"
            )
        too_big = sorted(name for name, value in result.items() if len(_stored(value, spec)[0]) > MAX_VALUE_BYTES)
        if too_big:
            raise SelectionError(f"values larger than Key Vault's 25 KiB limit (after base64): {', '.join(too_big)}")
        return result

    async def connect(self, spec: AzureKeyVaultSpec, context: TargetContext) -> AzureKeyVaultTarget:
        credentials = credentials_for(context, self.name, spec.vault_url)
        grant = context.grant
        if grant is not None and grant.store is not None:
            spec, principal = await _from_store(spec, grant, credentials)
            return AzureKeyVaultTarget(await in_thread(_client, spec, principal, ""), spec, context)
        if credentials.egress is not None:  # the tenant's Entra authority receives its credentials too
            credentials.egress.expect(spec.authority_host)
        secret: tuple[str, str, str] | None = None
        assertion = ""
        if spec.workload_identity is not None:
            assertion = await _assertion(spec.workload_identity, context, credentials)
        elif spec.client_secret is None:
            credentials.ambient()  # environment, workload identity or managed identity
        else:
            ref = spec.client_secret
            tenant, client_id, client_secret = await credentials.secret_keys(
                ref.name, [ref.tenant_id_key, ref.client_id_key, ref.client_secret_key]
            )
            secret = (tenant, client_id, client_secret)
        ca_file = ""
        if spec.ca_bundle is not None:  # public certificates, but a tenant Secret all the same
            ca_file = _ca_file(await credentials.secret(spec.ca_bundle), spec.ca_bundle)
        if context.allow_local and is_loopback(urlsplit(spec.vault_url).hostname):
            # test beds only (--egress-allow-local): a loopback fake cannot be on *.vault.azure.net; the token
            # scope stays pinned to Key Vault's, so no other token can leave
            spec = replace(spec, verify_challenge_resource=False)
        if assertion:
            client = await in_thread(_federated_client, spec, assertion, ca_file)
        else:
            client = await in_thread(_client, spec, secret, ca_file)
        return AzureKeyVaultTarget(client, spec, context, allow_adopt=credentials.adopt_allowed())


def _stored(value: bytes, spec: AzureKeyVaultSpec) -> tuple[str, str, dict[str, str]]:
    """A value as Key Vault holds it: (string value, content type, extra tags)."""
    try:
        return value.decode("utf-8"), spec.content_type, {}
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), BINARY_CONTENT_TYPE, {ENCODING_TAG: "base64"}


# --- credentials and clients ---------------------------------------------------------------------------------


async def _from_store(
    spec: AzureKeyVaultSpec, grant: stores.Grant, credentials: Credentials
) -> tuple[AzureKeyVaultSpec, tuple[str, str, str] | None]:
    """The spec with the ClusterTargetStore's vault, authority host and identity (the tenant set none of them:
    `authorize` refused that), and the store's service principal when its identity is a Secret."""
    connection = grant.connection
    assert isinstance(connection, stores.AzureConnection)  # authorize's contract for Azure
    identity = connection.identity
    spec = dataclasses.replace(
        spec,
        vault_url=connection.vault_url,
        authority_host=connection.authority_host,
        managed_identity_client_id=identity.managed_identity_client_id,
        client_secret=None,
        ca_bundle=None,
        verify_challenge_resource=True,
    )
    if identity.secret_ref is None:
        credentials.ambient()  # the store lends the operator's workload / managed identity
        return spec, None
    ref = identity.secret_ref
    principal = (
        await credentials.store_secret(ref, "tenantIdKey"),
        await credentials.store_secret(ref, "clientIdKey"),
        await credentials.store_secret(ref, "clientSecretKey"),
    )
    return spec, principal


async def _assertion(identity: WorkloadIdentity, context: TargetContext, credentials: Credentials) -> str:
    """A fresh token of the tenant's own ServiceAccount for Entra's token exchange audience; the ServiceAccount
    must opt in (`vaultbundle.io/token-audiences: api://AzureADTokenExchange`)."""
    credentials.service_account(identity.service_account)
    return await tokens.service_account_token(
        context,
        identity.service_account,
        [TOKEN_EXCHANGE_AUDIENCE],
        "sign in to Microsoft Entra ID (workload identity federation)",
    )


def ambient_credential(spec: AzureKeyVaultSpec) -> Any:
    """The credential used when the spec names no clientSecretRef: DefaultAzureCredential without developer
    tools (environment, workload identity, managed identity). Test seam: tests replace this function."""
    from azure.identity import DefaultAzureCredential

    options: dict[str, Any] = {}
    if spec.managed_identity_client_id:
        options["managed_identity_client_id"] = spec.managed_identity_client_id
        options["workload_identity_client_id"] = spec.managed_identity_client_id
    if spec.authority_host:
        options["authority"] = spec.authority_host
    return DefaultAzureCredential(
        exclude_cli_credential=True,
        exclude_developer_cli_credential=True,
        exclude_powershell_credential=True,
        exclude_visual_studio_code_credential=True,
        exclude_shared_token_cache_credential=True,
        exclude_interactive_browser_credential=True,
        **options,
    )


_CA_LOCK = threading.Lock()
_CA_DIR: str | None = None


def _ca_file(pem: str, ref: SecretRef) -> str:
    """requests wants a CA file path: the PEM (public, not secret) goes to a private temp dir, named by digest."""
    global _CA_DIR  # noqa: PLW0603 - one directory per process
    if not _PEM.search(pem):
        raise TargetError(
            Reason.SECRET_INVALID, f"caBundleSecretRef: Secret {ref.name!r} key {ref.key!r} holds no PEM certificate"
        )
    with _CA_LOCK:
        if _CA_DIR is None:
            _CA_DIR = tempfile.mkdtemp(prefix="vaultbundle-ca-")
        path = os.path.join(_CA_DIR, hashlib.sha256(pem.encode()).hexdigest() + ".pem")
        if not os.path.exists(path):
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(pem + "\n")
        return path


# Clients (and their credentials, which cache tokens) are reused across syncs, keyed by what they are built from;
# a client secret enters the key only as a digest.
_CLIENT_LOCK = threading.Lock()
_CLIENTS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_MAX_CLIENTS = 32


def _client(spec: AzureKeyVaultSpec, secret: tuple[str, str, str] | None, ca_file: str) -> Any:

    identity: tuple[Any, ...]
    if secret is not None:
        identity = ("secret", secret[0], secret[1], hashlib.sha256(secret[2].encode()).hexdigest())
    else:
        identity = ("ambient", ambient_credential, spec.managed_identity_client_id)
    key = (
        spec.vault_url,
        spec.api_version,
        spec.verify_challenge_resource,
        ca_file,
        spec.authority_host,
        identity,
    )
    with _CLIENT_LOCK:
        cached = _CLIENTS.get(key)
        if cached is not None:
            _CLIENTS.move_to_end(key)
            return cached
    transport: dict[str, Any] = {"connection_verify": ca_file} if ca_file else {}
    if secret is not None:
        from azure.identity import ClientSecretCredential

        options: dict[str, Any] = {"authority": spec.authority_host} if spec.authority_host else {}
        credential = ClientSecretCredential(secret[0], secret[1], secret[2], retry_total=2, **options)
    else:
        credential = ambient_credential(spec)
    client = _secret_client(spec, credential, transport)
    with _CLIENT_LOCK:
        _CLIENTS[key] = client
        while len(_CLIENTS) > _MAX_CLIENTS:
            _CLIENTS.popitem(last=False)[1].close()
    return client


# Key Vault's token scope per cloud, by the vault host's DNS suffix (public cloud otherwise, e.g. a test bed)
_PUBLIC_SCOPE = "https://vault.azure.net/.default"
_KEY_VAULT_SCOPES = {
    ".vault.azure.net": "https://vault.azure.net/.default",
    ".vault.azure.cn": "https://vault.azure.cn/.default",
    ".vault.usgovcloudapi.net": "https://vault.usgovcloudapi.net/.default",
    ".vault.microsoftazure.de": "https://vault.microsoftazure.de/.default",
}


def key_vault_scope(vault_url: str) -> str:
    host = (urlsplit(vault_url).hostname or "").lower()
    return next((scope for suffix, scope in _KEY_VAULT_SCOPES.items() if host.endswith(suffix)), _PUBLIC_SCOPE)


class PinnedScope:
    """A credential that hands out tokens only for one scope (Key Vault's), whatever a server's authentication
    challenge asks for: a hostile `vaultURL` can at most get a Key Vault token, never an ARM or Graph one
    (security review C2). A refusal is a ValueError the error map reports as InvalidVaultURL."""

    def __init__(self, inner: Any, scope: str) -> None:
        self._inner, self.scope = inner, scope

    def _check(self, scopes: tuple[str, ...]) -> None:
        if set(scopes) != {self.scope}:
            raise ValueError(
                "the vault's challenge resource asks for a token scope other than Key Vault's; no token was requested"
            )

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self._check(scopes)
        return self._inner.get_token(*scopes, **kwargs)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        self._check(scopes)
        if hasattr(self._inner, "get_token_info"):
            return self._inner.get_token_info(*scopes, options=options)
        from azure.core.credentials import AccessTokenInfo

        token = self._inner.get_token(*scopes)
        return AccessTokenInfo(token.token, token.expires_on)

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> PinnedScope:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _federated_client(spec: AzureKeyVaultSpec, assertion: str, ca_file: str) -> Any:
    """A client whose credential presents *assertion* (this sync's ServiceAccount token) to Entra ID. Not cached:
    the assertion is minted per sync, so every sync signs in afresh as the namespace's ServiceAccount. The token
    endpoint is `authorityHost` (a tenant URL, under the egress policy) and trusts caBundleSecretRef's CA."""
    from azure.identity import ClientAssertionCredential

    identity = spec.workload_identity
    assert identity is not None
    transport: dict[str, Any] = {"connection_verify": ca_file} if ca_file else {}
    options: dict[str, Any] = {"authority": spec.authority_host} if spec.authority_host else {}
    credential = ClientAssertionCredential(
        identity.tenant_id, identity.client_id, lambda: assertion, retry_total=2, **options, **transport
    )
    return _secret_client(spec, credential, transport)


def _secret_client(spec: AzureKeyVaultSpec, credential: Any, transport: Mapping[str, Any]) -> Any:
    """A SecretClient for the spec's vault whose credential hands out Key Vault tokens only (`PinnedScope`)."""
    from azure.keyvault.secrets import SecretClient

    extra: dict[str, Any] = {"api_version": spec.api_version} if spec.api_version else {}
    return SecretClient(
        spec.vault_url,
        PinnedScope(credential, key_vault_scope(spec.vault_url)),
        verify_challenge_resource=spec.verify_challenge_resource,
        retry_total=3,
        **transport,
        **extra,
    )


# --- errors --------------------------------------------------------------------------------------------------

_MESSAGES = Messages(
    {
        Reason.AUTH_FAILED: "{what}: authentication failed (no token, or the vault refused it)",
        Reason.NOT_FOUND: "{what}: not found",
        Reason.CONFLICT: "{what}: conflict (HTTP 409), e.g. the name is held by a deleted secret",
        Reason.SECRET_DISABLED: "{what}: the secret is disabled; enable it or leave it out",
        Reason.FORBIDDEN: "{what}: access denied (HTTP 403); check the vault's access policy/RBAC",
        Reason.THROTTLED: "{what}: throttled by Key Vault (HTTP 429)",
        Reason.UNAVAILABLE: "{what}: Key Vault is unavailable (HTTP {status})",
        Reason.REJECTED: "{what}: Key Vault rejected the request (HTTP {status})",
    }
)


def _disabled(exc: Exception) -> bool:
    """A 403 for a disabled secret: told apart only by the error's inner code (its text is not kept)."""
    error = getattr(exc, "error", None)
    inner = str(getattr(error, "innererror", None) or "") + str(getattr(error, "message", "") or "")
    return "disabled" in inner.lower()


def _target_error(exc: Exception, operation: str, name: str | None) -> TargetError:
    """An SDK error as a TargetError: reason from the exception type and HTTP status; never the SDK's text."""
    from azure.core import exceptions as azure_errors
    from azure.identity import CredentialUnavailableError

    what = f"{operation} {name!r}" if name else operation
    if isinstance(exc, CredentialUnavailableError):
        return TargetError(
            Reason.AUTH_FAILED,
            f"{what}: no ambient Azure identity (workload identity, managed identity or AZURE_* environment); "
            "set auth.clientSecretRef",
        )
    rules = [
        (azure_errors.ClientAuthenticationError, Reason.AUTH_FAILED),
        (azure_errors.ResourceNotFoundError, Reason.NOT_FOUND),
        (azure_errors.ResourceExistsError, Reason.CONFLICT),
    ]
    reason = first_match(exc, rules)
    if reason is None and isinstance(exc, azure_errors.HttpResponseError):
        status = exc.status_code or 0
        reason = reason_for_status(status)
        if reason is Reason.FORBIDDEN and _disabled(exc):
            reason = Reason.SECRET_DISABLED
        return _MESSAGES.error(reason, what, status=status)
    if reason is not None:
        return _MESSAGES.error(reason, what, status=getattr(exc, "status_code", None) or "")
    if isinstance(exc, azure_errors.ServiceRequestError | azure_errors.ServiceResponseError):
        tls = "SSL" in type(getattr(exc, "inner_exception", None)).__name__ or "CERTIFICATE" in str(exc)
        return TargetError(
            Reason.UNAVAILABLE,
            f"{what}: " + ("TLS verification of the vault failed" if tls else "cannot reach the vault"),
        )
    if isinstance(exc, ValueError) and "challenge resource" in str(exc):
        return TargetError(
            Reason.INVALID_VAULT_URL,
            f"{what}: the vault's authentication challenge does not match vaultURL's domain (refused, so no token "
            "leaves for a foreign host); check vaultURL",
        )
    return TargetError(Reason.UNAVAILABLE, f"{what}: Azure SDK error ({type(exc).__name__})")


_T = TypeVar("_T")


def _call(operation: str, name: str | None, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    from azure.core.exceptions import AzureError

    with translated((AzureError, ValueError), lambda exc: _target_error(exc, operation, name)):
        return function(*args, **kwargs)


# --- the target ----------------------------------------------------------------------------------------------


@dataclass
class StoredSecret:
    """What the store holds under one name (the current version, or a soft-deleted secret's tags)."""

    name: str
    tags: dict[str, str]
    deleted: bool
    value: str | None = None
    content_type: str | None = None
    version: str | None = None


@dataclass
class StoreState:
    """What plan() read, for apply."""

    remotes: dict[str, StoredSecret] = field(default_factory=dict)
    restore: list[str] = field(default_factory=list)
    retag: list[str] = field(default_factory=list)


class AzureKeyVaultTarget(ThreadedTarget[StoreState]):
    def __init__(
        self, client: Any, spec: AzureKeyVaultSpec, context: TargetContext, *, allow_adopt: bool = False
    ) -> None:
        self.client, self.spec, self.owner = client, spec, context.owner
        self.allow_adopt = allow_adopt
        self.written = WrittenNames(context.previous, spec.vault_url)  # lower-case names

    def describe(self) -> str:
        return f"Azure Key Vault {self.spec.vault_url}"

    def status_extra(self) -> dict[str, Any]:
        return self.written.status()

    def _tags(self, value: bytes, current: Mapping[str, str]) -> dict[str, str]:
        """Tags for a version holding *value*: foreign tags kept, ours set, file-encoding only for base64."""
        extra = _stored(value, self.spec)[2]
        kept = {k: v for k, v in current.items() if k != ENCODING_TAG}
        return {**kept, **self.spec.tags, MANAGED_BY_KEY: MANAGED_BY_VALUE, OWNER_TAG: self.owner.ref, **extra}

    def _read(self, name: str) -> StoredSecret | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            found = self.client.get_secret(name)
        except ResourceNotFoundError:
            try:
                deleted = self.client.get_deleted_secret(name)
            except ResourceNotFoundError:
                return None
            except (AzureError, ValueError) as exc:
                raise _target_error(exc, "GetDeletedSecret", name) from None
            return StoredSecret(name, dict(deleted.properties.tags or {}), deleted=True)
        except (AzureError, ValueError) as exc:
            raise _target_error(exc, "GetSecret", name) from None
        tags = dict(found.properties.tags or {})
        properties = found.properties
        ours = tags.get(OWNER_TAG) == self.owner.ref
        return StoredSecret(
            name,
            tags,
            deleted=False,
            value=found.value if ours else None,  # GetSecret returns it with the tags: never kept nor compared
            content_type=properties.content_type,
            version=properties.version,
        )

    def _differs(self, remote: StoredSecret, value: bytes) -> tuple[bool, bool]:
        """(value or content type differ, tags differ)."""
        text, content_type, _ = _stored(value, self.spec)
        data = remote.value != text or (remote.content_type or "") != content_type
        return data, self._tags(value, remote.tags) != remote.tags

    def _owned(self) -> list[str]:
        """Active secrets carrying our owner tag (and naming.prefix, if any): the prune candidates."""
        scope = self.spec.naming.apply("").lower()
        return [
            item.name
            for item in _call("ListSecrets", None, lambda: list(self.client.list_properties_of_secrets()))
            if (item.tags or {}).get(OWNER_TAG) == self.owner.ref and item.name.lower().startswith(scope)
        ]

    def _plan(self, desired: Mapping[str, bytes]) -> Plan[StoreState]:
        plan, state = Plan[StoreState](), StoreState()
        claimed = claim_tagged(
            self._read,
            desired,
            owner_tag=OWNER_TAG,
            me=self.owner.ref,
            adopt=self.spec.adopt,
            where=self.describe(),
            deleted_note="soft-deleted",
            adopt_tag=ADOPT_KEY,
            token=adopt_token(self.owner),
            allow_adopt=self.allow_adopt,
        )
        plan.create, state.remotes = claimed.missing, claimed.held
        for name, remote in state.remotes.items():
            if remote.tags.get(OWNER_TAG):
                self.written.add(name.lower())
            if remote.deleted:
                plan.create.append(name)
                state.restore.append(name)
            else:
                data, tags = self._differs(remote, desired[name])
                if data:
                    plan.update.append(name)
                else:
                    plan.unchanged += 1
                    if tags:
                        state.retag.append(name)
        plan.create.sort()
        if self.spec.prune:
            ours = {name.lower(): name for name in self._owned()}
            wanted = {name.lower() for name in desired}
            plan.delete = [ours[name] for name in self.written.prune_candidates(set(ours), wanted)]
        plan.metadata = bool(state.retag)
        plan.state = state
        return plan

    def _set(self, name: str, value: bytes, current_tags: Mapping[str, str]) -> None:
        text, content_type, _ = _stored(value, self.spec)
        tags = self._tags(value, current_tags)
        _call("SetSecret", name, self.client.set_secret, name, text, content_type=content_type, tags=tags)
        self.written.add(name.lower())

    def _apply(self, plan: Plan[StoreState], desired: Mapping[str, bytes]) -> None:
        state = plan.state or StoreState()
        for name in plan.create:
            if name in state.restore:
                _call("RecoverDeletedSecret", name, lambda n=name: self.client.begin_recover_deleted_secret(n).wait(60))
                remote = self._read(name)
                if remote is None or remote.deleted:
                    raise TargetError(Reason.UNAVAILABLE, f"RecoverDeletedSecret {name!r}: not recovered yet; retrying")
                data, tags = self._differs(remote, desired[name])
                if data:
                    self._set(name, desired[name], remote.tags)
                elif tags:
                    self._retag(remote, desired[name])
                continue
            self._set(name, desired[name], {})
        for name in plan.update:
            self._set(name, desired[name], state.remotes[name].tags)
        for name in state.retag:
            self._retag(state.remotes[name], desired[name])
        for name in plan.delete:
            # Soft delete: recoverable for the vault's retention period; the operator never purges.
            _call("DeleteSecret", name, self.client.begin_delete_secret, name)
            self.written.discard(name.lower())

    def _retag(self, remote: StoredSecret, value: bytes) -> None:
        tags = self._tags(value, remote.tags)
        _call(  # the version we compared (tags belong to a version; no new version is made)
            "UpdateSecretProperties",
            remote.name,
            self.client.update_secret_properties,
            remote.name,
            remote.version,
            tags=tags,
        )
        self.written.add(remote.name.lower())


KIND = AzureKeyVaultKind()
