"""The lean S3 GET (`s3get.SignedGet`) against the test bed's moto S3, plain and over TLS with a private CA.

moto does not check signatures (test_s3_get.py re-computes them). The TLS front (tls_front.py) serves the
bed's certificate, signed by the bed's CA, and forwards to moto. The CA is trusted through the `ca_bundle`
argument or botocore's `AWS_CA_BUNDLE`, and refused without it, as the full client does.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest
from tests.e2e.helpers import aws_client
from tests.e2e.tls_front import TlsFront, bed_aws_front

from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.errors import S3UnreachableError
from vaultbundle.remote import ObjectMissing, S3Objects

pytestmark = [pytest.mark.testbed]


@pytest.fixture(scope="module")
def bucket(testbed: dict[str, str]) -> BootstrapConfig:
    name = f"lean-get-{uuid.uuid4().hex[:8]}"
    s3 = aws_client(testbed, "s3")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="p/latest", Body=b"20260101-000000")
    return BootstrapConfig(
        testbed["AWS_ENDPOINT_URL"], "us-east-1", name, testbed["AWS_ACCESS_KEY_ID"],
        testbed["AWS_SECRET_ACCESS_KEY"], "p/", "prod", "0123456789abcdef", 1000,
    )  # fmt: skip


@pytest.fixture(scope="module")
def front(testbed: dict[str, str]) -> Iterator[TlsFront]:
    with bed_aws_front(testbed) as made:
        yield made


def test_moto_answers_every_case_as_the_client_expects(bucket: BootstrapConfig) -> None:
    objects = S3Objects(bucket)
    stored = objects.get("p/latest")
    assert stored is not None and stored.body == b"20260101-000000"
    assert objects.get("p/latest", if_none_match=stored.etag) is None  # 304
    with pytest.raises(ObjectMissing):
        objects.get("p/missing")
    with pytest.raises(S3UnreachableError, match="does not exist"):
        S3Objects(dataclasses.replace(bucket, bucket=bucket.bucket + "-gone")).get("p/latest")


def test_a_private_ca_is_trusted_when_given_and_refused_otherwise(
    testbed: dict[str, str], bucket: BootstrapConfig, front: TlsFront, monkeypatch: pytest.MonkeyPatch
) -> None:
    over_tls = dataclasses.replace(bucket, endpoint=front.url)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    with pytest.raises(S3UnreachableError, match="SSLError"):
        S3Objects(over_tls, timeout=5.0).get("p/latest")
    stored = S3Objects(over_tls, ca_bundle=testbed["TESTBED_CA_FILE"]).get("p/latest")
    assert stored is not None and stored.body == b"20260101-000000"
    monkeypatch.setenv("AWS_CA_BUNDLE", testbed["TESTBED_CA_FILE"])
    stored = S3Objects(over_tls).get("p/latest")
    assert stored is not None and stored.body == b"20260101-000000"
    assert ("GET", f"/{bucket.bucket}/p/latest") in front.requests()
