"""Small helpers shared by the end-to-end tests: polling, loopback HTTP GETs, Prometheus text."""

from __future__ import annotations

import base64
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll *check* every 0.2 s until it returns something truthy; fail the test after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def http_get(url: str) -> str:
    """The body of a GET to a loopback server, or "" when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum a Prometheus metric family, keeping samples whose labels include *labels*."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line[len(name)] not in " {":
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def secret_data(core: k8s.CoreV1Api, namespace: str, name: str) -> dict[str, str] | None:
    """A Secret's decoded data, or None when it does not exist."""
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
