"""dotsec `@provider=aws` files against the test bed's moto KMS (a real HTTP KMS API on loopback).

moto's key material is random, so the vector's `dek=` is re-wrapped: Encrypt the vector's known DEK under a
fresh key with `{"dotsec:format": "v3"}` and put the blob in `dek=` (not MAC-covered), as the vector README
describes. The pod-style environment deliberately names another region: the file's `@region` must win.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.conftest import REPO

from vaultbundle import dotsec, errors
from vaultbundle.dotsec_kms import ENCRYPTION_CONTEXT, KmsUnwrapper

pytestmark = pytest.mark.testbed
CASE = REPO / "tests" / "vectors" / "dotsec" / "kms-basic"


@pytest.fixture
def aws_env(testbed: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    env = {
        "AWS_ENDPOINT_URL": testbed["AWS_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": testbed["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": testbed["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": "eu-west-1",  # not the file's region: must not be used
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env


def _rewrapped(aws_env: dict[str, str], context: dict[str, str] = ENCRYPTION_CONTEXT) -> str:
    expected = json.loads((CASE / "expected.json").read_text())["kms"]
    kms = boto3.client("kms", region_name=expected["region"], endpoint_url=aws_env["AWS_ENDPOINT_URL"])
    key_id = kms.create_key(Description="dotsec test")["KeyMetadata"]["KeyId"]
    alias = f"alias/dotsec-test-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    blob = kms.encrypt(KeyId=alias, Plaintext=bytes.fromhex(expected["dek_hex"]), EncryptionContext=context)
    wrapped = base64.b64encode(blob["CiphertextBlob"]).decode()
    return re.sub(r"dek=[^,)]+", f"dek={wrapped}", (CASE / "file.sec").read_text(), count=1)


def _expected() -> dict[str, Any]:
    return json.loads((CASE / "expected.json").read_text())


def test_kms_vector_opens_with_the_files_region(aws_env: dict[str, str]) -> None:
    values, report = dotsec.open(_rewrapped(aws_env), KmsUnwrapper())
    assert [list(pair) for pair in values.pairs] == _expected()["values"]
    assert report.provider == "aws" and report.mac_verified


def test_kms_wrong_encryption_context_or_region_fails(aws_env: dict[str, str]) -> None:
    with pytest.raises(errors.DotsecDekUnwrapFailedError, match="InvalidCiphertext"):
        dotsec.open(_rewrapped(aws_env, {"dotsec:format": "v4"}), KmsUnwrapper())
    with pytest.raises(errors.DotsecDekUnwrapFailedError, match="eu-west-1"):
        dotsec.open(_rewrapped(aws_env), KmsUnwrapper("eu-west-1"))  # the key lives in us-east-1


def test_kms_unreachable_is_transient(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    text = _rewrapped(aws_env)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(errors.DotsecDekUnwrapFailedError) as caught:
        dotsec.open(text, KmsUnwrapper())
    assert caught.value.reason is errors.Reason.DOTSEC_KMS_UNAVAILABLE and caught.value.transient


def test_cli_open_kms(aws_env: dict[str, str], tmp_path: Path) -> None:
    sec = tmp_path / "app.sec"
    sec.write_text(_rewrapped(aws_env))
    command = [sys.executable, "-m", "vaultbundle.cli", "dotsec", "open", str(sec), "--kms", "--json"]
    env = {**os.environ, **aws_env}
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["provider"] == "aws" and "p@ss" not in quiet.stdout + quiet.stderr
    shown = subprocess.run([*command, "--reveal"], capture_output=True, text=True, env=env, check=False, timeout=120)
    assert json.loads(shown.stdout)["kv"] == _expected()["values_object"]
    wrong = subprocess.run(
        [*command, "--region", "eu-west-1"], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    assert wrong.returncode == errors.DotsecDekUnwrapFailedError.exit_code and "DekUnwrapFailed" in wrong.stderr
