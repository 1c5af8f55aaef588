"""RQE1 envelope: "RQE1" | 12-byte nonce | AES-256-GCM ciphertext | 16-byte tag, no AAD (spec §2).

Structural checks (`check_envelope`) run before any key derivation so that a damaged object never costs a
PBKDF2 run, and they are classified exactly as vsync's readers do.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import BundleCorruptError, UnsupportedSpecVersionError, WrongPassphraseError
from .kdf import DerivedKey

MAGIC = b"RQE1"
NONCE_LENGTH = 12
TAG_LENGTH = 16
HEADER_LENGTH = len(MAGIC) + NONCE_LENGTH
MIN_LENGTH = HEADER_LENGTH + TAG_LENGTH  # 32: an empty plaintext


def check_envelope(blob: bytes) -> None:
    """Raise the vsync error class for a structurally invalid envelope (length, magic, version byte)."""
    if len(blob) < MIN_LENGTH:
        raise BundleCorruptError(f"RQE1 envelope is {len(blob)} bytes; the minimum is {MIN_LENGTH}")
    if blob[:3] != MAGIC[:3]:
        raise BundleCorruptError("object is not an RQE1 envelope (bad magic)")
    if blob[3:4] != MAGIC[3:4]:
        raise UnsupportedSpecVersionError(f"RQE envelope version byte {blob[3]:#04x} is not supported (only '1')")


def seal(key: DerivedKey, plaintext: bytes, *, nonce: bytes | None = None) -> bytes:
    """Encrypt *plaintext* into an RQE1 envelope. A fresh random nonce is used unless one is given."""
    if nonce is None:
        nonce = os.urandom(NONCE_LENGTH)
    if len(nonce) != NONCE_LENGTH:
        raise ValueError("nonce must be 12 bytes")
    return MAGIC + nonce + AESGCM(key.reveal()).encrypt(nonce, plaintext, None)


def open_envelope(key: DerivedKey, blob: bytes) -> bytes:
    """Verify and decrypt an RQE1 envelope; any authentication failure is WrongPassphraseError."""
    check_envelope(blob)
    try:
        return AESGCM(key.reveal()).decrypt(blob[len(MAGIC) : HEADER_LENGTH], blob[HEADER_LENGTH:], None)
    except InvalidTag:
        raise WrongPassphraseError(
            "RQE1 authentication failed: wrong passphrase, wrong salt/iterations, or a tampered bundle"
        ) from None
