"""A real S3 API server on loopback: the test bed's (when up) or a moto server started for this session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.conftest import REPO
from vaultbundle.crypto import configblob
from vaultbundle.crypto.configblob import BootstrapConfig

ACCESS_KEY, SECRET_KEY, REGION = "testbed", "testbed-secret", "us-east-1"


def _testbed_endpoint() -> str | None:
    env_file = Path(os.environ.get("VAULTBUNDLE_TESTBED_ENV", REPO / ".testbed" / "env"))
    if not env_file.exists():
        return None
    values = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    endpoint = values.get("AWS_ENDPOINT_URL")
    try:
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
    except OSError:
        return None
    return endpoint


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    endpoint = _testbed_endpoint()
    if endpoint:
        yield endpoint
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.2)
    yield endpoint
    process.terminate()
    process.wait(10)


@dataclass
class Bucket:
    """One fresh bucket with a config blob file and a passphrase file for it."""

    client: object
    name: str
    config: BootstrapConfig
    config_file: Path
    passphrase_file: Path
    passphrase: str

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)  # type: ignore[attr-defined]

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()  # type: ignore[attr-defined,no-any-return]

    def keys(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.name)  # type: ignore[attr-defined]
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def with_prefix(self, prefix: str, tmp: Path) -> Bucket:
        config = BootstrapConfig(**{**self.config.__dict__, "prefix": prefix})
        config_file = tmp / f"cfg-{uuid.uuid4().hex[:6]}"
        config_file.write_text(configblob.encode(config) + "\n")
        return Bucket(self.client, self.name, config, config_file, self.passphrase_file, self.passphrase)


def s3_client(endpoint: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(s3_endpoint: str, tmp_path: Path) -> Bucket:
    client = s3_client(s3_endpoint)
    name = f"vb-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    config = BootstrapConfig(
        endpoint=s3_endpoint,
        region=REGION,
        bucket=name,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        prefix="acme_web/prod/",
        env="prod",
        salt="NvTGExRJ8+Kn8dwdXrPv0w",
        iterations=600_000,
    )
    config_file = tmp_path / "vsync.cfg"
    config_file.write_text(configblob.encode(config) + "\n")
    config_file.chmod(0o600)
    passphrase = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # the shape of a vsync keychain key
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(passphrase + "\n")
    passphrase_file.chmod(0o600)
    return Bucket(client, name, config, config_file, passphrase_file, passphrase)
