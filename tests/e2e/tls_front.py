"""A TLS front for a plain-HTTP server of the test bed (OpenBao listens on http://127.0.0.1): a ClusterTargetStore's
address must be https, so the operator talks TLS to this front, which forwards the bytes to the server and records
the request line of every HTTP request it passes on (a recording server: "no request reached Vault" is checkable),
and the bytes each connection sent (`streams()`: headers and bodies, e.g. which key signed a request).

Serves the bed's 127.0.0.1 certificate (signed by TESTBED_CA_FILE). Test-only; one thread per connection.
"""

from __future__ import annotations

import contextlib
import re
import socket
import socketserver
import ssl
import threading
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

_REQUEST_LINE = re.compile(rb"(GET|HEAD|POST|PUT|PATCH|DELETE|LIST|OPTIONS) (\S+) HTTP/1\.[01]")
_MAX_PENDING = 1 << 16
_MAX_STREAM = 1 << 22  # bytes kept per connection


class _Forward(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            client = self.server.context.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that does not trust the certificate: nothing was forwarded
        with client, socket.create_connection(("127.0.0.1", self.server.upstream), timeout=30) as upstream:
            back = threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True)
            back.start()
            self._pipe(client, upstream, True)
            back.join(30)

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        pending = b""
        stream = bytearray()
        if record:
            with self.server.lock:
                self.server.streams.append(stream)
        try:
            while data := source.recv(65536):
                if record:
                    pending = self._record(pending + data)
                    stream += data[: max(0, _MAX_STREAM - len(stream))]
                sink.sendall(data)
        except OSError:
            pass
        finally:  # one side is done: end both, so that the other direction's recv returns too
            for sock in (source, sink):  # the plain socket's shutdown: an SSLSocket's would drop its TLS state
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _record(self, stream: bytes) -> bytes:
        *lines, rest = stream.split(b"\r\n")
        for line in lines:
            match = _REQUEST_LINE.fullmatch(line)
            if match:
                with self.server.lock:
                    self.server.requests.append((match.group(1).decode(), match.group(2).decode()))
        return rest[-_MAX_PENDING:]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: int, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream, self.context = upstream, context
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.streams: list[bytearray] = []


class TlsFront:
    """`with TlsFront(upstream_port, cert, key) as front:` serve `front.url`; `front.requests()` = what went on."""

    def __init__(self, upstream_port: int, cert: Path, key: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self._server = _Server(upstream_port, context)
        self._thread = threading.Thread(target=self._server.serve_forever, name="tls-front", daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def requests(self) -> list[tuple[str, str]]:
        with self._server.lock:
            return list(self._server.requests)

    def streams(self) -> list[bytes]:
        """What each connection sent, in order of connection (at most 4 MiB each)."""
        with self._server.lock:
            return [bytes(stream) for stream in self._server.streams]

    def __enter__(self) -> TlsFront:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def bed_aws_front(testbed: dict[str, str]) -> TlsFront:
    """A front for the bed's moto (`AWS_ENDPOINT_URL`) serving the bed's 127.0.0.1 certificate; use it with `with`."""
    pki = Path(testbed["TESTBED_DIR"]) / "pki"
    port = urlsplit(testbed["AWS_ENDPOINT_URL"]).port
    assert port is not None
    return TlsFront(port, pki / "keyvault.crt", pki / "keyvault.key")
