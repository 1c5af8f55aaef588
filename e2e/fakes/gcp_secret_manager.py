"""Protocol-faithful fake of Google Cloud Secret Manager v1 (gRPC), for end-to-end tests.

The official ``google-cloud-secret-manager`` client talks to it unmodified::

    client = SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(
        channel=grpc.insecure_channel("127.0.0.1:PORT")))

Run it:  ``python -m e2e.fakes.gcp_secret_manager --host 127.0.0.1 --port PORT``
In-process: ``server = start_in_process()`` then ``server.port``, ``server.state.snapshot()``,
``server.state.calls["AddSecretVersion"]``, ``server.stop()``.

Behaviour follows the public API reference: ``versions/latest`` is the most recently *created* version
(accessing it while it is disabled/destroyed fails with FAILED_PRECONDITION, as on GCP); etag mismatches
give FAILED_PRECONDITION; ``data_crc32c`` sent by the client is verified. Optional ``--project-number
ID=NUMBER`` makes returned names use the project number, as the real API does. Not implemented: IAM
methods, Pub/Sub topics, expiry/TTL enforcement, delayed version destruction. Payloads are never logged.

The plaintext port takes anonymous calls. With ``--tls-port`` (and ``--cert``/``--key``) a TLS port also
serves, where every call needs ``authorization: Bearer <token>`` issued by the STS / IAM Credentials fake
(``e2e/fakes/gcp_sts.py``, on ``--https-port``; tokens verified against the kube-apiserver given with
``--kube-*``): unknown tokens get UNAUTHENTICATED, calls outside the token's project and name prefix
PERMISSION_DENIED, and ListSecrets shows only the secrets in its prefix.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import logging
import re
import shlex
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, TypeVar

import google_crc32c
import grpc
from google.cloud.secretmanager_v1 import types as t
from google.protobuf import empty_pb2

from e2e.fakes import gcp_sts
from e2e.fakes.federation import TokenReviewer, kube_access, kube_access_arguments

log = logging.getLogger("fake-gcp-secret-manager")

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
WRITE_METHODS = frozenset(
    {
        "CreateSecret",
        "UpdateSecret",
        "DeleteSecret",
        "AddSecretVersion",
        "DisableSecretVersion",
        "EnableSecretVersion",
        "DestroySecretVersion",
    }
)
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PAGE_SIZE = 25000
ETAG_MISMATCH = (
    "The etag provided in the request does not match the resource's current etag. "
    "Please retry the whole read-modify-write with exponential backoff."
)
UPDATABLE_MAPS = ("labels", "annotations", "version_aliases")
UPDATABLE_MESSAGES = ("expire_time", "ttl", "rotation", "version_destroy_ttl", "customer_managed_encryption")

_PARENT = re.compile(r"projects/[^/]+(?:/locations/[^/]+)?")
_SECRET = re.compile(r"(projects/[^/]+(?:/locations/[^/]+)?)/secrets/([^/]+)")
_VERSION = re.compile(r"(projects/[^/]+(?:/locations/[^/]+)?/secrets/[^/]+)/versions/([^/]+)")
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
# The real API also allows Unicode lowercase letters; ASCII is enough for our tests.
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_ANNOTATION_KEY = re.compile(r"(?:[a-z0-9.-]{1,253}/)?[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_FILTER_TERM = re.compile(r"(-)?([A-Za-z_][\w.-]*)(=|:)(.*)", re.S)

State = t.SecretVersion.State
T = TypeVar("T")


class RpcFailure(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _invalid(msg: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, msg)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Version:
    number: int
    data: bytes | None
    crc32c: int
    create_time: dt.datetime
    etag: str
    client_checksum: bool
    state: int = State.ENABLED  # a SecretVersion.State value
    destroy_time: dt.datetime | None = None

    def to_proto(self, secret_name: str) -> t.SecretVersion:
        return t.SecretVersion(
            name=f"{secret_name}/versions/{self.number}",
            create_time=self.create_time,
            destroy_time=self.destroy_time,
            state=self.state,
            etag=self.etag,
            client_specified_payload_checksum=self.client_checksum,
            replication_status=t.ReplicationStatus(automatic=t.ReplicationStatus.AutomaticStatus()),
        )


@dataclass
class _Secret:
    proto: t.Secret  # stored resource (name, labels, annotations, replication, etag, create_time, ...)
    versions: dict[int, _Version] = field(default_factory=dict)


def _copy(msg: T) -> T:
    cls = type(msg)
    return cls.deserialize(cls.serialize(msg))  # type: ignore[attr-defined,no-any-return]


def _validate_labels(labels: Mapping[str, str], annotations: Mapping[str, str]) -> None:
    if len(labels) > 64:
        raise _invalid("A secret may have at most 64 labels.")
    for k, v in labels.items():
        if not _LABEL_KEY.fullmatch(k) or not _LABEL_VALUE.fullmatch(v):
            raise _invalid(
                f"Invalid label {k!r}={v!r}: keys must match [a-z][a-z0-9_-]{{0,62}} and values [a-z0-9_-]{{0,63}}."
            )
    for k in annotations:
        if not _ANNOTATION_KEY.fullmatch(k):
            raise _invalid(f"Invalid annotation key {k!r}.")
    if sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items()) > 16 * 1024:
        raise _invalid("Total size of annotations must be less than 16KiB.")


def _compile_filter(text: str, fields: Callable[[Any, str], str | None]) -> Callable[[Any], bool]:
    """A small subset of the Google list-filter syntax: implicitly AND-ed terms ``field=value``,
    ``field:substring``, ``labels.KEY:*`` (presence), ``labels:KEY``, with ``NOT``/``-`` negation."""
    try:
        tokens = shlex.split(text)
    except ValueError as e:
        raise _invalid(f"Invalid filter {text!r}: {e}") from None
    preds: list[Callable[[Any], bool]] = []
    negate = False
    for tok in tokens:
        if tok == "AND":
            continue
        if tok == "NOT":
            negate = True
            continue
        m = _FILTER_TERM.fullmatch(tok)
        if tok == "OR" or not m:
            raise _invalid(f"Unsupported filter term {tok!r} in {text!r} (the fake supports AND/NOT only).")
        neg = negate or bool(m.group(1))
        negate = False
        fname, op, value = m.group(2), m.group(3), m.group(4)

        def pred(obj: Any, fname: str = fname, op: str = op, value: str = value, neg: bool = neg) -> bool:
            if fname == "labels" and op == ":":
                got: str | None = "" if value in obj.labels else None
                hit = got is not None
            else:
                got = fields(obj, fname)
                if op == "=":
                    hit = got is not None and got == value
                else:
                    hit = got is not None and (value == "*" or value.lower() in got.lower())
            return hit != neg

        preds.append(pred)
    return lambda obj: all(p(obj) for p in preds)


def _paginate(items: Sequence[T], page_size: int, page_token: str) -> tuple[Sequence[T], str]:
    if page_size < 0:
        raise _invalid("page_size must be non-negative.")
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode()).decode().removeprefix("offset:"))
        except (ValueError, binascii.Error):
            raise _invalid(f"Invalid page_token {page_token!r}.") from None
    size = min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    page = items[start : start + size]
    more = start + size < len(items)
    return page, base64.urlsafe_b64encode(f"offset:{start + size}".encode()).decode() if more else ""


class SecretManagerState:
    """Thread-safe in-memory store plus call counters. ``calls`` counts every RPC by method name."""

    def __init__(self, project_numbers: Mapping[str, str] | None = None) -> None:
        self._lock = threading.RLock()
        self._secrets: dict[str, _Secret] = {}
        self._project_numbers = dict(project_numbers or {})
        self._last_etag = 0
        self.calls: Counter[str] = Counter()

    # ---- test-only helpers -------------------------------------------------------------------
    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Plain-python copy of all state: {secret_name: {labels, annotations, etag, versions: {...}}}."""
        with self._lock:
            return {
                name: {
                    "labels": dict(s.proto.labels),
                    "annotations": dict(s.proto.annotations),
                    "etag": s.proto.etag,
                    "create_time": s.proto.create_time,
                    "versions": {
                        v.number: {"state": State(v.state).name, "data": v.data, "etag": v.etag}
                        for v in s.versions.values()
                    },
                }
                for name, s in sorted(self._secrets.items())
            }

    def record_call(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1

    def write_calls(self) -> dict[str, int]:
        with self._lock:
            return {m: n for m, n in self.calls.items() if m in WRITE_METHODS}

    def reset(self) -> None:
        with self._lock:
            self._secrets.clear()
            self.calls.clear()

    # ---- helpers -----------------------------------------------------------------------------
    def _canon(self, name: str) -> str:
        if name.startswith("projects/"):
            _, project, *rest = name.split("/")
            project = self._project_numbers.get(project, project)
            return "/".join(["projects", project, *rest])
        return name

    def _etag(self) -> str:
        self._last_etag = max(self._last_etag + 1, time.time_ns() // 1000)
        return f'"{self._last_etag:x}"'

    def _secret(self, name: str) -> _Secret:
        name = self._canon(name)
        if not _SECRET.fullmatch(name):
            raise _invalid(f"Invalid resource field value in the request: secret name {name!r}.")
        s = self._secrets.get(name)
        if s is None:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, f"Secret [{name}] not found.")
        return s

    def _version(self, name: str) -> tuple[_Secret, _Version]:
        m = _VERSION.fullmatch(self._canon(name))
        if not m:
            raise _invalid(f"Invalid resource field value in the request: version name {name!r}.")
        s = self._secret(m.group(1))
        ref = m.group(2)
        if ref == "latest":
            if not s.versions:
                raise RpcFailure(grpc.StatusCode.NOT_FOUND, f"Secret [{s.proto.name}] not found or has no versions.")
            return s, s.versions[max(s.versions)]
        number = s.proto.version_aliases.get(ref) if not ref.isdigit() else int(ref)
        if number is None or number not in s.versions:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, f"Secret Version [{s.proto.name}/versions/{ref}] not found.")
        return s, s.versions[number]

    @staticmethod
    def _check_etag(given: str, current: str) -> None:
        if given and given != current:
            raise RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, ETAG_MISMATCH)

    # ---- RPCs --------------------------------------------------------------------------------
    def CreateSecret(self, req: t.CreateSecretRequest) -> t.Secret:
        parent = self._canon(req.parent)
        if not _PARENT.fullmatch(parent):
            raise _invalid(f"Invalid parent {req.parent!r}.")
        if not _SECRET_ID.fullmatch(req.secret_id):
            raise _invalid(f"Invalid secret_id {req.secret_id!r}: must match [A-Za-z0-9_-]{{1,255}}.")
        repl = req.secret.replication
        if "/locations/" not in parent and not ("automatic" in repl or "user_managed" in repl):
            raise _invalid("Secret.replication must be specified.")
        if "user_managed" in repl and not repl.user_managed.replicas:
            raise _invalid("Secret.replication.user_managed.replicas must not be empty.")
        _validate_labels(req.secret.labels, req.secret.annotations)
        name = f"{parent}/secrets/{req.secret_id}"
        with self._lock:
            if name in self._secrets:
                raise RpcFailure(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{name}] already exists.")
            proto = _copy(req.secret)
            proto.name, proto.create_time, proto.etag = name, _now(), self._etag()
            self._secrets[name] = _Secret(proto)
            return _copy(proto)

    def GetSecret(self, req: t.GetSecretRequest) -> t.Secret:
        with self._lock:
            return _copy(self._secret(req.name).proto)

    def UpdateSecret(self, req: t.UpdateSecretRequest) -> t.Secret:
        paths = list(req.update_mask.paths) if req.update_mask else []
        if not paths:
            raise _invalid("update_mask is required.")
        bad = [p for p in paths if p not in UPDATABLE_MAPS + UPDATABLE_MESSAGES + ("topics",)]
        if bad:
            raise _invalid(f"update_mask contains fields that cannot be updated: {', '.join(bad)}.")
        with self._lock:
            s = self._secret(req.secret.name)
            self._check_etag(req.secret.etag, s.proto.etag)
            updated = _copy(s.proto)
            dst, src = t.Secret.pb(updated), t.Secret.pb(req.secret)
            for p in paths:
                if p in UPDATABLE_MAPS:
                    getattr(dst, p).clear()
                    getattr(dst, p).update(getattr(src, p))
                elif p == "topics":
                    del dst.topics[:]
                    dst.topics.extend(src.topics)
                else:
                    dst.ClearField(p)
                    if src.HasField(p):
                        getattr(dst, p).CopyFrom(getattr(src, p))
            _validate_labels(updated.labels, updated.annotations)
            updated.etag = self._etag()
            s.proto = updated
            return _copy(updated)

    def DeleteSecret(self, req: t.DeleteSecretRequest) -> empty_pb2.Empty:
        with self._lock:
            s = self._secret(req.name)
            self._check_etag(req.etag, s.proto.etag)
            del self._secrets[s.proto.name]
            return empty_pb2.Empty()

    def ListSecrets(self, req: t.ListSecretsRequest) -> t.ListSecretsResponse:
        parent = self._canon(req.parent)
        if not _PARENT.fullmatch(parent):
            raise _invalid(f"Invalid parent {req.parent!r}.")

        def field_of(s: t.Secret, f: str) -> str | None:
            if f.startswith("labels."):
                return s.labels.get(f[len("labels.") :])
            if f.startswith("annotations."):
                return s.annotations.get(f[len("annotations.") :])
            if f == "name":
                return s.name
            raise _invalid(f"Unsupported filter field {f!r}.")

        keep = _compile_filter(req.filter, field_of)
        with self._lock:
            items = [
                _copy(s.proto)
                for n, s in sorted(self._secrets.items())
                if n.startswith(parent + "/secrets/") and keep(s.proto)
            ]
        page, token = _paginate(items, req.page_size, req.page_token)
        return t.ListSecretsResponse(secrets=list(page), next_page_token=token, total_size=len(items))

    def AddSecretVersion(self, req: t.AddSecretVersionRequest) -> t.SecretVersion:
        data = req.payload.data
        if len(data) > MAX_PAYLOAD_BYTES:
            raise _invalid(f"Secret payload data is larger than the maximum of {MAX_PAYLOAD_BYTES} bytes.")
        crc = google_crc32c.value(data)
        client_checksum = "data_crc32c" in req.payload
        if client_checksum and req.payload.data_crc32c != crc:
            raise _invalid("Checksum mismatch: the data_crc32c in the request does not match the payload data.")
        with self._lock:
            s = self._secret(req.parent)
            number = max(s.versions, default=0) + 1
            v = _Version(number, bytes(data), crc, _now(), self._etag(), client_checksum)
            s.versions[number] = v
            return v.to_proto(s.proto.name)

    def GetSecretVersion(self, req: t.GetSecretVersionRequest) -> t.SecretVersion:
        with self._lock:
            s, v = self._version(req.name)
            return v.to_proto(s.proto.name)

    def AccessSecretVersion(self, req: t.AccessSecretVersionRequest) -> t.AccessSecretVersionResponse:
        with self._lock:
            s, v = self._version(req.name)
            vname = f"{s.proto.name}/versions/{v.number}"
            if v.state != State.ENABLED:
                raise RpcFailure(
                    grpc.StatusCode.FAILED_PRECONDITION, f"Secret Version [{vname}] is in {State(v.state).name} state."
                )
            assert v.data is not None
            return t.AccessSecretVersionResponse(name=vname, payload=t.SecretPayload(data=v.data, data_crc32c=v.crc32c))

    def ListSecretVersions(self, req: t.ListSecretVersionsRequest) -> t.ListSecretVersionsResponse:
        def field_of(v: t.SecretVersion, f: str) -> str | None:
            if f == "state":
                return str(State(v.state).name)
            if f == "name":
                return v.name
            raise _invalid(f"Unsupported filter field {f!r}.")

        keep = _compile_filter(req.filter, field_of)
        with self._lock:
            s = self._secret(req.parent)
            protos = [s.versions[n].to_proto(s.proto.name) for n in sorted(s.versions, reverse=True)]
        items = [p for p in protos if keep(p)]
        page, token = _paginate(items, req.page_size, req.page_token)
        return t.ListSecretVersionsResponse(versions=list(page), next_page_token=token, total_size=len(items))

    def _transition(self, name: str, etag: str, target: int) -> t.SecretVersion:
        with self._lock:
            s, v = self._version(name)
            self._check_etag(etag, v.etag)
            if v.state == State.DESTROYED:
                raise RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, "SecretVersion.state is already DESTROYED.")
            v.state, v.etag = target, self._etag()
            if target == State.DESTROYED:
                v.data, v.destroy_time = None, _now()
            return v.to_proto(s.proto.name)

    def DisableSecretVersion(self, req: t.DisableSecretVersionRequest) -> t.SecretVersion:
        return self._transition(req.name, req.etag, State.DISABLED)

    def EnableSecretVersion(self, req: t.EnableSecretVersionRequest) -> t.SecretVersion:
        return self._transition(req.name, req.etag, State.ENABLED)

    def DestroySecretVersion(self, req: t.DestroySecretVersionRequest) -> t.SecretVersion:
        return self._transition(req.name, req.etag, State.DESTROYED)


def _short_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# method name -> (request type, response type); response type None means google.protobuf.Empty
_METHODS: dict[str, tuple[Any, Any]] = {
    "CreateSecret": (t.CreateSecretRequest, t.Secret),
    "GetSecret": (t.GetSecretRequest, t.Secret),
    "UpdateSecret": (t.UpdateSecretRequest, t.Secret),
    "DeleteSecret": (t.DeleteSecretRequest, None),
    "ListSecrets": (t.ListSecretsRequest, t.ListSecretsResponse),
    "AddSecretVersion": (t.AddSecretVersionRequest, t.SecretVersion),
    "GetSecretVersion": (t.GetSecretVersionRequest, t.SecretVersion),
    "AccessSecretVersion": (t.AccessSecretVersionRequest, t.AccessSecretVersionResponse),
    "ListSecretVersions": (t.ListSecretVersionsRequest, t.ListSecretVersionsResponse),
    "DisableSecretVersion": (t.DisableSecretVersionRequest, t.SecretVersion),
    "EnableSecretVersion": (t.EnableSecretVersionRequest, t.SecretVersion),
    "DestroySecretVersion": (t.DestroySecretVersionRequest, t.SecretVersion),
}


_RESOURCE = re.compile(r"projects/([^/]+)(?:/locations/[^/]+)?(?:/secrets/([^/]+))?(?:/versions/[^/]+)?")


def _resource(method: str, request: Any) -> tuple[str, str | None]:
    """(project, secret ID or None) a request touches."""
    if method == "CreateSecret":
        name = f"{request.parent}/secrets/{request.secret_id}"
    elif method == "UpdateSecret":
        name = request.secret.name
    else:
        name = getattr(request, "name", "") or request.parent
    match = _RESOURCE.fullmatch(name)
    return (match.group(1), match.group(2)) if match else ("", None)


def _authorize(federation: gcp_sts.GoogleFederation, method: str, request: Any, context: Any) -> gcp_sts.Grant:
    """The caller's grant from its bearer token; RpcFailure when it may not make this call."""
    metadata = dict(context.invocation_metadata())
    token = str(metadata.get("authorization", "")).removeprefix("Bearer ")
    grant = federation.grant_for(token)
    if grant is None and not federation.known(token):
        raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "Request had invalid authentication credentials.")
    project, secret_id = _resource(method, request)
    if (
        grant is None
        or project != grant.project
        or (secret_id is not None and not secret_id.startswith(grant.name_prefix))
    ):
        raise RpcFailure(
            grpc.StatusCode.PERMISSION_DENIED,
            f"Permission denied for {method} on resource (or it may not exist).",
        )
    return grant


def _secure(context: Any) -> bool:
    return list(context.auth_context().get("transport_security_type") or []) == [b"ssl"]


def _generic_handler(
    state: SecretManagerState, federation: gcp_sts.GoogleFederation | None = None
) -> grpc.GenericRpcHandler:
    def wrap(method: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        impl = getattr(state, method)

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            state.record_call(method)
            try:
                grant = None
                if federation is not None and _secure(context):
                    grant = _authorize(federation, method, request, context)
                response = impl(request)
                if grant is not None and method == "ListSecrets":
                    mine = [s for s in response.secrets if _short_id(s.name).startswith(grant.name_prefix)]
                    response = t.ListSecretsResponse(secrets=mine, total_size=len(mine))
            except RpcFailure as e:
                log.info("%s -> %s: %s", method, e.code.name, e.message)
                context.abort(e.code, e.message)
            log.debug("%s -> OK", method)
            return response

        return handle

    handlers = {}
    for method, (req_cls, resp_cls) in _METHODS.items():
        handlers[method] = grpc.unary_unary_rpc_method_handler(
            wrap(method),
            request_deserializer=req_cls.deserialize,
            response_serializer=resp_cls.serialize if resp_cls else empty_pb2.Empty.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


class FakeSecretManagerServer:
    """A gRPC server (own thread pool) serving :class:`SecretManagerState`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        project_numbers: Mapping[str, str] | None = None,
        max_workers: int = 8,
        tls: tuple[str, str] | None = None,
        tls_port: int = 0,
        federation: gcp_sts.GoogleFederation | None = None,
    ) -> None:
        self.state = SecretManagerState(project_numbers)
        self.federation = federation
        # so_reuseport=0: a second fake on the same port must fail loudly instead of sharing it.
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers), options=[("grpc.so_reuseport", 0)]
        )
        self._server.add_generic_rpc_handlers((_generic_handler(self.state, federation),))
        bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self.host = host
        self.port = self._server.add_insecure_port(f"{bind_host}:{port}")
        if not self.port:
            raise RuntimeError(f"could not bind {host}:{port}")
        self.address = f"{bind_host}:{self.port}"
        self.tls_port = 0
        if tls is not None:  # (cert file, key file): a TLS port where every call needs a federated token
            with open(tls[0], "rb") as cert, open(tls[1], "rb") as key:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            self.tls_port = self._server.add_secure_port(f"{bind_host}:{tls_port}", credentials)
            if not self.tls_port:
                raise RuntimeError(f"could not bind {host}:{tls_port} (TLS)")

    def start(self) -> FakeSecretManagerServer:
        self._server.start()
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        self._server.stop(grace).wait()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout))

    def __enter__(self) -> FakeSecretManagerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_process(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> FakeSecretManagerServer:
    """Start the fake on background threads; ``.port`` is the bound port. Call ``.stop()`` when done."""
    return FakeSecretManagerServer(host, port, **kwargs).start()


def make_client(address: str) -> Any:
    """An official ``SecretManagerServiceClient`` wired to the fake at ``host:port``."""
    from google.cloud import secretmanager
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    return secretmanager.SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(address))
    )


def _parse_project_numbers(values: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in values:
        pid, sep, num = item.partition("=")
        if not sep or not num.isdigit():
            raise argparse.ArgumentTypeError(f"--project-number expects ID=NUMBER, got {item!r}")
        out[pid] = num
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    ap.add_argument(
        "--project-number",
        action="append",
        default=[],
        metavar="ID=NUMBER",
        help="return names under projects/NUMBER for project ID, like the real API",
    )
    ap.add_argument("--tls-port", type=int, default=0, help="also serve TLS here (needs --cert, --key)")
    ap.add_argument("--https-port", type=int, default=0, help="the STS / IAM Credentials fake over HTTPS")
    ap.add_argument("--cert", default="", help="PEM serving certificate for the TLS and HTTPS ports")
    ap.add_argument("--key", default="", help="its private key")
    kube_access_arguments(ap)
    ap.add_argument("-v", "--verbose", action="store_true", help="log every call (never payloads)")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    federation = gcp_sts.GoogleFederation(TokenReviewer(kube_access(args))) if args.cert else None
    server = FakeSecretManagerServer(
        args.host,
        args.port,
        project_numbers=_parse_project_numbers(args.project_number),
        tls=(args.cert, args.key) if args.tls_port else None,
        tls_port=args.tls_port,
        federation=federation,
    ).start()
    if federation is not None and args.https_port:
        gcp_sts.serve(args.host, args.https_port, args.cert, args.key, federation)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"fake GCP Secret Manager listening on {server.address}", flush=True)
    stop.wait()
    server.stop(grace=2.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
