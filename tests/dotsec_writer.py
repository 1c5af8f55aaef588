"""A minimal dotsec v3 writer for tests and the bench: our own reader is tested against files it did not
write (tests/vectors/dotsec, made by dotsec 7.0.1); this writer only makes *more* files (schema cases,
policies, large files) whose MAC follows the same rules. Not part of the product.

In *body*, a line `KEY=<<plaintext>>` becomes `KEY=ENC[...]`; the header line is put first.
"""

from __future__ import annotations

import base64
import os
import re

import pyrage
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vaultbundle.dotsec import mac, model
from vaultbundle.dotsec.schema import EMPTY_SHA256, parse_schema
from vaultbundle.dotsec.values import key_commitment

_SEALED = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)=<<(?P<plain>.*?)>>$", re.MULTILINE | re.DOTALL)


def encrypt_value(dek: bytes, key: str, plaintext: str, *, nonce: bytes | None = None) -> str:
    raw = plaintext.encode("utf-8")
    padded = len(raw).to_bytes(2, "big") + raw
    padded += b"\0" * (-len(padded) % 64)
    nonce = nonce or os.urandom(12)
    sealed = AESGCM(dek).encrypt(nonce, padded, key.encode("utf-8"))
    return "ENC[" + base64.b64encode(key_commitment(dek) + nonce + sealed).decode() + "]"


def write_sec(
    body: str,
    *,
    dek: bytes | None = None,
    identity: pyrage.x25519.Identity | None = None,
    wrapped_dek: bytes | None = None,
    schema_sha256: str = EMPTY_SHA256,
) -> tuple[str, str, bytes]:
    """(file text, the age identity string, the DEK). *wrapped_dek* replaces the age wrapping (KMS)."""
    identity = identity or pyrage.x25519.Identity.generate()
    dek = dek or os.urandom(32)
    body = _SEALED.sub(lambda m: f"{m['key']}={encrypt_value(dek, m['key'], m['plain'])}", body)
    wrapped = wrapped_dek if wrapped_dek is not None else pyrage.encrypt(dek, [identity.to_public()])
    file_mac = mac.compute(dek, model.load(body), schema_sha256)
    fields = f"mac={base64.b64encode(file_mac).decode()}, dek={base64.b64encode(wrapped).decode()}"
    header = f"# @dotsec(format=v3, {fields})\n"
    return header + body, str(identity), dek


def schema_sha256(schema_text: str) -> str:
    return parse_schema(schema_text).sha256
