"""PBKDF2-HMAC-SHA256 key derivation exactly as vsync does it (spec §1).

Password and salt are *strings*; PBKDF2 receives their UTF-8 encodings. Nothing is base64-decoded,
trimmed or normalised.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from ..errors import ConfigUnsupportedVersionError

DEFAULT_ITERATIONS = 600_000
KEY_LENGTH = 32
MIN_SALT_CHARS = 16


class DerivedKey:
    """A 32-byte AES key. Its repr and str never show the key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_LENGTH:
            raise ValueError("derived key must be 32 bytes")
        self._key = key

    def reveal(self) -> bytes:
        return self._key

    def __repr__(self) -> str:
        return "<DerivedKey redacted>"

    __str__ = __repr__

    def __reduce__(self) -> tuple[type[DerivedKey], tuple[bytes]]:
        raise TypeError("a DerivedKey cannot be pickled: key material never leaves the process")


def check_params(salt: str, iterations: int) -> None:
    """Reject KDF parameters vsync's readers reject (salt < 16 chars, iterations <= 0)."""
    if len(salt) < MIN_SALT_CHARS:
        raise ConfigUnsupportedVersionError(f"salt is {len(salt)} characters; at least {MIN_SALT_CHARS} are required")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations <= 0:
        raise ConfigUnsupportedVersionError("iterations must be a positive integer")


def derive_key(passphrase: str, salt: str, iterations: int) -> DerivedKey:
    """PBKDF2-HMAC-SHA256(password=UTF-8(passphrase), salt=UTF-8(salt), iterations) -> 32-byte key."""
    if isinstance(iterations, bool) or iterations <= 0:
        raise ConfigUnsupportedVersionError("iterations must be a positive integer")
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=KEY_LENGTH, salt=salt.encode("utf-8"), iterations=iterations)
    return DerivedKey(kdf.derive(passphrase.encode("utf-8")))
