"""Health probes, described as plain data so that ``status`` can re-run them from ``pids.json``.

A probe is a dict: ``{"kind": "tcp", "port": P, "host": H?}`` (H defaults to 127.0.0.1) or
``{"kind": "http", "url": U, "status": [200], "ca": CAFILE?, "cert": CRT?, "key": KEY?, "body": TEXT?}``.
"""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from typing import Any

Probe = dict[str, Any]


def tcp_probe(port: int, host: str | None = None) -> Probe:
    return {"kind": "tcp", "port": port} | ({"host": host} if host else {})


def http_probe(
    url: str,
    *,
    status: tuple[int, ...] = (200,),
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    body: str | None = None,
) -> Probe:
    probe: Probe = {"kind": "http", "url": url, "status": list(status)}
    for name, value in (("ca", ca), ("cert", cert), ("key", key), ("body", body)):
        if value is not None:
            probe[name] = value
    return probe


def check(probe: Probe, timeout: float = 2.0) -> tuple[bool, str]:
    """Run one probe. Returns (healthy, short reason)."""
    try:
        if probe["kind"] == "tcp":
            with socket.create_connection((probe.get("host", "127.0.0.1"), probe["port"]), timeout=timeout):
                return True, "accepting connections"
        if probe["kind"] == "http":
            return _check_http(probe, timeout)
    except (OSError, ssl.SSLError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    raise ValueError(f"unknown probe kind {probe['kind']!r}")


def _check_http(probe: Probe, timeout: float) -> tuple[bool, str]:
    context = None
    if probe["url"].startswith("https:"):
        context = ssl.create_default_context(cafile=probe.get("ca"))
        if probe.get("cert"):
            context.load_cert_chain(probe["cert"], probe.get("key"))
    request = urllib.request.Request(probe["url"], headers={"User-Agent": "vaultbundle-testbed"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status, text = response.status, response.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read(4096).decode(errors="replace")
    if status not in probe["status"]:
        return False, f"HTTP {status}"
    if "body" in probe and probe["body"] not in text:
        return False, f"HTTP {status} without {probe['body']!r} in the body"
    return True, f"HTTP {status}"
