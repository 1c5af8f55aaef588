"""Health and metrics endpoints (/healthz, /readyz, /metrics) and process hardening for `vaultbundle run`."""

from __future__ import annotations

import resource
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import REGISTRY


def disable_core_dumps() -> None:
    """A core dump of this process would contain passphrases and derived keys: never write one."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


async def serve(host: str, port: int, ready: Callable[[], bool]) -> web.AppRunner:
    """/healthz: the event loop answers. /readyz: the operator is started and watching. /metrics: Prometheus."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ready\n") if ready() else web.Response(status=503, text="starting\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
