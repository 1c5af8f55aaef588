"""Per-value decryption (spec/dotsec-format.md §6): `ENC[` base64(commitment ‖ nonce ‖ ciphertext ‖ tag) `]`,
AES-256-GCM under the DEK with the entry's key name as AAD. The key commitment is checked (constant time)
before AES-GCM: a value whose commitment bytes were replaced would otherwise still authenticate.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import DotsecValueCorruptError
from .header import strict_b64decode
from .model import ENC_PREFIX, ENC_SUFFIX

COMMIT_LENGTH, NONCE_LENGTH, TAG_LENGTH = 32, 12, 16
MIN_BLOB = COMMIT_LENGTH + NONCE_LENGTH + TAG_LENGTH


def key_commitment(dek: bytes) -> bytes:
    return hmac.new(dek, b"dotsec-key-commit", hashlib.sha256).digest()


def decrypt_value(dek: bytes, key: str, stored: str) -> str:
    """The plaintext of one ENC[...] value. ValueCorrupt names the key and the failed step, never a value."""
    blob = strict_b64decode(stored[len(ENC_PREFIX) : -len(ENC_SUFFIX)])
    if blob is None:
        raise DotsecValueCorruptError(f"couldn't decrypt {key}: its ENC[...] envelope is not strict base64")
    if len(blob) < MIN_BLOB:
        raise DotsecValueCorruptError(f"couldn't decrypt {key}: its ENC[...] envelope is {len(blob)} bytes")
    if not hmac.compare_digest(blob[:COMMIT_LENGTH], key_commitment(dek)):
        raise DotsecValueCorruptError(f"couldn't decrypt {key}: key commitment verification failed")
    nonce = blob[COMMIT_LENGTH : COMMIT_LENGTH + NONCE_LENGTH]
    try:
        padded = AESGCM(dek).decrypt(nonce, blob[COMMIT_LENGTH + NONCE_LENGTH :], key.encode("utf-8"))
    except InvalidTag:
        raise DotsecValueCorruptError(f"couldn't decrypt {key}: AES-GCM authentication failed") from None
    if len(padded) < 2 or 2 + int.from_bytes(padded[:2], "big") > len(padded):
        raise DotsecValueCorruptError(f"couldn't decrypt {key}: bad length prefix in the padded plaintext")
    try:
        return padded[2 : 2 + int.from_bytes(padded[:2], "big")].decode("utf-8")
    except UnicodeDecodeError:
        raise DotsecValueCorruptError(f"couldn't decrypt {key}: the plaintext is not UTF-8") from None
