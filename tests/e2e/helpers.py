"""Small helpers shared by the end-to-end tests: polling, loopback HTTP GETs, Prometheus text, the test bed's
Secrets Manager (moto)."""

from __future__ import annotations

import base64
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException


def keyvault_admin(testbed: dict[str, str]) -> Any:
    """A SecretClient on the test bed's Key Vault with a static token (the vault accepts any non-Entra token)."""
    import time as clock

    from azure.core.credentials import AccessToken
    from azure.keyvault.secrets import SecretClient

    class Static:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("admin-view", int(clock.time()) + 3600)

    return SecretClient(
        testbed["AZURE_KEYVAULT_URL"],
        Static(),
        api_version=testbed["AZURE_KEYVAULT_API_VERSION"],
        verify_challenge_resource=False,
        connection_verify=testbed["AZURE_KEYVAULT_CA_FILE"],
    )


def secrets_manager(testbed: dict[str, str]) -> Any:
    """A boto3 Secrets Manager client for the test bed's moto server."""
    import boto3

    return boto3.client(
        "secretsmanager",
        endpoint_url=testbed["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=testbed["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=testbed["AWS_SECRET_ACCESS_KEY"],
    )


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


def aws_client(testbed: dict[str, str], service: str) -> Any:
    """A boto3 client of *service* on the test bed's moto (us-east-1, the bed's static keys)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=testbed["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=testbed["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=testbed["AWS_SECRET_ACCESS_KEY"],
    )


def secret_data(core: k8s.CoreV1Api, namespace: str, name: str) -> dict[str, str] | None:
    """A Secret's decoded data, or None when it does not exist."""
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
