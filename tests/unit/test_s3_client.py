"""The boto3 S3 client the operator builds (`remote.make_client`): what it sends and what it skips per request.

A local HTTP server plays the S3 endpoint (127.0.0.1 only) and records each request's headers; the real
boto3 client and `S3Objects` talk to it.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
from collections.abc import Iterator

import pytest

from tests.kit import CONFIG
from vaultbundle import __version__
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.remote import USER_AGENT, S3ClientCache, S3Objects, make_client
from vaultbundle.settings import DEFAULTS

LAST_MODIFIED = "Wed, 02 Dec 2026 10:00:00 GMT"


@pytest.fixture
def server() -> Iterator[tuple[BootstrapConfig, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers.items()))
            body = b"20260101-000000"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", '"e1"')
            self.send_header("Last-Modified", LAST_MODIFIED)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield dataclasses.replace(CONFIG, endpoint=f"http://127.0.0.1:{httpd.server_address[1]}"), seen
    httpd.shutdown()
    httpd.server_close()


def test_requests_carry_our_user_agent(server: tuple[BootstrapConfig, list[dict[str, str]]]) -> None:
    config, seen = server
    stored = S3Objects(config).get("p/latest")
    assert stored is not None and stored.body == b"20260101-000000" and stored.etag == '"e1"'
    assert seen[0]["User-Agent"].startswith(f"vaultbundle/{__version__}")
    assert seen[0]["User-Agent"].startswith(USER_AGENT)
    assert "Authorization" in seen[0]  # still SigV4-signed


def test_response_timestamps_are_left_as_text(server: tuple[BootstrapConfig, list[dict[str, str]]]) -> None:
    """Nothing reads LastModified; parsing it (dateutil) was a measurable part of every GET's CPU."""
    config, _ = server
    response = make_client(config).get_object(Bucket=config.bucket, Key="p/latest")
    assert response["LastModified"] == LAST_MODIFIED
    response["Body"].close()


def test_clients_built_by_the_cache_are_the_same_kind(server: tuple[BootstrapConfig, list[dict[str, str]]]) -> None:
    config, seen = server
    objects = S3ClientCache()(config)
    assert objects.get("p/latest") is not None
    assert seen[-1]["User-Agent"].startswith(USER_AGENT)


def test_the_connection_pool_follows_max_concurrent(server: tuple[BootstrapConfig, list[dict[str, str]]]) -> None:
    """One kept-alive connection per concurrent reconcile sharing the client (`--max-concurrent`), not a fixed 16."""
    config, _ = server
    objects = S3ClientCache(connections=48)(config)
    assert objects._client.meta.config.max_pool_connections == 48
    assert make_client(config).meta.config.max_pool_connections == DEFAULTS.max_concurrent
