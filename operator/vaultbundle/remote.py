"""S3 object access for bundles (boto3), with every failure mapped to vsync's error classes.

Addressing is path-style (MinIO, moto, R2 and AWS all accept it); endpoint, region, bucket and static
credentials come from the config blob; a custom CA is honoured through `AWS_CA_BUNDLE` (botocore's own
variable) or the `ca_bundle` argument.

Bounds against a slow or hostile endpoint (the config blob, written by a tenant, names it): every GET has an
overall deadline (`timeout`, `--s3-timeout`). botocore's own timeouts are per socket operation, so a server
trickling one byte a second would hold a read for as long as it likes; the body is therefore read one socket
read at a time with the socket's timeout set to what is left of the deadline. Bundle objects must declare a
`Content-Length`, which is checked against the 64 MiB limit before a byte of the body is read. Not covered: a
server that trickles its *response headers* holds an I/O thread until http.client's header limits or
botocore's per-read timeout end it; the reconcile deadline (`--reconcile-timeout`) still frees the slot.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import __version__
from .crypto.configblob import BootstrapConfig
from .errors import BundleCorruptError, Reason, S3UnreachableError
from .s3get import READ_ERRORS, SignedGet, read_within
from .settings import DEFAULTS

MAX_OBJECT_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = DEFAULTS.s3_timeout_seconds  # `--s3-timeout`; the CLI uses it as is
USER_AGENT = f"vaultbundle/{__version__}"
_CHUNK_BYTES = 1024 * 1024
_CONNECT_TIMEOUT_S, _READ_TIMEOUT_S = 5.0, 30.0  # per socket operation; a whole GET has `timeout`
_MAX_ATTEMPTS = 3  # botocore's standard retry mode
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
# S3 error codes shown in messages; any other text a server sends is not quoted (a tenant's endpoint, H4)
_SHOWN_CODES = frozenset(
    {
        "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
        "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "PreconditionFailed",
        "InvalidBucketName", "PermanentRedirect", "AuthorizationHeaderMalformed", "InvalidRequest",
    }
)  # fmt: skip


class ObjectMissing(Exception):
    """The key does not exist (callers decide which vsync error that is)."""


class AccessDenied(S3UnreachableError):
    """HTTP 403. For bundles it is S3Unreachable like any refusal; the audit trail skips it silently."""

    reason = Reason.S3_UNREACHABLE


class PreconditionFailed(S3UnreachableError):
    """HTTP 412 on a conditional write: someone else wrote first (the audit trail retries)."""

    reason = Reason.S3_UNREACHABLE


@dataclass(frozen=True)
class StoredObject:
    body: bytes
    etag: str


class ObjectStore(Protocol):
    """The objects of one bucket, as the bundle code uses them (`S3Objects`; tests/kit/ has one in memory)."""

    @property
    def requests(self) -> int:
        """Requests made so far (the `vaultbundle_s3_requests_total` metric adds them up)."""
        ...

    def get(
        self,
        key: str,
        *,
        if_none_match: str | None = None,
        max_bytes: int = MAX_OBJECT_BYTES,
        require_length: bool = False,
    ) -> StoredObject | None:
        """The object; None when *if_none_match* is its ETag; raises `ObjectMissing` when it does not exist.

        *require_length*: a response that does not declare its size is refused (`BundleCorruptError`)."""
        ...

    def put(self, key: str, body: bytes, *, create_only: bool = False, if_match: str | None = None) -> str:
        """Store *body*; returns the new ETag. *create_only* refuses to replace an existing object."""
        ...

    def list_keys(self, prefix: str) -> list[str]: ...


class S3Objects:
    """The objects under one bucket, addressed by full key. Counts requests (for metrics)."""

    def __init__(
        self,
        config: BootstrapConfig,
        *,
        client: Any = None,
        ca_bundle: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        getter: SignedGet | None = None,
    ) -> None:
        """*client*: a boto3 S3 client (or a stand-in) for every request; *getter*: the lean GET path for the same
        endpoint (s3get.py). Without a *client* both are built; a *client* alone serves GETs too."""
        self.bucket = config.bucket
        self.requests = 0
        self.timeout = timeout  # seconds for a whole GET: headers and body
        if client is None:
            client = make_client(config, ca_bundle, timeout=timeout)
            getter = getter or make_getter(client, config, ca_bundle, timeout=timeout)
        self._client = client
        self._getter = getter

    def __repr__(self) -> str:
        return f"<S3Objects bucket={self.bucket!r}>"

    def _call(self, operation: str, key: str, *, via: Any = None, **kwargs: Any) -> Any:
        self.requests += 1
        try:
            call = getattr(via or self._client, operation)
            return call(Bucket=self.bucket, **({"Key": key} if key else {}), **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in ("304", "NotModified") or status == "304":
                raise _NotModified from None
            if code in _NOT_FOUND:
                raise ObjectMissing(key) from None
            if code == "NoSuchBucket":
                raise S3UnreachableError(f"bucket {self.bucket!r} does not exist") from None
            failure = {"403": AccessDenied, "412": PreconditionFailed}.get(status, S3UnreachableError)
            shown = code if code in _SHOWN_CODES else f"HTTP {status}" if status else "unknown error"
            raise failure(f"S3 {operation} of {key or self.bucket!r} failed: {shown}") from None
        except (BotoCoreError, OSError) as exc:
            raise S3UnreachableError(f"S3 {operation} of {key or self.bucket!r} failed: {type(exc).__name__}") from None

    def get(
        self,
        key: str,
        *,
        if_none_match: str | None = None,
        max_bytes: int = MAX_OBJECT_BYTES,
        require_length: bool = False,
    ) -> StoredObject | None:
        """GET an object within the deadline; None when *if_none_match* matches (304: nothing transferred).

        *require_length*: refuse a response without `Content-Length` (bundle objects: the size is checked
        before reading)."""
        deadline = time.monotonic() + self.timeout
        kwargs: dict[str, Any] = {"IfNoneMatch": if_none_match} if if_none_match else {}
        if self._getter is not None:
            kwargs.update(via=self._getter, deadline=deadline)
        try:
            response = self._call("get_object", key, **kwargs)
        except _NotModified:
            return None
        body = response["Body"]
        declared = response.get("ContentLength")
        try:
            if declared is None and require_length:
                raise BundleCorruptError(
                    f"the S3 server sent {key!r} without a Content-Length; bundle objects must declare their size "
                    "(is a proxy re-chunking responses?)"
                )
            if declared is not None and int(declared) > max_bytes:
                raise BundleCorruptError(f"object {key!r} is {declared} bytes; the limit is {max_bytes}")
            data = self._read(body, key, max_bytes + 1 if declared is None else int(declared), deadline)
        finally:
            body.close()
        if len(data) > max_bytes:
            raise BundleCorruptError(f"object {key!r} exceeds {max_bytes} bytes")
        if declared is not None and len(data) != int(declared):
            raise S3UnreachableError(f"reading {key!r} ended after {len(data)} of {declared} bytes")
        return StoredObject(body=data, etag=str(response.get("ETag", "")))

    def _read(self, body: Any, key: str, limit: int, deadline: float) -> bytes:
        """Up to *limit* bytes, one socket read at a time, none of them past *deadline*."""
        raw = getattr(body, "_raw_stream", None)  # botocore's StreamingBody wraps a urllib3 response
        try:
            return read_within(raw if raw is not None else body, limit, deadline, _CHUNK_BYTES)
        except TimeoutError:
            raise S3UnreachableError(f"reading {key!r} took longer than the {self.timeout:g}s deadline") from None
        except READ_ERRORS as exc:
            raise S3UnreachableError(f"reading {key!r} failed: {type(exc).__name__}") from None

    def put(self, key: str, body: bytes, *, create_only: bool = False, if_match: str | None = None) -> str:
        """PUT an object; *create_only* refuses to replace an existing one (If-None-Match: *), *if_match*
        replaces only the version with that ETag. A refused condition raises `PreconditionFailed`."""
        kwargs: dict[str, Any] = {"Body": body}
        if create_only:
            kwargs["IfNoneMatch"] = "*"
        if if_match:
            kwargs["IfMatch"] = if_match
        return str(self._call("put_object", key, **kwargs).get("ETag", ""))

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            page = self._call("list_objects_v2", "", **kwargs)
            keys.extend(str(item["Key"]) for item in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return keys
            token = page.get("NextContinuationToken")


class _NotModified(Exception):
    pass


def _session() -> boto3.session.Session:
    """A boto3 session whose responses keep timestamps as text (nothing here reads `LastModified`; dateutil
    parsing it cost ~8 % of a GET's CPU)."""
    core = botocore.session.Session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_as_text)
    return boto3.session.Session(botocore_session=core)


def _as_text(value: str) -> str:
    return value


def make_client(
    config: BootstrapConfig,
    ca_bundle: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    connections: int = DEFAULTS.max_concurrent,
) -> Any:
    """A boto3 S3 client for *config*. A fixed `User-Agent` (`USER_AGENT`) names us in the server's logs and
    spares botocore rebuilding its structured one twice per request (~13 % of a GET's CPU). *connections*: the
    kept-alive pool, one per concurrent reconcile sharing the client (`--max-concurrent`); a smaller pool makes
    the reconciles beyond it open (and, over TLS, handshake) a new connection per request."""
    return _session().client(
        "s3",
        endpoint_url=config.endpoint or None,
        region_name=config.region or None,
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        verify=ca_bundle,
        config=Config(
            user_agent=USER_AGENT,
            s3={"addressing_style": "path"},
            connect_timeout=min(_CONNECT_TIMEOUT_S, timeout),
            read_timeout=min(_READ_TIMEOUT_S, timeout),
            retries={"mode": "standard", "max_attempts": _MAX_ATTEMPTS},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=connections,
        ),
    )


def make_getter(
    client: Any,
    config: BootstrapConfig,
    ca_bundle: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    connections: int = DEFAULTS.max_concurrent,
) -> SignedGet:
    """The lean GET path (s3get.py) for *client*'s endpoint and region, configured as `make_client` configures
    the client: same credentials, User-Agent, CA bundle, timeouts, pool size and attempts."""
    return SignedGet(
        client,
        config.access_key_id,
        config.secret_access_key,
        user_agent=USER_AGENT,
        ca_bundle=ca_bundle,
        connect_timeout=min(_CONNECT_TIMEOUT_S, timeout),
        read_timeout=min(_READ_TIMEOUT_S, timeout),
        connections=connections,
        max_attempts=_MAX_ATTEMPTS,
    )


class S3ClientCache:
    """`S3Objects` for a config, reusing one boto3 client per (endpoint, region, credentials).

    Building a boto3 client costs tens of milliseconds of CPU; the operator checks every bundle pointer each
    refresh cycle, so clients are shared (they are thread-safe). Keys hold a keyed digest, not the secret key.
    """

    def __init__(
        self,
        max_clients: int = 256,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        connections: int = DEFAULTS.max_concurrent,
    ) -> None:
        self._clients: OrderedDict[bytes, tuple[Any, SignedGet]] = OrderedDict()
        self._max = max_clients
        self.timeout, self.connections = timeout, connections  # `connections`: each client's pool (make_client)
        self._lock = threading.Lock()
        self._salt = os.urandom(16)

    def __call__(self, config: BootstrapConfig) -> S3Objects:
        identity = hmac.new(self._salt, digestmod=hashlib.sha256)
        for part in (config.endpoint, config.region, config.access_key_id, config.secret_access_key):
            identity.update(len(part).to_bytes(4, "big") + part.encode("utf-8"))
        key = identity.digest()
        with self._lock:
            pair = self._clients.get(key)
            if pair is None:
                client = make_client(config, timeout=self.timeout, connections=self.connections)
                getter = make_getter(client, config, timeout=self.timeout, connections=self.connections)
                pair = self._clients[key] = (client, getter)
                while len(self._clients) > self._max:
                    self._clients.popitem(last=False)
            self._clients.move_to_end(key)
        return S3Objects(config, client=pair[0], timeout=self.timeout, getter=pair[1])
