"""How a dotsec source's KMS key is reached: with the tenant's own credentials, or what an admin's grant allows.

`spec.source.dotsec.kms` authenticates in exactly one of three ways, under the same rules as the AWS Secrets
Manager target (the same policy, `stores.authorize`, and the same credential gate, `credentials.Credentials`):

* `credentialsSecretRef`: a static key from a Secret of the VaultBundle's namespace;
* `auth.serviceAccountRef`: referent identity. The ServiceAccount of the namespace names its role
  (`eks.amazonaws.com/role-arn`) and opts in to the `sts.amazonaws.com` audience; a TokenRequest for it is
  exchanged with AssumeRoleWithWebIdentity, UNSIGNED (the operator's own identity never reaches AWS);
* `storeRef`: a ClusterTargetStore of kind `awsKms`. The store must admit the namespace; region, endpoints and
  identity (ambient, a Secret of the operator's namespace, optionally a role) are the store's alone, and the key
  the Decrypt answered with must lie in the store's `scope.keys` (a single key ARN is also sent as KeyId, so
  KMS itself refuses another key). A key outside the scope is `PolicyDenied`: the DEK is dropped unused.

`prepare` runs every cycle and is cheap (GETs, no AWS call, no TokenRequest): it applies the policy and returns
what the cheap path digests. `KmsAccess.unwrapper()` runs only when a file is actually opened; issued session
credentials (web identity, a store's role) are kept in `SessionCache` until shortly before they expire, so a
TokenRequest is made only for an STS exchange that actually happens, never per cycle.

A tenant's endpoints (`endpoint`, `stsEndpoint`, or the regional defaults) are tenant egress and checked against
the operator's egress policy; a store's were chosen by the admin and are not.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.exceptions

from . import sources, stores
from .digest import Digester
from .dotsec_kms import KeyCheck, KmsUnwrapper
from .dotsec_spec import KmsKey
from .egress import EgressPolicy, guarded
from .errors import DotsecDekUnwrapFailedError
from .fields import SecretRef
from .kube import KubeAPI
from .targets import aws_identity, grants
from .targets.base import Owner, TargetContext
from .targets.credentials import Credentials

KMS_EGRESS = "the KMS endpoint of the dotsec source"
STS_EGRESS = "the STS endpoint of the dotsec source's KMS key"
REFRESH_MARGIN = timedelta(minutes=2)  # issued credentials are renewed this long before they expire
MAX_SESSIONS = 1024


class SessionCache:
    """Issued AWS session credentials by what they were issued for, until `REFRESH_MARGIN` before expiry.
    Bounded (the oldest entries go first); values never leave this object except to build a client."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, ...], tuple[dict[str, str], datetime]] = {}

    def __repr__(self) -> str:
        return f"SessionCache({len(self._entries)} session(s))"

    def get(self, key: tuple[str, ...]) -> dict[str, str] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[1] - REFRESH_MARGIN <= self._clock():
                del self._entries[key]
                return None
            return dict(found[0])

    def put(self, key: tuple[str, ...], credentials: Mapping[str, str], expires: datetime | None) -> None:
        if expires is None:  # no expiry given: not kept (the next open asks again)
            return
        with self._lock:
            self._entries.pop(key, None)
            while len(self._entries) >= MAX_SESSIONS:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (dict(credentials), expires)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


SESSIONS = SessionCache()


@dataclass(frozen=True)
class KmsAccess:
    """One cycle's decision for a KMS key: where it goes, what the cheap path digests, and how to build the
    unwrapper when a file is opened. Credentials stay out of the repr."""

    region: str
    egress_urls: tuple[str, ...]  # tenant egress to check before the Decrypt (none for a store's connection)
    digest_items: Mapping[str, str] = field(repr=False)
    build: Callable[[], Awaitable[KmsUnwrapper]] = field(repr=False)

    async def unwrapper(self) -> KmsUnwrapper:
        return await self.build()


def _regional(service: str, region: str, endpoint: str) -> str:
    return endpoint or f"https://{service}.{region}.amazonaws.com"


def _unwrapper(
    region: str, endpoint: str, credentials: Mapping[str, str], key_id: str = "", check: KeyCheck | None = None
) -> KmsUnwrapper:
    def client(for_region: str) -> Any:
        return aws_identity.client("kms", for_region, endpoint, credentials)

    return KmsUnwrapper(region=region, client_factory=client, key_id=key_id, check_key=check)


def _context(kube: KubeAPI, owner: Owner, digester: Digester, grant: stores.Grant) -> TargetContext:
    async def read_secret(name: str, key: str) -> str:
        return await sources.read_secret_value(kube, owner.namespace, SecretRef(name, key), "KMS credentials")

    return TargetContext(kube, owner, digester, {}, read_secret, grant)


async def prepare(
    kube: KubeAPI, owner: Owner, digester: Digester, key: KmsKey, egress: EgressPolicy | None
) -> KmsAccess:
    """The policy decision and the cheap reads for *key*; raises `PolicyDeniedError`, `SpecError`,
    `StoreInvalidError` or a Secret / ServiceAccount error (nothing is sent to AWS here)."""
    grant = await grants.authorize_target(kube, owner, stores.KMS, key.raw)
    assert grant is not None  # awsKms is a store kind
    source = Credentials(_context(kube, owner, digester, grant), stores.KMS)
    if grant.store is not None:
        return _from_store(grant, source, owner)
    if key.service_account:
        return await _web_identity(key, source, owner, egress)
    names = {"aws_access_key_id": key.access_key_id_key, "aws_secret_access_key": key.secret_access_key_key}
    if key.session_token_key:
        names["aws_session_token"] = key.session_token_key
    values = await source.secret_keys(key.credentials_secret, list(names.values()))
    credentials = dict(zip(names, values, strict=True))
    items = {f"kms:{k}": v for k, v in credentials.items()} | {"kms": f"{key.region} {key.endpoint}"}

    async def build() -> KmsUnwrapper:
        return _unwrapper(key.region, key.endpoint, credentials)

    return KmsAccess(key.region, (_regional("kms", key.region, key.endpoint),), items, build)


async def _web_identity(key: KmsKey, source: Credentials, owner: Owner, egress: EgressPolicy | None) -> KmsAccess:
    role_arn, account = await aws_identity.web_identity_role(source.context, source, key.service_account)
    cache_key: tuple[str, ...] = ("web-identity", owner.namespace, owner.name, owner.uid, key.service_account)
    cache_key += (role_arn, key.region, key.sts_endpoint)
    sts_url = _regional("sts", key.region, key.sts_endpoint)

    async def build() -> KmsUnwrapper:
        credentials = SESSIONS.get(cache_key)
        if credentials is None:
            token = await aws_identity.web_identity_token(source.context, key.service_account, account)
            response = await asyncio.to_thread(
                guarded,
                egress,
                STS_EGRESS,
                [sts_url],
                _sts,
                aws_identity.assume_web_identity,
                key.region,
                key.sts_endpoint,
                role_arn,
                token,
                owner,
            )
            credentials = aws_identity.issued(response)
            SESSIONS.put(cache_key, credentials, aws_identity.expiration(response))
        return _unwrapper(key.region, key.endpoint, credentials)

    items = {"kms": f"{key.region} {key.endpoint} {key.sts_endpoint}", "kms:web-identity": role_arn}
    return KmsAccess(key.region, (_regional("kms", key.region, key.endpoint),), items, build)


def _from_store(grant: stores.Grant, source: Credentials, owner: Owner) -> KmsAccess:
    connection, scope = grant.connection, grant.scope
    assert isinstance(connection, stores.AwsConnection) and scope is not None  # authorize's contract for awsKms

    def check(key_arn: str, client: Any) -> None:
        scope.check_kms_key(key_arn, lambda alias: _describe(client, alias))

    async def build() -> KmsUnwrapper:
        credentials = await aws_identity.store_identity(connection, source)
        if connection.role_arn:
            cache_key: tuple[str, ...] = ("store", str(grant.store), owner.namespace, owner.name, owner.uid)
            cache_key += (connection.role_arn, connection.external_id, connection.sts_endpoint, connection.region)
            issued = SESSIONS.get(cache_key)
            if issued is None:
                response = await asyncio.to_thread(
                    _sts,
                    aws_identity.assume_role,
                    connection.region,
                    connection.sts_endpoint,
                    connection.role_arn,
                    connection.external_id,
                    credentials,
                    owner,
                )
                issued = aws_identity.issued(response)
                SESSIONS.put(cache_key, issued, aws_identity.expiration(response))
            credentials = issued
        return _unwrapper(connection.region, connection.endpoint, credentials, scope.kms_key_id, check)

    items = {
        "kms:store": str(grant.store),
        "kms": f"{connection.region} {connection.endpoint} {connection.sts_endpoint} {connection.role_arn}",
        "kms:keys": "\n".join(scope.kms_keys),  # a changed scope re-opens the file: its key is checked again
    }
    return KmsAccess(connection.region, (), items, build)


def _sts(call: Callable[..., Any], *args: Any) -> Any:
    """An STS exchange in a worker thread; its failure is the dotsec key's (AuthFailed names the operation)."""
    try:
        return call(*args)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        code = type(exc).__name__
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        raise DotsecDekUnwrapFailedError(f"the STS exchange for the KMS key failed: {code}") from None


def _describe(client: Any, alias: str) -> str:
    """The key ARN an alias of the scope points at ("" when it does not exist)."""
    try:
        return str(client.describe_key(KeyId=alias)["KeyMetadata"]["Arn"])
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        if code == "NotFoundException":
            return ""
        raise DotsecDekUnwrapFailedError(f"KMS DescribeKey of a key in the grant's scope failed: {code}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise DotsecDekUnwrapFailedError(f"KMS DescribeKey failed: {type(exc).__name__}") from None


__all__ = ["KMS_EGRESS", "SESSIONS", "KmsAccess", "SessionCache", "prepare"]
