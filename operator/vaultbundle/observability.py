"""Health and metrics endpoints (/healthz, /readyz, /metrics) and process hardening for `vaultbundle run`.

/metrics names every VaultBundle (`vaultbundle_ready{namespace,name}`), so in a shared cluster it is tenant
metadata: the chart binds it to the pod IP only, and it can require a bearer token (`--metrics-token-file`, compared
in constant time) and serve TLS (`--metrics-tls-cert-file`/`--metrics-tls-key-file`). The probes stay open:
they say only "ok"/"ready" and the kubelet sends no credentials.
"""

from __future__ import annotations

import asyncio
import hmac
import resource
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .errors import Reason, VaultBundleError
from .metrics import REGISTRY


class MetricsConfigError(VaultBundleError, ValueError):
    """A metrics TLS or token file is missing, empty or unusable; the message names the flag and the fix."""

    reason = Reason.INVALID_OPERATOR_FLAG


@dataclass(frozen=True)
class MetricsSecurity:
    """How /metrics is protected: TLS files and/or a bearer token file (each optional)."""

    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    token_file: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.tls_cert_file or self.tls_key_file):
            return None
        if not (self.tls_cert_file and self.tls_key_file):
            raise MetricsConfigError("metrics TLS needs both --metrics-tls-cert-file and --metrics-tls-key-file")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise MetricsConfigError(
                f"cannot load the metrics TLS certificate {self.tls_cert_file} / key {self.tls_key_file} "
                f"({type(exc).__name__}): give a PEM certificate and its unencrypted PEM key"
            ) from None
        return context

    def token(self) -> bytes | None:
        if not self.token_file:
            return None
        try:
            token = Path(self.token_file).read_bytes().strip()
        except OSError as exc:
            raise MetricsConfigError(
                f"cannot read --metrics-token-file {self.token_file} ({type(exc).__name__})"
            ) from None
        if len(token) < 16:
            raise MetricsConfigError(f"--metrics-token-file {self.token_file} must hold a token of 16+ characters")
        return token


def disable_core_dumps() -> None:
    """A core dump of this process would contain passphrases and derived keys: never write one."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _authorized(request: web.Request, token: bytes | None) -> bool:
    if token is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)


async def serve(
    host: str, port: int, ready: Callable[[], bool], security: MetricsSecurity | None = None
) -> web.AppRunner:
    """/healthz: the event loop answers. /readyz: the operator is started and watching. /metrics: Prometheus."""
    security = security or MetricsSecurity()
    context, token = security.ssl_context(), security.token()

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ready\n") if ready() else web.Response(status=503, text="starting\n")

    async def metrics(request: web.Request) -> web.Response:
        if not _authorized(request, token):
            return web.Response(status=401, text="bearer token required\n", headers={"WWW-Authenticate": "Bearer"})
        # `?name[]=a&name[]=b` renders only those samples, as prometheus_client's own handler does: a poller of a
        # few counters does not pay for the per-VaultBundle series
        names = request.query.getall("name[]", [])
        registry = REGISTRY.restricted_registry(names) if names else REGISTRY
        # in a thread: one sample per VaultBundle makes a scrape ~80 ms of CPU at 10,000, too long for the loop
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    return runner
