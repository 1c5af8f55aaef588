"""Every vsync conformance vector (the repository's copy in tests/vectors/vsync) and the copy's checksums."""

from __future__ import annotations

import base64
import hashlib

import pytest

from tests.conftest import VECTORS, Vector, load_vectors
from vaultbundle import errors
from vaultbundle.crypto import configblob, rqe1, rqem
from vaultbundle.crypto.kdf import DEFAULT_ITERATIONS, derive_key
from vaultbundle.pool import CryptoPool


def _error_class(name: str) -> type[Exception]:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.VSyncError)
    return cls


def _open(vector: Vector) -> bytes:
    inputs = vector.doc["inputs"]
    assert vector.data is not None
    return CryptoPool(workers=0).open_envelope(vector.data, inputs["passphrase"], inputs["salt"], DEFAULT_ITERATIONS)


@pytest.mark.parametrize("vector", load_vectors("rqe1-decrypt"), ids=lambda v: v.id)
def test_rqe1_decrypt(vector: Vector) -> None:
    expected = vector.doc["expected"]
    assert expected["error"] is None
    plaintext = _open(vector)
    assert plaintext.hex() == expected["plaintext_hex"]
    if "plaintext_utf8" in expected:
        assert plaintext.decode("utf-8") == expected["plaintext_utf8"]


def _vector_nonce(vector: Vector) -> bytes:
    return hashlib.sha256(f"vsync-vec-v0.12|{vector.category}|{vector.name}|iv".encode()).digest()[:12]


@pytest.mark.parametrize("vector", load_vectors("rqe1-decrypt"), ids=lambda v: v.id)
def test_rqe1_seal_reproduces_vector_bytes(vector: Vector) -> None:
    """Our writer, given the generator's deterministic nonce, produces the published bytes exactly."""
    inputs = vector.doc["inputs"]
    salt_digest = hashlib.sha256(f"vsync-vec-v0.12|{vector.category}|{vector.name}|salt".encode()).digest()
    assert base64.b64encode(salt_digest[:16]).decode() == inputs["salt"]
    key = derive_key(inputs["passphrase"], inputs["salt"], DEFAULT_ITERATIONS)
    plaintext = bytes.fromhex(vector.doc["expected"]["plaintext_hex"])
    assert rqe1.seal(key, plaintext, nonce=_vector_nonce(vector)) == vector.data


@pytest.mark.parametrize("vector", load_vectors("rqe1-decrypt-error"), ids=lambda v: v.id)
def test_rqe1_decrypt_error(vector: Vector) -> None:
    with pytest.raises(_error_class(vector.doc["expected"]["error"])):
        _open(vector)


@pytest.mark.parametrize("vector", load_vectors("rqem0001-manifest"), ids=lambda v: v.id)
def test_rqem0001(vector: Vector) -> None:
    expected, remote_ts = vector.doc["expected"], vector.doc["inputs"]["remote_ts"]
    assert vector.data is not None
    if expected["error"]:
        with pytest.raises(_error_class(expected["error"])):
            rqem.verify_against_remote_ts(vector.data, remote_ts)
        if expected["embedded_ts"]:  # the record itself parses; only the comparison fails
            assert rqem.unwrap(vector.data).timestamp == expected["embedded_ts"]
        return
    record = rqem.verify_against_remote_ts(vector.data, remote_ts)
    assert record.timestamp == expected["embedded_ts"]
    assert record.payload.hex() == expected["payload_hex"]
    assert rqem.wrap(record.timestamp, record.payload) == vector.data


@pytest.mark.parametrize("vector", load_vectors("config-blob"), ids=lambda v: v.id)
def test_config_blob(vector: Vector) -> None:
    expected = vector.doc["expected"]
    assert vector.data is not None
    text = vector.data.decode("ascii")
    if expected["error"]:
        with pytest.raises(_error_class(expected["error"])):
            configblob.decode(text)
        return
    config = configblob.decode(text)
    assert config.to_json() == expected["config_json"]
    assert configblob.decode(text + "\n") == config  # a trailing newline copied from stdout is harmless
    assert configblob.decode(configblob.encode(config)).to_json() == expected["config_json"]  # compare JSON, not gzip


TAXONOMY = load_vectors("error-taxonomy")
SCENARIOS = {"config-missing", "manifest-not-found", "s3-unreachable"}  # driven in tests/integration/test_cli_s3.py


def test_error_taxonomy_scenarios_are_the_byteless_ones() -> None:
    assert {vector.name for vector in TAXONOMY if vector.data is None} == SCENARIOS


@pytest.mark.parametrize("vector", [v for v in TAXONOMY if v.data is not None], ids=lambda v: v.id)
def test_error_taxonomy_byte_cases(vector: Vector) -> None:
    error = _error_class(vector.doc["expected"]["error"])
    assert vector.data is not None
    if vector.name.startswith("config"):
        with pytest.raises(error):
            configblob.decode(vector.data.decode("ascii"))
    else:
        with pytest.raises(error):
            _open(vector)


def test_vector_files_are_untouched() -> None:
    """The README lists a SHA-256 per file; a drifted copy would make every other vector test meaningless."""
    readme = (VECTORS / "README.md").read_text()
    rows = [line.split("|") for line in readme.splitlines() if line.startswith("| `") and "`" in line]
    checked = 0
    for row in rows:
        cells = [cell.strip().strip("`") for cell in row[1:-1]]
        if len(cells) == 3 and len(cells[2]) == 64:
            assert hashlib.sha256((VECTORS / cells[0]).read_bytes()).hexdigest() == cells[2], cells[0]
            checked += 1
    assert checked == 55


@pytest.mark.parametrize(
    "vector", [v for v in load_vectors("config-blob") if v.name.startswith("positive")], ids=lambda v: v.id
)
def test_config_blob_with_the_newline_runtime_token_prints(vector: Vector) -> None:
    """vsync's readers disagree about a trailing newline (docs/vsync-compatibility.md); ours ignores it."""
    assert vector.data is not None
    blob = vector.data.decode("ascii")
    assert not blob.endswith(("\n", "\r"))
    assert configblob.decode(blob + "\n") == configblob.decode(blob) == configblob.decode(blob + "\r\n")
