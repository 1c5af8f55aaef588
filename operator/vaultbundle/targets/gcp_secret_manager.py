"""GCP Secret Manager target: one secret per selected key in one project, written with google-cloud-secret-manager.

Ownership lives on the secrets themselves: every secret we create carries the labels `managed-by=vaultbundle`
and `vaultbundle-owner=<namespace>_<name>` (sanitized to GCP's label rules). A secret of a desired name without
our owner label is left alone and reported (`SecretNotOwned`) unless `adopt: true`; another VaultBundle's
secret is never taken. A new version is added only when the value differs from the latest *enabled* version's
payload, so an unchanged bundle causes no write and no version churn. `prune: true` deletes only secrets that
carry our owner label *and* that this target wrote (status `managedSecrets`), so two targets of one
VaultBundle in one project never prune each other.

Credentials: a service-account key in a Secret of the namespace (`credentialsSecretRef`); or workload identity
federation (`auth.serviceAccountRef` + `auth.audience`): a TokenRequest mints a short-lived token of the
tenant's own ServiceAccount (audience: the provider's default, `https:` + `auth.audience`), and google-auth's
identity-pool credentials exchange it at STS (`auth.tokenURL`), optionally impersonating a Google service
account (`auth.serviceAccountImpersonationURL`): the pool's attribute conditions and IAM bindings decide per
namespace. Or, with `storeRef`, the ClusterTargetStore's identity. Never the operator's ambient identity for a
tenant.

The client is synchronous gRPC; every call runs in a worker thread with a bounded timeout. The SDK is imported
lazily, so spec parsing works without the `gcp` extra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import stores
from ..errors import PolicyDeniedError, Reason, SpecError, TargetError
from ..fields import SecretRef, Selection, boolean, obj, secret_ref, string, string_map, strings
from ..selection import SelectionError, select
from ..vault import Vault
from . import tokens
from .base import Owner, Plan, StoreKind, TargetContext, WrittenNames
from .checks import is_loopback
from .credentials import Credentials, credentials_for
from .errormap import ExceptionTypes, Messages, first_match, translated
from .naming import NameRule, Naming, parse_naming, remote_names
from .ownership import ADOPT_KEY, MANAGED_BY_KEY, MANAGED_BY_VALUE, Consent, claim
from .threads import ThreadedTarget, in_thread

if TYPE_CHECKING:
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient

OWNER_LABEL = "vaultbundle-owner"
RESERVED_LABELS = (MANAGED_BY_KEY, OWNER_LABEL)
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
CALL_TIMEOUT = 30.0  # seconds per RPC (the SDK default is 60)
MAX_PAYLOAD_BYTES = 64 * 1024  # GCP's limit per version

NAME_RULE = NameRule(
    store="GCP Secret Manager",
    pattern=re.compile(r"[A-Za-z0-9_-]+"),
    max_length=255,
    description="only letters, digits, '_' and '-'",
)

_PROJECT = re.compile(r"(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}")
_ENDPOINT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_LOCATION = re.compile(r"[a-z][a-z0-9-]{1,62}")
STS_TOKEN_URL = "https://sts.googleapis.com/v1/token"  # noqa: S105 - a URL, not a secret
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - an OAuth token type name
_PROVIDER_AUDIENCE = re.compile(
    r"//iam\.googleapis\.com/projects/[0-9]{1,20}/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}"
    r"/providers/[a-z0-9-]{4,32}"
)
_HTTPS_URL = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s?#]*)?")
_IMPERSONATION_URL = re.compile(
    r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/v1/projects/-/serviceAccounts/[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+"
    r":generateAccessToken"
)
_AUTH_FIELDS = ("serviceAccountRef", "audience", "tokenURL", "serviceAccountImpersonationURL")


@dataclass(frozen=True)
class WorkloadIdentity:
    """`auth`: workload identity federation with a ServiceAccount of the VaultBundle's namespace."""

    service_account: str  # a ServiceAccount of the VaultBundle's namespace
    audience: str  # the pool provider: //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/...
    token_url: str = STS_TOKEN_URL
    impersonation_url: str = ""  # .../v1/projects/-/serviceAccounts/EMAIL:generateAccessToken, or none

    @property
    def token_audience(self) -> str:
        """The audience of the Kubernetes token: the provider's default allowed audience (`https:` + audience)."""
        return "https:" + self.audience


@dataclass(frozen=True)
class GcpSecretManagerSpec:
    project: str
    endpoint: str = ""
    insecure: bool = False
    credentials_ref: SecretRef | None = None
    workload_identity: WorkloadIdentity | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    locations: tuple[str, ...] = ()  # user-managed replication; empty = automatic
    naming: Naming = field(default_factory=Naming)
    adopt: bool = False
    prune: bool = False

    @property
    def parent(self) -> str:
        return f"projects/{self.project}"


def owner_label(owner: Owner) -> str:
    """`<namespace>_<name>` as a GCP label value ([a-z0-9_-], at most 63); a short hash keeps it unique when cut."""
    raw = f"{owner.namespace}_{owner.name}"
    clean = re.sub(r"[^a-z0-9_-]", "-", raw.lower())
    if clean == raw and len(clean) <= 63:
        return clean
    return f"{clean[:54]}-{hashlib.sha256(owner.ref.encode()).hexdigest()[:8]}"


def _labels(value: Any, path: str) -> dict[str, str]:
    labels = string_map(value, path)
    for key, label in labels.items():
        if key in RESERVED_LABELS:
            raise SpecError(f"{path}.{key} is reserved for the operator's ownership labels")
        if not _LABEL_KEY.fullmatch(key):
            raise SpecError(f"{path}: key {key!r} must match [a-z][a-z0-9_-]{{0,62}} (GCP label rules)")
        if not _LABEL_VALUE.fullmatch(label):
            raise SpecError(f"{path}.{key}: value must match [a-z0-9_-]{{0,63}} (GCP label rules)")
    if len(labels) > 64 - len(RESERVED_LABELS):
        raise SpecError(f"{path}: at most {64 - len(RESERVED_LABELS)} labels (GCP allows 64, two are ours)")
    return labels


def _locations(value: Any, path: str) -> tuple[str, ...]:
    replication = obj(value, path)
    automatic, user = replication.get("automatic"), replication.get("userManaged")
    if automatic is not None and user is not None:
        raise SpecError(f"{path} must set only one of automatic or userManaged")
    if user is None:
        obj(automatic, f"{path}.automatic")
        return ()
    locations = strings(obj(user, f"{path}.userManaged").get("locations"), f"{path}.userManaged.locations")
    if not locations:
        raise SpecError(f"{path}.userManaged.locations needs at least one location, e.g. europe-west1")
    for index, location in enumerate(locations):
        if not _LOCATION.fullmatch(location):
            raise SpecError(f"{path}.userManaged.locations[{index}] must be a GCP location like europe-west1")
    if len(set(locations)) != len(locations):
        raise SpecError(f"{path}.userManaged.locations lists a location twice")
    return locations


def _https_url(value: Any, path: str, default: str, pattern: re.Pattern[str], example: str) -> str:
    text = string(value, path, default=default)
    if text and not pattern.fullmatch(text):
        raise SpecError(f"{path} must be an https URL like {example}")
    return text


def _workload_identity(raw: Any, path: str) -> WorkloadIdentity | None:
    auth = obj(raw, path)
    if not auth:
        return None
    unknown = sorted(set(auth) - set(_AUTH_FIELDS))
    if unknown:
        raise SpecError(f"{path}: unknown fields {', '.join(unknown)} (it takes {', '.join(_AUTH_FIELDS)})")
    if auth.get("serviceAccountRef") is None:
        raise SpecError(f"{path}.serviceAccountRef is required: {{name: <ServiceAccount in this namespace>}}")
    audience = string(auth.get("audience"), f"{path}.audience", required=True)
    if not _PROVIDER_AUDIENCE.fullmatch(audience):
        raise SpecError(
            f"{path}.audience must name a workload identity pool provider: "
            "//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER"
        )
    return WorkloadIdentity(
        service_account=tokens.service_account_ref(auth["serviceAccountRef"], f"{path}.serviceAccountRef"),
        audience=audience,
        token_url=_https_url(auth.get("tokenURL"), f"{path}.tokenURL", STS_TOKEN_URL, _HTTPS_URL, STS_TOKEN_URL),
        impersonation_url=_https_url(
            auth.get("serviceAccountImpersonationURL"),
            f"{path}.serviceAccountImpersonationURL",
            "",
            _IMPERSONATION_URL,
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken",
        ),
    )


class GcpSecretManagerKind(StoreKind):
    name = "gcpSecretManager"
    extra = "gcp"
    sdk = ("google.cloud.secretmanager_v1", "grpc", "google_crc32c")

    def parse(self, raw: Mapping[str, Any], path: str) -> GcpSecretManagerSpec:
        with_store = raw.get("storeRef") is not None  # then the project comes from the ClusterTargetStore
        project = string(raw.get("project"), f"{path}.project", required=not with_store)
        if project and not _PROJECT.fullmatch(project):
            raise SpecError(f"{path}.project must be a GCP project ID (e.g. acme-prod) or project number")
        endpoint = string(raw.get("endpoint"), f"{path}.endpoint")
        match = _ENDPOINT.fullmatch(endpoint) if endpoint else None
        if endpoint and (match is None or not 0 < int(match.group(2)) < 65536):
            raise SpecError(
                f"{path}.endpoint must be host:port, e.g. secretmanager.europe-west1.rep.googleapis.com:443"
            )
        insecure = boolean(raw.get("insecure"), f"{path}.insecure", False)
        if insecure and (match is None or not is_loopback(match.group(1))):
            raise SpecError(f"{path}.insecure (plaintext gRPC) is only allowed with a loopback endpoint, for tests")
        credentials_ref = None
        if raw.get("credentialsSecretRef") is not None:
            credentials_ref = secret_ref(
                raw["credentialsSecretRef"], f"{path}.credentialsSecretRef", "credentials.json"
            )
            if insecure:
                raise SpecError(f"{path}: insecure sends no credentials; drop credentialsSecretRef or insecure")
        workload_identity = _workload_identity(raw.get("auth"), f"{path}.auth")
        if workload_identity is not None and (credentials_ref is not None or insecure):
            raise SpecError(
                f"{path}.auth (workload identity federation) excludes credentialsSecretRef and insecure; keep one"
            )
        return GcpSecretManagerSpec(
            project=project,
            endpoint=endpoint,
            insecure=insecure,
            credentials_ref=credentials_ref,
            workload_identity=workload_identity,
            labels=_labels(raw.get("labels"), f"{path}.labels"),
            locations=_locations(raw.get("replication"), f"{path}.replication"),
            naming=parse_naming(raw.get("naming"), f"{path}.naming"),
            adopt=boolean(raw.get("adopt"), f"{path}.adopt", False),
            prune=boolean(raw.get("prune"), f"{path}.prune", False),
        )

    def desired(self, vault: Vault, selection: Selection, spec: GcpSecretManagerSpec) -> dict[str, bytes]:
        """Secret ID -> payload bytes; IDs checked against GCP's rule, payloads against its size limit."""
        selected = select(vault, selection)
        big = sorted(name for name, value in selected.items() if len(value) > MAX_PAYLOAD_BYTES)
        if big:
            raise SelectionError(f"larger than GCP Secret Manager's 64 KiB payload limit: {', '.join(big)}")
        return remote_names(selected, spec.naming, NAME_RULE)

    async def connect(self, spec: GcpSecretManagerSpec, context: TargetContext) -> GcpSecretManagerTarget:
        if spec.insecure and not context.allow_local:
            raise PolicyDeniedError(
                "insecure (plaintext gRPC to a loopback endpoint) is allowed only on a test bed, where the operator "
                "runs with --egress-allow-local"
            )
        # gRPC connects from its C core, outside Python's sockets: the pre-flight check of the endpoint (in the
        # first in_thread call) is the only egress guard here, so DNS rebinding is not caught for this store
        credentials = credentials_for(context, self.name, spec.endpoint)
        grant = context.grant
        info: dict[str, Any] | None = None
        if grant is not None and grant.store is not None:
            spec, info = await _from_store(spec, grant, credentials)
        elif spec.workload_identity is not None:
            federated = await _federated(spec.workload_identity, context, credentials)
            client = await in_thread(_client, spec, None, federated)
            return GcpSecretManagerTarget(client, spec, context, allow_adopt=credentials.adopt_allowed())
        elif spec.credentials_ref is None:
            if not spec.insecure:  # insecure (a loopback emulator): an anonymous channel, no credentials at all
                credentials.ambient()  # workload identity / ADC: refused for tenants without a ClusterTargetStore
        else:
            info = _json_object(await credentials.secret(spec.credentials_ref))
            if info is None:
                raise TargetError(Reason.AUTH_FAILED, _bad_credentials(spec.credentials_ref))
        client = await in_thread(_client, spec, info)
        return GcpSecretManagerTarget(client, spec, context, allow_adopt=credentials.adopt_allowed())


async def _from_store(
    spec: GcpSecretManagerSpec, grant: stores.Grant, credentials: Credentials
) -> tuple[GcpSecretManagerSpec, dict[str, Any] | None]:
    """The spec with the ClusterTargetStore's project and endpoint (never plaintext), and the store's
    service-account key when its identity is a Secret in the operator's namespace (else ambient ADC)."""
    connection = grant.connection
    assert isinstance(connection, stores.GcpConnection)  # authorize's contract for GCP
    spec = dataclasses.replace(
        spec, project=connection.project, endpoint=connection.endpoint, insecure=False, credentials_ref=None
    )
    ref = connection.identity.secret_ref
    if ref is None:
        credentials.ambient()  # the store lends the operator's workload identity / ADC
        return spec, None
    parsed = _json_object(await credentials.store_secret(ref, "key"))
    if parsed is None:
        raise TargetError(
            Reason.STORE_INVALID,
            f"the ClusterTargetStore's Secret {ref.name} (operator namespace) key {ref.key('key')!r} is not a "
            "Google service-account JSON key; ask your cluster admin",
        )
    return spec, parsed


class _MintedToken:
    """google-auth's subject-token supplier: the ServiceAccount token minted for this sync (the TokenRequest
    needs the event loop, so it happens in `connect`; google-auth exchanges it at STS, then drops it)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_subject_token(self, context: Any, request: Any) -> str:
        return self._token

    def __repr__(self) -> str:
        return "_MintedToken(<redacted>)"


async def _federated(identity: WorkloadIdentity, context: TargetContext, credentials: Credentials) -> Any:
    """Identity-pool credentials (google-auth) whose subject token is a fresh token of the tenant's own
    ServiceAccount, requested for the provider's audience; it must opt in (`vaultbundle.io/token-audiences`).
    The STS (and impersonation) URLs are tenant URLs: checked by the egress policy before the exchange."""
    from google.auth import identity_pool

    credentials.service_account(identity.service_account)
    if credentials.egress is not None:
        credentials.egress.expect(identity.token_url, identity.impersonation_url)
    token = await tokens.service_account_token(
        context,
        identity.service_account,
        [identity.token_audience],
        "exchange its token at Google STS (workload identity federation)",
    )
    supplier = _MintedToken(token)
    return identity_pool.Credentials(  # type: ignore[no-untyped-call]
        audience=identity.audience,
        subject_token_type=JWT_TOKEN_TYPE,
        token_url=identity.token_url,
        subject_token_supplier=supplier,
        service_account_impersonation_url=identity.impersonation_url or None,
        scopes=[CLOUD_PLATFORM_SCOPE],
    )


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _bad_credentials(ref: SecretRef) -> str:
    return f"Secret {ref.name!r} key {ref.key!r} is not a Google service-account JSON key"


def _client(
    spec: GcpSecretManagerSpec, info: dict[str, Any] | None, federated: Any = None
) -> SecretManagerServiceClient:
    """The client: anonymous plaintext for a loopback emulator, else TLS with the service-account key *info*,
    the *federated* credentials (exchanged here, in this worker thread under the egress scope, so that gRPC's
    own threads never call STS), or ambient ADC (only where the policy admitted it)."""
    from google.auth import exceptions as auth_exceptions
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient  # the `gcp` extra

    if spec.insecure:
        import grpc
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        channel = grpc.insecure_channel(spec.endpoint)
        return SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))
    options = {"api_endpoint": spec.endpoint} if spec.endpoint else None
    if federated is not None:
        from google.auth.transport.requests import Request

        with _errors(f"project {spec.project}: exchanging the ServiceAccount token (workload identity federation)"):
            federated.refresh(Request())
        return SecretManagerServiceClient(credentials=federated, client_options=options)
    try:
        credentials = None
        if info is not None:
            credentials = _service_account(info, spec)
        return SecretManagerServiceClient(credentials=credentials, client_options=options)
    except auth_exceptions.DefaultCredentialsError:
        raise TargetError(
            Reason.AUTH_FAILED,
            "no credentialsSecretRef and no ambient Google credentials (workload identity / ADC) were found",
        ) from None


def _service_account(info: dict[str, Any], spec: GcpSecretManagerSpec) -> Any:
    """Only service-account keys: other credential configs (external_account, ...) can make the operator fetch
    URLs or run programs named by whoever writes the Secret. Workload identity comes in as ambient ADC."""
    from google.oauth2 import service_account

    assert spec.credentials_ref is not None
    if info.get("type") != "service_account":
        raise TargetError(Reason.AUTH_FAILED, _bad_credentials(spec.credentials_ref))
    try:
        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[CLOUD_PLATFORM_SCOPE]
        )
    except (ValueError, KeyError, TypeError):
        raise TargetError(Reason.AUTH_FAILED, _bad_credentials(spec.credentials_ref)) from None


_MESSAGES = Messages(
    {
        Reason.AUTH_FAILED: "{what}: Google rejected the credentials",
        Reason.FORBIDDEN: (
            "{what}: permission denied (the project may not exist, or the identity lacks "
            "roles/secretmanager.admin or equivalent)"
        ),
        Reason.THROTTLED: "{what}: quota exceeded; retrying later",
        Reason.REJECTED: "{what}: Secret Manager rejected the request",
        Reason.UNAVAILABLE: "{what}: Secret Manager unreachable or unavailable; retrying later",
        Reason.STORE_API_ERROR: "{what}: Secret Manager answered {type}",
    }
)


def _rules() -> list[tuple[ExceptionTypes, Reason]]:
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    return [
        ((api.Unauthenticated, auth.RefreshError, auth.DefaultCredentialsError), Reason.AUTH_FAILED),
        (api.PermissionDenied, Reason.FORBIDDEN),
        (api.NotFound, Reason.NOT_FOUND),
        (api.ResourceExhausted, Reason.THROTTLED),
        ((api.AlreadyExists, api.FailedPrecondition, api.Aborted, api.Conflict), Reason.CONFLICT),
        (api.InvalidArgument, Reason.REJECTED),
        (
            (
                api.ServiceUnavailable,
                api.DeadlineExceeded,
                api.InternalServerError,
                api.RetryError,
                auth.TransportError,
            ),
            Reason.UNAVAILABLE,
        ),
        (api.GoogleAPICallError, Reason.STORE_API_ERROR),
    ]


def _errors(what: str) -> contextlib.AbstractContextManager[None]:
    """SDK errors -> TargetError with a fixed message: error details from the API are never copied to status."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    def to_error(exc: Exception) -> TargetError | None:
        reason = first_match(exc, _rules())
        return None if reason is None else _MESSAGES.error(reason, what, type=type(exc).__name__)

    return translated((GoogleAPIError, GoogleAuthError), to_error)


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


@dataclass
class StoreState:
    """What plan() read, for apply: full resource names, etags and labels of the secrets involved."""

    names: dict[str, str] = field(default_factory=dict)  # secret ID -> resource name (existing secrets)
    etags: dict[str, str] = field(default_factory=dict)
    relabel: dict[str, dict[str, str]] = field(default_factory=dict)  # secret ID -> full label set to write


class GcpSecretManagerTarget(ThreadedTarget[StoreState]):
    def __init__(
        self,
        client: SecretManagerServiceClient,
        spec: GcpSecretManagerSpec,
        context: TargetContext,
        *,
        allow_adopt: bool = False,
    ) -> None:
        self.client, self.spec, self.allow_adopt = client, spec, allow_adopt
        self.owner_value = owner_label(context.owner)
        self.labels = {**spec.labels, MANAGED_BY_KEY: MANAGED_BY_VALUE, OWNER_LABEL: self.owner_value}
        self.managed = WrittenNames(context.previous, spec.parent)

    def describe(self) -> str:
        return f"GCP Secret Manager project {self.spec.project}"

    def status_extra(self) -> dict[str, Any]:
        return self.managed.status()

    # ---- reads ---------------------------------------------------------------------------------
    def _latest_enabled(self, name: str) -> bytes | None:
        """Payload of the newest ENABLED version (what `latest` means when nobody disabled it), else None."""
        from google.api_core import exceptions as api

        try:
            response = self.client.access_secret_version(name=f"{name}/versions/latest", timeout=CALL_TIMEOUT)
            return bytes(response.payload.data)
        except (api.FailedPrecondition, api.NotFound):  # latest is disabled/destroyed, or there are no versions
            pass
        request = {"parent": name, "filter": "state:ENABLED", "page_size": 1}
        for version in self.client.list_secret_versions(request=request, timeout=CALL_TIMEOUT):
            response = self.client.access_secret_version(name=version.name, timeout=CALL_TIMEOUT)
            return bytes(response.payload.data)
        return None

    def _list_ours(self) -> dict[str, Any]:
        """Secret ID -> Secret for the secrets carrying our owner label (checked here too, not only by the filter)."""
        from google.api_core import exceptions as api

        parent = self.spec.parent
        try:
            request = {"parent": parent, "filter": f'labels.{OWNER_LABEL}="{self.owner_value}"'}
            listing = list(self.client.list_secrets(request=request, timeout=CALL_TIMEOUT))
        except api.InvalidArgument:  # a filter dialect we did not expect: list everything, filter here
            listing = list(self.client.list_secrets(request={"parent": parent}, timeout=CALL_TIMEOUT))
        return {_short(s.name): s for s in listing if s.labels.get(OWNER_LABEL) == self.owner_value}

    def _get(self, secret_id: str) -> Any:
        """The secret, or None when it does not exist."""
        from google.api_core import exceptions as api

        with _errors(f"project {self.spec.project}: reading secret {secret_id}"):
            try:
                return self.client.get_secret(name=f"{self.spec.parent}/secrets/{secret_id}", timeout=CALL_TIMEOUT)
            except api.NotFound:
                return None

    def _plan(self, desired: Mapping[str, bytes]) -> Plan[StoreState]:
        spec, remote = self.spec, StoreState()
        plan = Plan(state=remote)
        with _errors(f"project {spec.project}: listing secrets"):
            ours = self._list_ours()
        claimed = claim(
            {secret_id: ours[secret_id] if secret_id in ours else self._get(secret_id) for secret_id in desired},
            owner_of=lambda secret: secret.labels.get(OWNER_LABEL),
            me=self.owner_value,
            adopt=spec.adopt,
            where=self.describe(),
            marker=f"no {OWNER_LABEL} label",
            consent=Consent(
                lambda secret: secret.labels.get(ADOPT_KEY), self.owner_value, f"label {ADOPT_KEY}", self.allow_adopt
            ),
        )
        plan.create = claimed.missing
        for secret_id, secret in claimed.held.items():
            remote.names[secret_id], remote.etags[secret_id] = secret.name, secret.etag
            labels = dict(secret.labels)
            if any(labels.get(k) != v for k, v in self.labels.items()):
                remote.relabel[secret_id] = {**labels, **self.labels}
            if secret_id in claimed.adopted:  # not ours yet: its value is never read (no oracle), just written
                plan.update.append(secret_id)
                continue
            with _errors(f"project {spec.project}: reading secret {secret_id}"):
                current = self._latest_enabled(secret.name)
            if current != desired[secret_id]:
                plan.update.append(secret_id)
            else:
                plan.unchanged += 1
        self.managed.add(*(set(ours) & set(desired)))  # labelled ours and written by this target
        doomed = self.managed.prune_candidates(set(ours), set(desired))
        if spec.prune:
            for secret_id in doomed:
                plan.delete.append(secret_id)
                remote.names[secret_id], remote.etags[secret_id] = ours[secret_id].name, ours[secret_id].etag
        plan.metadata = bool(remote.relabel)
        return plan

    # ---- writes --------------------------------------------------------------------------------
    def _replication(self) -> dict[str, Any]:
        if self.spec.locations:
            return {"user_managed": {"replicas": [{"location": loc} for loc in self.spec.locations]}}
        return {"automatic": {}}

    def _add_version(self, name: str, value: bytes) -> None:
        import google_crc32c

        payload = {"data": value, "data_crc32c": google_crc32c.value(value)}
        self.client.add_secret_version(request={"parent": name, "payload": payload}, timeout=CALL_TIMEOUT)

    def _apply(self, plan: Plan[StoreState], desired: Mapping[str, bytes]) -> None:
        spec, remote = self.spec, plan.state
        assert remote is not None
        for secret_id in plan.create:
            what = f"project {spec.project}: creating secret {secret_id}"
            with _errors(what):
                secret = {"replication": self._replication(), "labels": self.labels}
                request = {"parent": spec.parent, "secret_id": secret_id, "secret": secret}
                created = self.client.create_secret(request=request, timeout=CALL_TIMEOUT)
            self.managed.add(secret_id)  # labelled ours from here on, even if adding the version fails
            with _errors(what):
                self._add_version(created.name, desired[secret_id])
        for secret_id, labels in sorted(remote.relabel.items()):
            with _errors(f"project {spec.project}: labelling secret {secret_id}"):
                changed = {"name": remote.names[secret_id], "labels": labels, "etag": remote.etags[secret_id]}
                update = {"secret": changed, "update_mask": {"paths": ["labels"]}}
                self.client.update_secret(request=update, timeout=CALL_TIMEOUT)
            self.managed.add(secret_id)
        for secret_id in plan.update:
            with _errors(f"project {spec.project}: adding a version to secret {secret_id}"):
                self._add_version(remote.names[secret_id], desired[secret_id])
            self.managed.add(secret_id)
        for secret_id in plan.delete:
            with _errors(f"project {spec.project}: deleting secret {secret_id}"):
                request = {"name": remote.names[secret_id], "etag": remote.etags[secret_id]}
                self.client.delete_secret(request=request, timeout=CALL_TIMEOUT)
            self.managed.discard(secret_id)


KIND = GcpSecretManagerKind()
