"""Every dotsec conformance vector (tests/vectors/dotsec, written by dotsec 7.0.1): values or error class,
the canonical MAC input and the MAC itself (known answers, no age needed), and the copy's integrity.
The KMS case is opened here through a stubbed KMS client that checks the request; against moto's real
KMS in tests/e2e/test_dotsec_kms.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from vaultbundle import dotsec, errors
from vaultbundle.dotsec import mac, model
from vaultbundle.dotsec.header import parse_header
from vaultbundle.dotsec.schema import EMPTY_SHA256, parse_schema
from vaultbundle.dotsec_kms import ENCRYPTION_CONTEXT, KmsUnwrapper

VECTORS = REPO / "tests" / "vectors" / "dotsec"


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path
    doc: dict[str, Any]

    @property
    def text(self) -> str:
        return (self.folder / "file.sec").read_bytes().decode("utf-8")

    @property
    def schema(self) -> str | None:
        name = self.doc.get("schema_file")
        return (self.folder / name).read_text() if name else None

    def identity(self) -> dotsec.AgeIdentity:
        return dotsec.AgeIdentity.from_key_file((self.folder / self.doc["identity_file"]).read_text())


def _cases(select: Any = lambda doc: True) -> list[Case]:
    cases = [
        Case(p.name, p, json.loads((p / "expected.json").read_text())) for p in sorted(VECTORS.iterdir()) if p.is_dir()
    ]
    return [case for case in cases if select(case.doc)]


ALL = _cases()
AGE = _cases(lambda doc: doc["provider"] != "aws")
KAT = _cases(lambda doc: "kat" in doc)


def test_every_case_is_here() -> None:
    assert len(ALL) == 37
    assert {case.doc["expect"] for case in ALL} == {"ok", "error"}


def _error_classes(doc: dict[str, Any]) -> set[str]:
    return {doc["error_class"], *doc.get("error_classes_accepted", [])}


@pytest.mark.parametrize("case", AGE, ids=[case.name for case in AGE])
def test_age_vector(case: Case) -> None:
    if case.doc["expect"] == "ok":
        values, report = dotsec.open(case.text, case.identity(), case.schema)
        assert [list(pair) for pair in values.pairs] == case.doc["values"]
        assert dict(values) == case.doc["values_object"]
        assert report.mac_verified and report.provider == "local"
        assert report.schema_sha256 == case.doc["kat"]["schema_sha256"]
        return
    with pytest.raises(errors.DotsecError) as caught:
        dotsec.open(case.text, case.identity(), case.schema)
    assert caught.value.error_class in _error_classes(case.doc), str(caught.value)
    assert caught.value.exit_code not in range(10, 21)


@pytest.mark.parametrize("case", KAT, ids=[case.name for case in KAT])
def test_canonical_bytes_and_mac_known_answers(case: Case) -> None:
    kat = case.doc["kat"]
    schema_sha256 = parse_schema(case.schema).sha256 if case.schema else EMPTY_SHA256
    assert schema_sha256 == kat["schema_sha256"]
    sec = model.load(case.text)
    assert mac.canonical_bytes(sec, schema_sha256) == (case.folder / kat["canonical_file"]).read_bytes()
    dek = bytes.fromhex(kat["dek_hex"])
    assert mac.compute(dek, sec, schema_sha256).hex() == kat["mac_hex"]
    assert parse_header(sec.header or "").mac.hex() == kat["mac_hex"]


def test_kat_fixed_dek_commitment() -> None:
    (case,) = _cases(lambda doc: doc["name"] == "kat-fixed-dek")
    from vaultbundle.dotsec.values import key_commitment

    assert key_commitment(b"\x42" * 32).hex().startswith("1f6fb782")
    assert key_commitment(b"\x42" * 32).hex().endswith("ff375d")
    assert hashlib.sha256((case.folder / "canonical.bin").read_bytes()).hexdigest().startswith("5611d065")


class _StubKms:
    """Records the Decrypt request and answers with the vector's DEK, as the vector README allows."""

    def __init__(self, dek: bytes) -> None:
        self.dek = dek
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def factory(self, region: str) -> _StubKms:
        self.region = region
        return self

    def decrypt(self, **request: Any) -> dict[str, Any]:
        self.calls.append((self.region, request))
        return {"Plaintext": self.dek}


def test_kms_vector_with_a_stubbed_decrypt_call() -> None:
    (case,) = _cases(lambda doc: doc["provider"] == "aws")
    kms = _StubKms(bytes.fromhex(case.doc["kms"]["dek_hex"]))
    values, report = dotsec.open(case.text, KmsUnwrapper(client_factory=kms.factory), case.schema)
    assert [list(pair) for pair in values.pairs] == case.doc["values"]
    assert report.provider == "aws"
    ((region, request),) = kms.calls
    assert region == case.doc["kms"]["region"] == "us-east-1"  # from @region: no --region given
    wrapped = base64.b64decode(re.search(r"dek=([^,)]+)", case.text)[1])  # type: ignore[index]
    assert request == {"CiphertextBlob": wrapped, "EncryptionContext": case.doc["kms"]["encryption_context"]}
    assert ENCRYPTION_CONTEXT == {"dotsec:format": "v3"}


def test_kms_region_given_wins_over_the_files() -> None:
    (case,) = _cases(lambda doc: doc["provider"] == "aws")
    kms = _StubKms(bytes.fromhex(case.doc["kms"]["dek_hex"]))
    dotsec.open(case.text, KmsUnwrapper("eu-west-1", client_factory=kms.factory))
    assert [region for region, _ in kms.calls] == ["eu-west-1"]


def test_kms_short_plaintext_is_refused() -> None:
    (case,) = _cases(lambda doc: doc["provider"] == "aws")
    with pytest.raises(errors.DotsecDekUnwrapFailedError, match="16 bytes"):
        dotsec.open(case.text, KmsUnwrapper(client_factory=_StubKms(b"x" * 16).factory))


def test_age_identity_on_an_aws_file_and_kms_on_a_local_file() -> None:
    (kms_case,) = _cases(lambda doc: doc["provider"] == "aws")
    with pytest.raises(errors.DotsecDekUnwrapFailedError, match="KMS"):
        dotsec.open(kms_case.text, AGE[0].identity())
    local = next(case for case in AGE if case.doc["expect"] == "ok")
    with pytest.raises(errors.DotsecIdentityInvalidError):
        dotsec.open(local.text, KmsUnwrapper(client_factory=_StubKms(b"x" * 32).factory))


@pytest.mark.parametrize("case", [c for c in AGE if c.doc["expect"] == "ok"], ids=lambda c: c.name)
def test_no_value_in_any_repr(case: Case) -> None:
    values, report = dotsec.open(case.text, case.identity(), case.schema)
    shown = repr(values) + repr(report) + str(report) + repr(model.load(case.text)) + repr(case.identity())
    for _, value in case.doc["values"]:
        if len(value) >= 4:
            assert value not in shown
    assert "AGE-SECRET-KEY" not in shown


def test_vector_files_match_their_checksums() -> None:
    listed = dict(
        (path.removeprefix("./"), digest)
        for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", (VECTORS / "README.md").read_text(), re.M)
    )
    present = {str(p.relative_to(VECTORS)) for p in VECTORS.rglob("*") if p.is_file() and p.name != "README.md"}
    assert set(listed) == present and len(present) == 129
    for path, digest in listed.items():
        assert hashlib.sha256((VECTORS / path).read_bytes()).hexdigest() == digest, path


def test_the_reader_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pure like crypto/: with files and sockets unusable, a local file still opens (its @key-id is not a path)."""
    import builtins
    import io
    import os
    import socket

    (case,) = _cases(lambda doc: doc["name"] == "local-key-id")
    text, schema, identity = case.text, case.schema, case.identity()

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the dotsec reader must not do I/O")

    for module, name in ((builtins, "open"), (io, "open"), (os, "open"), (socket, "socket")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.chdir(case.folder)  # team.key is right here: it must still not be read
    values, _ = dotsec.open(text, identity, schema)
    assert [list(pair) for pair in values.pairs] == case.doc["values"]
