"""PBKDF2-HMAC-SHA256 key derivation exactly as vsync does it (spec §1).

Password and salt are *strings*; PBKDF2 receives their UTF-8 encodings. Nothing is base64-decoded,
trimmed or normalised.

The iteration count comes from the (tenant-written) config blob, so it is bounded twice: always by what the
crypto library can take (OpenSSL's count is a C int; above 2**31 - 1 the Rust binding panics with a
`BaseException`), and in the operator by an admin policy (`IterationLimits`, `--min/--max-kdf-iterations`):
one derivation at 2,000,000 iterations costs about a second of one core; 2**31 would cost fifteen minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from ..errors import ConfigUnsupportedVersionError, KdfLimitError

DEFAULT_ITERATIONS = 600_000
MAX_SUPPORTED_ITERATIONS = 2**31 - 1  # OpenSSL's PKCS5_PBKDF2_HMAC takes an int
# The operator's default policy. 10,000 is far below any sane setting (vsync writes 600,000; OWASP asks for
# 600,000 for PBKDF2-HMAC-SHA256) yet above the toy counts of old test fixtures: lower counts only make a
# tenant's own bundle cheap to brute-force, so they are refused rather than silently accepted.
DEFAULT_MIN_ITERATIONS = 10_000
DEFAULT_MAX_ITERATIONS = 2_000_000
KEY_LENGTH = 32
MIN_SALT_CHARS = 16


@dataclass(frozen=True)
class IterationLimits:
    """The range of PBKDF2 iteration counts an operator accepts; checked before any derivation."""

    minimum: int = DEFAULT_MIN_ITERATIONS
    maximum: int = DEFAULT_MAX_ITERATIONS

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum <= MAX_SUPPORTED_ITERATIONS:
            raise ValueError(
                f"KDF iteration limits must satisfy 1 <= minimum <= maximum <= {MAX_SUPPORTED_ITERATIONS}; "
                f"got {self.minimum}..{self.maximum}"
            )

    def check(self, iterations: int) -> None:
        if iterations > self.maximum:
            raise KdfLimitError(
                f"the config blob asks for {iterations} PBKDF2 iterations; this operator accepts at most "
                f"{self.maximum} (--max-kdf-iterations)"
            )
        if iterations < self.minimum:
            raise KdfLimitError(
                f"the config blob asks for {iterations} PBKDF2 iterations; this operator requires at least "
                f"{self.minimum} (--min-kdf-iterations)"
            )


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
    """Reject KDF parameters vsync's readers reject (salt < 16 chars, iterations <= 0), and counts the crypto
    library cannot take (> 2**31 - 1)."""
    if len(salt) < MIN_SALT_CHARS:
        raise ConfigUnsupportedVersionError(f"salt is {len(salt)} characters; at least {MIN_SALT_CHARS} are required")
    check_iterations(iterations)


def check_iterations(iterations: int) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations <= 0:
        raise ConfigUnsupportedVersionError("iterations must be a positive integer")
    if iterations > MAX_SUPPORTED_ITERATIONS:
        raise KdfLimitError(f"iterations is {iterations}; the crypto library takes at most {MAX_SUPPORTED_ITERATIONS}")


def derive_key(passphrase: str, salt: str, iterations: int) -> DerivedKey:
    """PBKDF2-HMAC-SHA256(password=UTF-8(passphrase), salt=UTF-8(salt), iterations) -> 32-byte key."""
    check_iterations(iterations)
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=KEY_LENGTH, salt=salt.encode("utf-8"), iterations=iterations)
    return DerivedKey(kdf.derive(passphrase.encode("utf-8")))
