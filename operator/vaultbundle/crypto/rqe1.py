"""RQE1 envelope: "RQE1" | 12-byte nonce | AES-256-GCM ciphertext | 16-byte tag, no AAD (spec §2).

Structural checks (`check_envelope`) run before any key derivation so that a damaged object never costs a
PBKDF2 run, and they are classified exactly as vsync's readers do.

Decryption streams the ciphertext through AES-GCM in 1 MiB chunks: one-shot `AESGCM.decrypt` of a 64 MiB
envelope holds the GIL for ~100 ms in one call, which would stall the operator's event loop even from a
worker thread; between chunks other threads run. Nothing is returned before the tag has been verified.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import BundleCorruptError, UnsupportedSpecVersionError, WrongPassphraseError
from .kdf import DerivedKey

MAGIC = b"RQE1"
NONCE_LENGTH = 12
TAG_LENGTH = 16
HEADER_LENGTH = len(MAGIC) + NONCE_LENGTH
MIN_LENGTH = HEADER_LENGTH + TAG_LENGTH  # 32: an empty plaintext
CHUNK_BYTES = 1024 * 1024


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
    nonce, tag = blob[len(MAGIC) : HEADER_LENGTH], blob[-TAG_LENGTH:]
    ciphertext = memoryview(blob)[HEADER_LENGTH:-TAG_LENGTH]
    decryptor = Cipher(algorithms.AES(key.reveal()), modes.GCM(nonce, tag)).decryptor()
    parts = [decryptor.update(ciphertext[i : i + CHUNK_BYTES]) for i in range(0, len(ciphertext), CHUNK_BYTES)]
    try:
        decryptor.finalize()
        return b"".join(parts)
    except InvalidTag:
        raise WrongPassphraseError(
            "RQE1 authentication failed: wrong passphrase, wrong salt/iterations, or a tampered bundle"
        ) from None
