"""Property-based round trips for every envelope, and tamper matrices (every byte flipped -> typed error)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultbundle.crypto import configblob, rqe1, rqem, sls1
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.crypto.kdf import DerivedKey, derive_key
from vaultbundle.errors import (
    BundleCorruptError,
    UnsupportedSpecVersionError,
    VSyncError,
    WrongPassphraseError,
)
from vaultbundle.pool import CryptoPool

KEY = derive_key("correct horse battery staple", "x+3cS0P6hBH3f/wva8TIrg==", 1000)
timestamps = st.datetimes().map(lambda d: d.strftime("%Y%m%d-%H%M%S")).filter(rqem.is_timestamp)


@given(st.binary(max_size=4096))
def test_rqe1_round_trip(plaintext: bytes) -> None:
    blob = rqe1.seal(KEY, plaintext)
    assert len(blob) == 32 + len(plaintext) and blob[:4] == b"RQE1"
    assert rqe1.open_envelope(KEY, blob) == plaintext


@given(st.binary(max_size=64), st.binary(min_size=32, max_size=32))
def test_rqe1_other_key_never_opens(plaintext: bytes, other: bytes) -> None:
    blob = rqe1.seal(KEY, plaintext)
    if other != KEY.reveal():
        with pytest.raises(WrongPassphraseError):
            rqe1.open_envelope(DerivedKey(other), blob)


@given(st.text(max_size=40), st.text(min_size=0, max_size=40), st.integers(min_value=1, max_value=50))
@settings(max_examples=30)
def test_kdf_inputs_are_utf8_strings(passphrase: str, salt: str, iterations: int) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    expected = PBKDF2HMAC(hashes.SHA256(), 32, salt.encode("utf-8"), iterations).derive(passphrase.encode("utf-8"))
    assert derive_key(passphrase, salt, iterations).reveal() == expected


@given(timestamps, st.binary(max_size=256))
def test_rqem_round_trip(timestamp: str, payload: bytes) -> None:
    record = rqem.verify_against_remote_ts(rqem.wrap(timestamp, payload), timestamp)
    assert (record.timestamp, record.payload) == (timestamp, payload)


@given(st.binary(max_size=64))
def test_rqem_garbage_is_typed(data: bytes) -> None:
    try:
        rqem.unwrap(data)
    except BundleCorruptError:
        pass


safe_text = st.text(alphabet=string.ascii_letters + string.digits + "-_./:", min_size=1, max_size=30)
configs = st.builds(
    BootstrapConfig,
    endpoint=safe_text,
    region=safe_text,
    bucket=safe_text,
    access_key_id=safe_text,
    secret_access_key=st.text(max_size=60),
    prefix=st.text(max_size=30),
    env=st.text(max_size=10),
    salt=st.text(min_size=16, max_size=40),
    iterations=st.integers(min_value=1, max_value=10_000_000),
)


@given(configs)
def test_config_blob_round_trip(config: BootstrapConfig) -> None:
    blob = configblob.encode(config)
    assert blob.startswith("vsync-cfg-v1:") and not any(ch in blob[13:] for ch in "+/=")
    assert configblob.decode(blob) == config
    marked = BootstrapConfig(
        **{**config.__dict__, "secret_access_key": "MARK-SECRET-7f3a", "salt": "MARK-SALT-7f3a-long"}
    )
    assert "MARK-SECRET" not in repr(marked) and "MARK-SALT" not in repr(marked)


@given(st.text(max_size=200))
def test_config_blob_garbage_is_typed(text: str) -> None:
    try:
        configblob.decode(text)
    except VSyncError:
        pass


def test_config_blob_gzip_bomb_is_refused() -> None:
    import base64
    import gzip

    bomb = gzip.compress(b'{"v":1,"pad":"' + b"A" * 10_000_000 + b'"}', mtime=0)
    blob = "vsync-cfg-v1:" + base64.urlsafe_b64encode(bomb).decode().rstrip("=")
    with pytest.raises(BundleCorruptError, match="expands beyond"):
        configblob.decode(blob)


SHARE = sls1.ShareFile(
    repo="acme_web",
    env="prod",
    config={
        "version": 1,
        "s3": {
            "endpoint": "http://127.0.0.1:9",
            "region": "us-east-1",
            "bucket": "b",
            "accessKeyId": "a",
            "secretAccessKey": "s",
            "useSsl": False,
        },
        "encryption": {"salt": "NvTGExRJ8+Kn8dwdXrPv0w"},
    },
    key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
)


def test_sls1_round_trip_and_repr() -> None:
    data = sls1.seal(SHARE, "ABCD-EFGH-JKMN")
    assert data[:4] == b"SLS1" and data[4] == 24
    assert sls1.open_share(data, "ABCD-EFGH-JKMN") == SHARE
    assert SHARE.key not in repr(SHARE)
    with pytest.raises(WrongPassphraseError):
        sls1.open_share(data, "ABCD-EFGH-JKMX")


def test_sls1_tamper_matrix() -> None:
    """Every header byte, and a spread of envelope bytes (each of those costs a 600k-iteration PBKDF2)."""
    data = sls1.seal(SHARE, "ABCD-EFGH-JKMN", salt="s" * 24)
    header = 5 + 24 + 4
    for index in [*range(header), *range(header, len(data), max(1, (len(data) - header) // 6)), len(data) - 1]:
        tampered = bytearray(data)
        tampered[index] ^= 0x01
        with pytest.raises(VSyncError):
            sls1.open_share(bytes(tampered), "ABCD-EFGH-JKMN")


def test_rqe1_tamper_matrix_every_byte_of_a_cli_bundle() -> None:
    """A whole CLI-layout bundle (RQE1 over RQEM0001 + ZIP): any single flipped bit is refused by class."""
    from vaultbundle import vault

    ts = "20260101-000000"
    payload = rqem.wrap(ts, vault.to_zip({".env.prod": b'A="1"\n', "cert.pem": b"x" * 40}, folder="infra/vault/prod"))
    pool = CryptoPool(workers=0)
    blob = rqe1.seal(pool.derive("pw", "s" * 16, 1000), payload)
    for index in range(len(blob)):
        for bit in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[index] ^= bit
            expected = (
                UnsupportedSpecVersionError if index == 3 else BundleCorruptError if index < 3 else WrongPassphraseError
            )
            with pytest.raises(expected):
                pool.open_envelope(bytes(tampered), "pw", "s" * 16, 1000)
    for cut in range(len(blob)):
        with pytest.raises(BundleCorruptError if cut < 32 else WrongPassphraseError):
            pool.open_envelope(blob[:cut], "pw", "s" * 16, 1000)
    assert pool.cache.stats.derivations == 1  # the whole matrix paid PBKDF2 once
