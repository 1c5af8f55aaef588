"""HashiCorp Vault / OpenBao target: all selected keys in ONE KV secret (v2, or v1), written with check-and-set.

Ownership (KV v2): the secret's `custom_metadata` carries `managed-by: vaultbundle` and
`vaultbundle-owner: <namespace>/<name>`; an existing secret without that marker is refused (`SecretNotOwned`)
unless `adopt: true`, and another VaultBundle's secret is never taken. The marker is written first (a token
without metadata rights fails before any data is written), then the data with `cas` = the version read at plan
time (0 when creating), so a concurrent writer makes the write fail with reason `Conflict` instead of being
silently overwritten. Identical content is never rewritten (no new version). KV v1 has no metadata and no
check-and-set: ownership is kept in this target's status entry (`remote`, `remoteOwned`).

Authentication (exactly one): a token from a Secret, AppRole (role and secret id from Secrets), or Kubernetes
auth with a short-lived token the operator requests (TokenRequest) for a ServiceAccount in the VaultBundle's
own namespace. That ServiceAccount must opt in with the annotation `vaultbundle.io/token-audiences` listing the
audiences the operator may request for it, so editing a VaultBundle never yields, e.g., an API-server token.

With `storeRef` a cluster admin's ClusterTargetStore supplies the address, Vault namespace, CA and auth (its
Secrets and ServiceAccount live in the operator's namespace; the ServiceAccount opts in the same way), and the
target's mount (default `secret`, as without a store) and path must lie in the store's scope: checked by
`authorize` on the spec and again here before every login, read and write (`BoundScope.check_path`).
Error messages name paths and keys, never values, and never carry Vault's or the SDK's error text.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from .. import stores
from ..errors import CrossNamespaceError, Reason, SpecError, TargetError
from ..fields import DNS_SUBDOMAIN, MAX_NAME_LENGTH, SecretRef, Selection, boolean, obj, secret_ref, string, strings
from ..selection import SelectionError, select
from ..vault import Vault
from .base import Owner, Plan, StoreKind, TargetContext
from .checks import is_utf8
from .credentials import Credentials, credentials_for
from .errormap import ExceptionTypes, Messages, first_match
from .naming import NameRule, Naming, parse_naming, remote_names
from .ownership import ADOPT_KEY, MANAGED_BY_KEY, MANAGED_BY_VALUE, Consent, adopt_token, claim_one
from .threads import in_thread
from .tokens import opted_in_account, service_account_token
from .vault_logins import LOGINS, LoginKey

OWNER_KEY = "vaultbundle-owner"
TIMEOUT_SECONDS = 15

_SEGMENT = re.compile(r"[A-Za-z0-9._~@=+:,-]+")

KEY_RULE = NameRule(
    store="Vault KV",
    pattern=re.compile(r"[^\x00-\x1f\x7f]+"),
    max_length=512,
    description="must not contain control characters",
)


# --- spec -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenAuth:
    token_ref: SecretRef


@dataclass(frozen=True)
class KubernetesAuth:
    role: str
    service_account_name: str
    mount: str = "kubernetes"
    audiences: tuple[str, ...] = ("vault",)


@dataclass(frozen=True)
class AppRoleAuth:
    role_id_ref: SecretRef
    secret_id_ref: SecretRef
    mount: str = "approle"


Auth = TokenAuth | KubernetesAuth | AppRoleAuth


@dataclass(frozen=True)
class HashicorpVaultSpec:
    address: str  # "" with storeRef: the ClusterTargetStore's
    path: str
    auth: Auth | None  # None with storeRef: the ClusterTargetStore's
    mount: str = "secret"
    namespace: str = ""
    kv_version: int = 2
    ca_bundle_ref: SecretRef | None = None
    naming: Naming = field(default_factory=Naming)
    adopt: bool = False
    prune: bool = True


def _vault_path(value: Any, path: str, *, required: bool, default: str = "", max_length: int = 512) -> str:
    """A Vault path: '/'-separated segments of safe characters, no leading/trailing '/', no '.' or '..'."""
    text = string(value, path, required=required, default=default)
    if not text:
        return text
    segments = text.split("/")
    if (
        len(text) > max_length
        or text.startswith("/")
        or text.endswith("/")
        or any(not _SEGMENT.fullmatch(s) or s in (".", "..") for s in segments)
    ):
        raise SpecError(
            f"{path} must be a relative Vault path of at most {max_length} characters: segments of letters, "
            "digits and ._~@=+:,- separated by single '/', without a leading or trailing '/' and without '.' or "
            f"'..' segments (got {text!r})"
        )
    return text


def _address(value: Any, path: str) -> str:
    text = string(value, path, required=True)
    parts = urlsplit(text)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
        or not port_ok
        or any(c.isspace() for c in text)
    ):
        raise SpecError(
            f"{path} must be an http(s) URL like https://vault.example:8200, without credentials, query or "
            f"fragment (got {text!r})"
        )
    return text.rstrip("/")


def _parse_auth(raw: Any, path: str) -> Auth:
    if raw is None:
        raise SpecError(f"{path} is required (one of tokenSecretRef, kubernetes, appRole)")
    auth = obj(raw, path)
    chosen = [name for name in ("tokenSecretRef", "kubernetes", "appRole") if auth.get(name) is not None]
    unknown = sorted(set(auth) - {"tokenSecretRef", "kubernetes", "appRole"})
    if unknown:
        raise SpecError(f"{path}: unknown field(s) {', '.join(unknown)}")
    if len(chosen) != 1:
        raise SpecError(f"{path} must set exactly one of tokenSecretRef, kubernetes, appRole")
    kind = chosen[0]
    where = f"{path}.{kind}"
    if kind == "tokenSecretRef":
        return TokenAuth(secret_ref(auth[kind], where, "token"))
    body = obj(auth[kind], where)
    if kind == "kubernetes":
        if body.get("namespace") or body.get("serviceAccountNamespace"):
            raise CrossNamespaceError(
                f"{where}: the ServiceAccount always lives in the VaultBundle's own namespace; drop the namespace"
            )
        sa = string(body.get("serviceAccountName"), f"{where}.serviceAccountName", required=True)
        if len(sa) > MAX_NAME_LENGTH or not DNS_SUBDOMAIN.fullmatch(sa):
            raise SpecError(f"{where}.serviceAccountName must be a ServiceAccount name (DNS subdomain), got {sa!r}")
        audiences = strings(body.get("audiences"), f"{where}.audiences", ("vault",))
        if not audiences or any(not a.strip() for a in audiences) or len(audiences) > 8:
            raise SpecError(f"{where}.audiences must list 1 to 8 non-empty audiences (the Vault role's audience)")
        return KubernetesAuth(
            role=string(body.get("role"), f"{where}.role", required=True),
            service_account_name=sa,
            mount=_vault_path(body.get("mount"), f"{where}.mount", required=False, default="kubernetes"),
            audiences=audiences,
        )
    return AppRoleAuth(
        role_id_ref=secret_ref(body.get("roleIdSecretRef"), f"{where}.roleIdSecretRef", "role-id"),
        secret_id_ref=secret_ref(body.get("secretIdSecretRef"), f"{where}.secretIdSecretRef", "secret-id"),
        mount=_vault_path(body.get("mount"), f"{where}.mount", required=False, default="approle"),
    )


# --- errors -----------------------------------------------------------------------------------------------


_MESSAGES = Messages(
    {
        Reason.AUTH_FAILED: "Vault refused the login ({what}, {type})",
        Reason.FORBIDDEN: "permission denied: {what} (check the Vault policy of the role or token)",
        Reason.NOT_FOUND: "not found: {what} (is the mount enabled?)",
        Reason.REJECTED: "Vault rejected the request ({type}): {what}",
        Reason.UNAVAILABLE: "Vault failed ({type}): {what}",
    }
)


def _rules() -> list[tuple[ExceptionTypes, Reason]]:
    from hvac import exceptions as hv  # the SDK is an install extra: imported on use, never at module load

    failed = (hv.InternalServerError, hv.BadGateway, hv.RateLimitExceeded, hv.UnexpectedError)
    return [
        (failed, Reason.UNAVAILABLE),
        (hv.Unauthorized, Reason.AUTH_FAILED),
        (hv.Forbidden, Reason.FORBIDDEN),
        (hv.InvalidPath, Reason.NOT_FOUND),
        (hv.VaultError, Reason.REJECTED),
    ]


def _vault_error(exc: BaseException, what: str, *, login: bool = False) -> TargetError:
    """Map an hvac/requests exception to a TargetError. Only the class is looked at: its text may hold data."""
    import requests  # hvac's transport
    from hvac import exceptions as hv

    if isinstance(exc, hv.VaultDown | hv.VaultNotInitialized):
        return TargetError(Reason.UNAVAILABLE, f"Vault is sealed, uninitialized or in standby: {what}")
    reason = first_match(exc, _rules())
    if login and reason in (Reason.FORBIDDEN, Reason.NOT_FOUND, Reason.REJECTED):
        reason = Reason.AUTH_FAILED  # a refused login is a credentials problem, whatever the status
    if reason is not None:
        return _MESSAGES.error(reason, what, type=type(exc).__name__)
    if isinstance(exc, requests.exceptions.SSLError):
        return TargetError(
            Reason.UNAVAILABLE, f"TLS verification of the Vault server failed ({what}); check caBundleSecretRef"
        )
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return TargetError(
            Reason.UNAVAILABLE,
            f"the Vault server answered with a redirect, which is never followed ({what}); set address to the "
            "Vault server itself",
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return TargetError(Reason.UNAVAILABLE, f"Vault unreachable ({type(exc).__name__}): {what}")
    return TargetError(Reason.UNAVAILABLE, f"Vault call failed ({type(exc).__name__}): {what}")


def _is_cas_mismatch(exc: BaseException) -> bool:
    from hvac import exceptions as hv

    return isinstance(exc, hv.InvalidRequest) and any("check-and-set" in str(e) for e in exc.errors or [])


def _is_absent(exc: BaseException) -> bool:
    """A 404 with no error text: the secret does not exist (a missing mount says 'no handler for route')."""
    from hvac import exceptions as hv

    return isinstance(exc, hv.InvalidPath) and not (exc.errors or [])


# --- the kind ---------------------------------------------------------------------------------------------


class HashicorpVaultKind(StoreKind):
    name = "hashicorpVault"
    extra = "vault"
    sdk = ("hvac",)

    def parse(self, raw: Mapping[str, Any], path: str) -> HashicorpVaultSpec:
        kv_version = raw.get("kvVersion", 2)
        if isinstance(kv_version, bool) or not isinstance(kv_version, int) or kv_version not in (1, 2):
            raise SpecError(f"{path}.kvVersion must be 1 or 2")
        namespace = _vault_path(raw.get("namespace"), f"{path}.namespace", required=False, max_length=256)
        ca_raw = raw.get("caBundleSecretRef")
        # with storeRef the connection comes from the ClusterTargetStore (`authorize` refuses these fields if set)
        with_store = raw.get("storeRef") is not None
        address = "" if with_store and raw.get("address") is None else _address(raw.get("address"), f"{path}.address")
        auth = None if with_store and raw.get("auth") is None else _parse_auth(raw.get("auth"), f"{path}.auth")
        return HashicorpVaultSpec(
            address=address,
            namespace=namespace,
            mount=_vault_path(raw.get("mount"), f"{path}.mount", required=False, default="secret", max_length=128),
            path=_vault_path(raw.get("path"), f"{path}.path", required=True),
            kv_version=int(kv_version),
            ca_bundle_ref=None if ca_raw is None else secret_ref(ca_raw, f"{path}.caBundleSecretRef", "ca.crt"),
            auth=auth,
            naming=parse_naming(raw.get("naming"), f"{path}.naming"),
            adopt=boolean(raw.get("adopt"), f"{path}.adopt", False),
            prune=boolean(raw.get("prune"), f"{path}.prune", True),
        )

    def desired(self, vault: Vault, selection: Selection, spec: HashicorpVaultSpec) -> dict[str, bytes]:
        """The secret's keys: the selection renamed by `naming`; values must be UTF-8 (KV values are JSON strings)."""
        selected = select(vault, selection)
        binary = sorted(name for name, value in selected.items() if not is_utf8(value))
        if binary:
            raise SelectionError(
                f"not UTF-8, so not storable as a Vault KV string: {', '.join(repr(n) for n in binary)}; "
                "exclude them (files.exclude / keys.exclude) or send them to a kubernetesSecret target"
            )
        return remote_names(selected, spec.naming, KEY_RULE)

    async def connect(self, spec: HashicorpVaultSpec, context: TargetContext) -> HashicorpVaultTarget:
        import hvac  # the `vault` install extra (targets.load checked that it is installed)

        credentials = credentials_for(context, self.name, spec.address)
        grant = context.grant
        scope: stores.BoundScope | None = None
        if grant is not None and grant.store is not None:
            spec, ca_pem, login = await _from_store(spec, grant, context, credentials)
            scope = grant.scope
        else:
            ca_pem = await credentials.secret(spec.ca_bundle_ref) if spec.ca_bundle_ref is not None else None
            login = await _tenant_login(spec.auth, context, credentials)
        session = _session(ca_pem)
        # explicit token ("" = none yet) and verify: never VAULT_TOKEN, ~/.vault-token or VAULT_CACERT of the operator
        client = hvac.Client(
            url=spec.address,
            token="",
            verify=True,
            namespace=spec.namespace or None,
            session=session,
            timeout=TIMEOUT_SECONDS,
            allow_redirects=False,
        )
        target = HashicorpVaultTarget(
            client,
            spec,
            context.owner,
            context.previous,
            allow_adopt=credentials.adopt_allowed(),
            scope=scope,
        )
        try:
            await target.login(login, (spec.address, spec.namespace, ca_pem or ""))
        except BaseException:
            target._release()
            raise
        return target


# --- logins: the credentials, read through `Credentials` before anything is sent ---------------------------


@dataclass(frozen=True)
class Login:
    """One login with its credentials already read: a token, an AppRole or a ServiceAccount JWT (never in repr)."""

    method: Literal["token", "appRole", "kubernetes"]
    what: str  # for messages: the method, mount, role and ServiceAccount (no secret material)
    mount: str = ""
    role: str = ""
    secret: str = field(default="", repr=False)  # the token or the AppRole secret ID
    role_id: str = field(default="", repr=False)
    # Kubernetes auth: the JWT, requested only when no token of this identity is held (`vault_logins`)
    jwt: Callable[[], Awaitable[str]] | None = field(default=None, repr=False, compare=False)
    identity: LoginKey = ()  # Kubernetes auth: the ServiceAccount's namespace, name and audiences


def _kubernetes_what(mount: str, role: str, account: str) -> str:
    return f"Kubernetes login at auth/{mount} as role {role!r} with ServiceAccount {account!r}"


async def _tenant_login(auth: Auth | None, context: TargetContext, credentials: Credentials) -> Login:
    """The target's own auth: Secrets and a ServiceAccount of the VaultBundle's namespace."""
    if auth is None:  # parse requires auth without storeRef; a grant without a store never gets here without it
        raise SpecError("hashicorpVault.auth is required (or storeRef)")
    if isinstance(auth, TokenAuth):
        return Login("token", "token lookup-self", secret=await credentials.secret(auth.token_ref))
    if isinstance(auth, AppRoleAuth):
        role_id = await credentials.secret(auth.role_id_ref)
        return Login(
            "appRole",
            f"AppRole login at auth/{auth.mount}",
            mount=auth.mount,
            role_id=role_id,
            secret=await credentials.secret(auth.secret_id_ref),
        )
    credentials.service_account(auth.service_account_name)
    return await _kubernetes_login(context, auth.mount, auth.role, auth.service_account_name, auth.audiences)


async def _kubernetes_login(
    context: TargetContext, mount: str, role: str, account: str, audiences: tuple[str, ...], namespace: str = ""
) -> Login:
    """The ServiceAccount is read and its opt-in checked now, on every cycle; its JWT is requested only when
    the login has to be made (no token of this identity is held)."""
    purpose = "log in to Vault"
    found = await opted_in_account(context, account, audiences, purpose, namespace)

    async def jwt() -> str:
        return await service_account_token(context, account, audiences, purpose, account=found, namespace=namespace)

    identity = (namespace or context.owner.namespace, account, *sorted(audiences))
    return Login(
        "kubernetes", _kubernetes_what(mount, role, account), mount=mount, role=role, jwt=jwt, identity=identity
    )


async def _from_store(
    spec: HashicorpVaultSpec, grant: stores.Grant, context: TargetContext, credentials: Credentials
) -> tuple[HashicorpVaultSpec, str | None, Login]:
    """The spec with the ClusterTargetStore's address and Vault namespace, the store's CA, and its login: Secrets
    and ServiceAccount of the OPERATOR's namespace only."""
    connection = grant.connection
    assert isinstance(connection, stores.VaultConnection) and grant.scope is not None  # authorize's contract
    spec = replace(
        spec,
        address=connection.address.rstrip("/"),
        namespace=connection.namespace,
        ca_bundle_ref=None,
        auth=None,
    )
    ca_pem = None
    if connection.ca_bundle_secret_ref is not None:
        ca_pem = await credentials.store_secret(connection.ca_bundle_secret_ref, "key")
    auth = connection.auth
    if auth.method == "token":
        assert auth.token_secret_ref is not None  # parse_store's contract
        return (
            spec,
            ca_pem,
            Login("token", "token lookup-self", secret=await credentials.store_secret(auth.token_secret_ref, "key")),
        )
    if auth.method == "appRole":
        assert auth.role_id_secret_ref is not None and auth.secret_id_secret_ref is not None
        role_id = await credentials.store_secret(auth.role_id_secret_ref, "key")
        secret_id = await credentials.store_secret(auth.secret_id_secret_ref, "key")
        login = Login(
            "appRole", f"AppRole login at auth/{auth.mount}", mount=auth.mount, role_id=role_id, secret=secret_id
        )
        return spec, ca_pem, login
    namespace = credentials.store_service_account(auth.service_account_name)
    audiences = tuple(auth.audiences or ("vault",))
    login = await _kubernetes_login(context, auth.mount, auth.role, auth.service_account_name, audiences, namespace)
    return spec, ca_pem, login


def _refuse_redirect(response: Any, *_: Any, **__: Any) -> None:
    """hvac is told not to follow redirects; one answered anyway is an error, never a body to parse."""
    import requests

    if response.is_redirect or response.is_permanent_redirect:
        raise requests.exceptions.TooManyRedirects("a redirect is never followed")


def _session(ca_pem: str | None) -> Any:
    """A requests session; with a CA bundle, TLS is verified against exactly those certificates (no file on disk)."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.max_redirects = 0  # a redirect would carry the token to wherever the server points (H4)
    session.hooks["response"].append(_refuse_redirect)
    if not ca_pem:
        return session
    try:
        context = ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError):
        raise TargetError(Reason.INVALID_CA_BUNDLE, "caBundleSecretRef does not hold PEM certificates") from None

    class _PinnedCA(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = context
            super().init_poolmanager(*args, **kwargs)

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            super().cert_verify(conn, url, verify, cert)
            if verify:  # verify against the context's CAs only, not the default bundle
                conn.ca_certs = None
                conn.ca_cert_dir = None

    session.mount("https://", _PinnedCA())
    return session


# --- the connected target ---------------------------------------------------------------------------------


@dataclass
class StoreState:
    """What plan() read: apply() writes against exactly this version."""

    exists: bool = False
    version: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    custom_metadata: dict[str, str] = field(default_factory=dict)


class HashicorpVaultTarget:
    def __init__(
        self,
        client: Any,
        spec: HashicorpVaultSpec,
        owner: Owner,
        previous: Mapping[str, Any],
        *,
        allow_adopt: bool = False,
        scope: stores.BoundScope | None = None,
    ) -> None:
        self.client, self.spec, self.owner, self.previous = client, spec, owner, previous
        self.allow_adopt = allow_adopt
        self.scope = scope  # a ClusterTargetStore's scope: checked before every read and write
        self._owned = False
        self._adopting = False

    # identity -------------------------------------------------------------------------------------------

    @property
    def remote(self) -> str:
        """Which secret this is, recorded in status (KV v1 ownership) and shown in messages (a store's connection
        is named by the store, not shown to the tenant)."""
        if self.scope is not None:
            return f"ClusterTargetStore {self.scope.store} {self.spec.mount}/{self.spec.path}"
        namespace = f" namespace {self.spec.namespace}" if self.spec.namespace else ""
        return f"{self.spec.address}{namespace} {self.spec.mount}/{self.spec.path}"

    def _check_scope(self) -> None:
        """With a ClusterTargetStore: the mount and path are (still) this VaultBundle's, before any call."""
        if self.scope is not None:
            self.scope.check_path(self.spec.mount, self.spec.path)

    def describe(self) -> str:
        return f"Vault KV v{self.spec.kv_version} secret {self.remote}"

    def status_extra(self) -> dict[str, Any]:
        if self.spec.kv_version == 1 and self._owned:
            return {"remote": self.remote, "remoteOwned": True}
        return {}

    def _recorded_as_ours(self) -> bool:
        return bool(self.previous.get("remoteOwned")) and self.previous.get("remote") == self.remote

    # calls ----------------------------------------------------------------------------------------------

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, login: bool = False, **kwargs: Any) -> Any:
        try:
            return await in_thread(fn, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped by class; the text may carry data and is dropped
            raise _vault_error(exc, what, login=login) from None

    def _url(self, *parts: str) -> str:
        return "/v1/" + "/".join(quote(part, safe="/") for part in parts)

    # authentication -------------------------------------------------------------------------------------

    async def login(self, login: Login, server: LoginKey = ()) -> None:
        """Log in (*server*: address, Vault namespace and CA, which with the login's identity key a held
        Kubernetes-auth token)."""
        self._check_scope()  # nothing is sent for a target outside its store's scope, not even a login
        if login.method == "kubernetes":
            await self._kubernetes_login(login, (*server, login.mount, login.role, *login.identity))
        elif login.method == "token":
            self.client.token = login.secret
            # a bad token and a missing permission are both 403 later on: ask Vault about the token itself
            await self._call(login.what, self.client.auth.token.lookup_self, login=True)
        elif login.method == "appRole":
            await self._call(
                login.what,
                self.client.auth.approle.login,
                login.role_id,
                login.secret,
                use_token=True,
                mount_point=login.mount,
                login=True,
            )

    async def _kubernetes_login(self, login: Login, key: LoginKey) -> None:
        """A held token of this identity after one `lookup-self`; else (none, or Vault refuses it) a TokenRequest
        and a login, whose token is then held until shortly before its TTL ends."""
        held = LOGINS.get(key)
        if held:
            self.client.token = held
            try:
                await self._call(login.what, self.client.auth.token.lookup_self, login=True)
                return
            except TargetError:  # revoked, expired early, or Vault unreachable: log in as if none were held
                LOGINS.drop(key)
                self.client.token = ""
        assert login.jwt is not None  # _kubernetes_login's contract
        jwt = await login.jwt()
        response = await self._call(
            login.what,
            self.client.auth.kubernetes.login,
            login.role,
            jwt,
            use_token=True,
            mount_point=login.mount,
            login=True,
        )
        auth = response.get("auth") if isinstance(response, Mapping) else None
        ttl = auth.get("lease_duration") if isinstance(auth, Mapping) else None
        if isinstance(ttl, int | float) and not isinstance(ttl, bool):
            LOGINS.put(key, str(self.client.token or ""), float(ttl))

    # reading ---------------------------------------------------------------------------------------------

    async def _check_mount(self) -> None:
        """The mount must be a KV engine of the configured version (else paths mean something else)."""
        what = f"KV mount {self.spec.mount!r}"
        try:
            response = await in_thread(self.client.adapter.get, self._url("sys/internal/ui/mounts", self.spec.mount))
        except Exception as exc:  # noqa: BLE001 - mapped by class
            from hvac import exceptions as hv

            if isinstance(exc, hv.Forbidden | hv.InvalidPath):
                raise TargetError(
                    Reason.NOT_FOUND, f"{what} not found (or the token's policies grant nothing under it)"
                ) from None
            raise _vault_error(exc, what) from None
        # the server's answer is never quoted (a hostile or redirected server could put anything there)
        data = (response or {}).get("data") or {}
        if data.get("path") != self.spec.mount + "/":
            raise TargetError(Reason.NOT_FOUND, f"{what} not found (the path belongs to another mount)")
        version = str((data.get("options") or {}).get("version") or "1")
        if data.get("type") not in ("kv", "generic") or version != str(self.spec.kv_version):
            other = f"KV v{version}" if data.get("type") in ("kv", "generic") and version in ("1", "2") else "not KV"
            raise TargetError(
                Reason.KV_VERSION_MISMATCH, f"{what} is {other}, not KV v{self.spec.kv_version}; fix kvVersion"
            )

    async def _read_v2(self) -> StoreState:
        what = f"metadata of {self.spec.mount}/{self.spec.path}"
        try:
            meta = await in_thread(self.client.adapter.get, self._url(self.spec.mount, "metadata", self.spec.path))
        except Exception as exc:  # noqa: BLE001
            if _is_absent(exc):
                return StoreState()
            raise _vault_error(exc, what) from None
        body = (meta or {}).get("data") or {}
        remote = StoreState(
            exists=True,
            version=int(body.get("current_version") or 0),
            custom_metadata=dict(body.get("custom_metadata") or {}),
        )
        self._adopting = self._check_ownership(remote)
        # a secret not ours yet is read only when adopting it must keep its other keys (prune: false)
        if remote.version and (not self._adopting or not self.spec.prune):
            what = f"data of {self.spec.mount}/{self.spec.path}"
            try:
                response = await in_thread(self.client.adapter.get, self._url(self.spec.mount, "data", self.spec.path))
            except Exception as exc:  # noqa: BLE001
                if not _is_absent(exc) and not _deleted_version(exc):
                    raise _vault_error(exc, what) from None
                response = None  # the current version is deleted or destroyed: it holds nothing
            content = ((response or {}).get("data") or {}).get("data")
            remote.data = dict(content) if isinstance(content, Mapping) else {}
        return remote

    async def _read_v1(self) -> StoreState:
        what = f"{self.spec.mount}/{self.spec.path}"
        try:
            response = await in_thread(self.client.adapter.get, self._url(self.spec.mount, self.spec.path))
        except Exception as exc:  # noqa: BLE001
            if _is_absent(exc):
                return StoreState()
            raise _vault_error(exc, what) from None
        content = (response or {}).get("data")
        return StoreState(exists=True, data=dict(content) if isinstance(content, Mapping) else {})

    # ownership -------------------------------------------------------------------------------------------

    def _marker(self) -> dict[str, str]:
        return {MANAGED_BY_KEY: MANAGED_BY_VALUE, OWNER_KEY: self.owner.ref}

    def _check_ownership(self, remote: StoreState) -> bool:
        """True when the marker (v2) or our status record (v1) is missing and adopt lets us take the secret."""
        if self.spec.kv_version == 2:
            marker = remote.custom_metadata
            owner = marker.get(OWNER_KEY) if marker.get(MANAGED_BY_KEY) == MANAGED_BY_VALUE else None
            missing = "no vaultbundle custom_metadata"
        else:
            owner = self.owner.ref if self._recorded_as_ours() else None
            missing = "not recorded in status"
        consent = None  # KV v1 has no metadata to opt in with: adopt: true (with the tenant's own token) suffices
        if self.spec.kv_version == 2:
            consent = Consent(
                lambda current: current.get(ADOPT_KEY),
                adopt_token(self.owner),
                f"custom_metadata {ADOPT_KEY}",
                self.allow_adopt,
            )
        return claim_one(
            where=f"Vault {self.spec.address}"
            if self.scope is None
            else f"Vault of ClusterTargetStore {self.scope.store}",
            name=f"secret {self.spec.mount}/{self.spec.path}",
            owner=owner,
            me=self.owner.ref,
            adopt=self.spec.adopt,
            marker=missing,
            current=remote.custom_metadata,
            consent=consent,
        )

    # Target ----------------------------------------------------------------------------------------------

    def _release(self) -> None:
        """Close pooled connections after each phase (the protocol has no close hook); a later call reconnects."""
        self.client.adapter.close()

    async def plan(self, desired: Mapping[str, bytes]) -> Plan[StoreState]:
        try:
            return await self._plan(desired)
        finally:
            self._release()

    async def apply(self, plan: Plan[StoreState], desired: Mapping[str, bytes]) -> None:
        try:
            await self._apply(plan, desired)
        finally:
            self._release()

    async def _plan(self, desired: Mapping[str, bytes]) -> Plan[StoreState]:
        self._check_scope()
        await self._check_mount()
        remote = await (self._read_v2() if self.spec.kv_version == 2 else self._read_v1())
        plan = Plan(state=remote)
        if remote.exists:
            plan.metadata = self._check_ownership(remote) if self.spec.kv_version == 1 else self._adopting
            self._owned = not plan.metadata
        if plan.metadata:  # adopting: values are never compared (no equality oracle), every key is written
            known = set(desired) if self.spec.prune else set(desired) & set(remote.data)  # prune: all replaced
            plan.update, plan.create = sorted(known), sorted(set(desired) - known)
            return plan
        for name, value in desired.items():
            if name not in remote.data:
                plan.create.append(name)
            elif remote.data[name] != value.decode("utf-8"):  # a non-string value never equals ours
                plan.update.append(name)
            else:
                plan.unchanged += 1
        if self.spec.prune:
            plan.delete = sorted(name for name in remote.data if name not in desired)
        return plan

    def _body(self, remote: StoreState, desired: Mapping[str, bytes]) -> dict[str, Any]:
        kept = {} if self.spec.prune else {k: v for k, v in remote.data.items() if k not in desired}
        return {**kept, **{name: value.decode("utf-8") for name, value in desired.items()}}

    async def _apply(self, plan: Plan[StoreState], desired: Mapping[str, bytes]) -> None:
        self._check_scope()
        remote = plan.state or StoreState()
        where = f"{self.spec.mount}/{self.spec.path}"
        data_changed = bool(plan.create or plan.update or plan.delete)
        if self.spec.kv_version == 2:
            if plan.metadata or not remote.exists:  # claim first: without metadata rights nothing is written
                custom = {**remote.custom_metadata, **self._marker()}
                await self._call(
                    f"writing custom_metadata of {where}",
                    self.client.adapter.post,
                    self._url(self.spec.mount, "metadata", self.spec.path),
                    json={"custom_metadata": custom},
                )
            if data_changed:
                try:
                    await in_thread(
                        self.client.adapter.post,
                        self._url(self.spec.mount, "data", self.spec.path),
                        json={"options": {"cas": remote.version}, "data": self._body(remote, desired)},
                    )
                except Exception as exc:  # noqa: BLE001
                    if _is_cas_mismatch(exc):
                        raise TargetError(
                            Reason.CONFLICT,
                            f"Vault secret {where} changed since it was read (check-and-set expected version "
                            f"{remote.version}); nothing was written, the next sync re-plans",
                        ) from None
                    raise _vault_error(exc, f"writing {where}") from None
        elif data_changed:
            await self._call(
                f"writing {where}",
                self.client.adapter.post,
                self._url(self.spec.mount, self.spec.path),
                json=self._body(remote, desired),
            )
        self._owned = True


def _deleted_version(exc: BaseException) -> bool:
    """KV v2 answers 404 with metadata (deletion_time set) when the current version is deleted."""
    from hvac import exceptions as hv

    body = getattr(exc, "json", None)
    return isinstance(exc, hv.InvalidPath) and isinstance(body, Mapping) and isinstance(body.get("data"), Mapping)


KIND = HashicorpVaultKind()
