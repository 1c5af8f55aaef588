"""Issue #13 item 3, H2: a slow or lying S3 endpoint cannot hold a request past its deadline.

A local HTTP server plays the tenant's endpoint (only 127.0.0.1): it trickles a body one byte per second,
stalls after the headers, omits `Content-Length`, or declares more than the object limit. The real boto3
client and `S3Objects` talk to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import time
from collections.abc import Callable, Iterator

import pytest

from tests.kit import CONFIG
from tests.kit.local_http import serving
from vaultbundle import bundles
from vaultbundle.bundles import Layout, Pointer
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.errors import BundleCorruptError, S3UnreachableError
from vaultbundle.remote import MAX_OBJECT_BYTES, S3Objects

Behaviour = Callable[[http.server.BaseHTTPRequestHandler], None]


def _headers(handler: http.server.BaseHTTPRequestHandler, length: int | None) -> None:
    handler.send_response(200)
    if length is None:
        handler.send_header("Transfer-Encoding", "chunked")
    else:
        handler.send_header("Content-Length", str(length))
    handler.end_headers()
    handler.wfile.flush()


def _trickle(handler: http.server.BaseHTTPRequestHandler) -> None:
    _headers(handler, 1000)
    for _ in range(1000):  # one byte per second
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(1)


def _stall(handler: http.server.BaseHTTPRequestHandler) -> None:
    _headers(handler, 1000)
    time.sleep(60)


def _chunked(handler: http.server.BaseHTTPRequestHandler) -> None:
    _headers(handler, None)
    handler.wfile.write(b"4\r\nRQE1\r\n0\r\n\r\n")


def _too_large(handler: http.server.BaseHTTPRequestHandler) -> None:
    _headers(handler, MAX_OBJECT_BYTES + 1)
    time.sleep(60)  # the body never comes: the size alone must refuse it


@pytest.fixture
def endpoint() -> Iterator[Callable[[Behaviour], S3Objects]]:
    servers = contextlib.ExitStack()

    def start(behaviour: Behaviour, timeout: float = 2.0) -> S3Objects:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    behaviour(self)
                except OSError:  # the client gave up: that is what we test
                    pass

            def log_message(self, *_: object) -> None:
                pass

        config = dataclasses.replace(CONFIG, endpoint=servers.enter_context(serving(Handler)))
        return S3Objects(config, timeout=timeout)

    with servers:
        yield start


def test_a_server_trickling_one_byte_a_second_cannot_hold_a_get_past_the_deadline(
    endpoint: Callable[[Behaviour], S3Objects],
) -> None:
    objects = endpoint(_trickle)
    started = time.monotonic()
    with pytest.raises(S3UnreachableError, match="deadline"):
        objects.get("p/latest")
    assert time.monotonic() - started < 3.5  # deadline 2 s; botocore's own read timeout alone allowed 1000 s


def test_a_server_stalling_after_the_headers_is_cut_at_the_deadline(endpoint: Callable[[Behaviour], S3Objects]) -> None:
    objects = endpoint(_stall)
    started = time.monotonic()
    with pytest.raises(S3UnreachableError, match="deadline"):
        objects.get("p/latest")
    assert time.monotonic() - started < 3.5  # not botocore's 30 s read timeout times 3 attempts


def test_a_bundle_object_must_declare_its_length(endpoint: Callable[[Behaviour], S3Objects]) -> None:
    objects = endpoint(_chunked)
    with pytest.raises(BundleCorruptError, match="without a Content-Length"):
        bundles.fetch(objects, objects_config(objects), Pointer(Layout.CLI, "20260101-000000"))
    assert objects.get("p/latest") is not None  # small objects (pointers) may be chunked: their cap is 4 KiB


def test_a_declared_size_over_the_limit_is_refused_before_reading(endpoint: Callable[[Behaviour], S3Objects]) -> None:
    objects = endpoint(_too_large)
    started = time.monotonic()
    with pytest.raises(BundleCorruptError, match=f"the limit is {MAX_OBJECT_BYTES}"):
        bundles.fetch(objects, objects_config(objects), Pointer(Layout.CLI, "20260101-000000"))
    assert time.monotonic() - started < 1.5


def objects_config(objects: S3Objects) -> BootstrapConfig:
    return dataclasses.replace(CONFIG, bucket=objects.bucket)
