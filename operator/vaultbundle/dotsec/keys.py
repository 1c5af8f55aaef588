"""Unwrapping the file's DEK (spec/dotsec-format.md §5). The reader asks a `KeyUnwrapper` for it: an age
identity here (pure computation through pyrage, the rage binding), or the AWS KMS adapter in
`vaultbundle.dotsec_kms` (network I/O, kept outside this pure package). Anything with `provider` and
`unwrap()` works, so a reconcile can inject its own (a cached or a stubbed one).

Identities come from the caller, never from a path named by the file (§11): `@key-id` is not a path here.
"""

from __future__ import annotations

from typing import Protocol

import pyrage

from ..errors import DotsecDekUnwrapFailedError, DotsecIdentityInvalidError

DEK_LENGTH = 32
MAX_AGE_WRAPPED = 1024
IDENTITY_PREFIX = "AGE-SECRET-KEY-"


class KeyUnwrapper(Protocol):
    """Turns the header's wrapped DEK into the 32-byte DEK; raises the dotsec error classes."""

    provider: str  # the `@provider` it serves: "local" (age) or "aws" (KMS)

    def unwrap(self, wrapped: bytes, *, file_region: str | None) -> bytes: ...


def check_dek(dek: bytes, source: str) -> bytes:
    if len(dek) != DEK_LENGTH:
        raise DotsecDekUnwrapFailedError(f"{source} returned {len(dek)} bytes; a dotsec DEK is {DEK_LENGTH}")
    return dek


class AgeIdentity:
    """An age X25519 identity (`AGE-SECRET-KEY-1...`). Parsed when used, so that a broken file is reported
    before a broken identity (dotsec's order); the identity never appears in a repr or an error."""

    provider = "local"
    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "AgeIdentity(<redacted>)"

    @classmethod
    def from_key_file(cls, text: str) -> AgeIdentity:
        """dotsec's key-file rule: the first line that begins with `AGE-SECRET-KEY-`, trimmed (age-keygen
        comment lines are fine). The whole value is trimmed first (a Secret's trailing newline is harmless)."""
        for line in text.strip().splitlines():
            if line.startswith(IDENTITY_PREFIX):
                return cls(line.strip())
        return cls("")

    def unwrap(self, wrapped: bytes, *, file_region: str | None = None) -> bytes:
        del file_region  # age has no region
        if len(wrapped) > MAX_AGE_WRAPPED:
            raise DotsecDekUnwrapFailedError(f"wrapped DEK is {len(wrapped)} bytes; max allowed is {MAX_AGE_WRAPPED}")
        if not self._secret:
            raise DotsecIdentityInvalidError("no age identity: no line begins with AGE-SECRET-KEY-")
        try:
            identity = pyrage.x25519.Identity.from_str(self._secret)
        except pyrage.IdentityError as exc:
            raise DotsecIdentityInvalidError(f"invalid age identity: {_age_reason(exc, self._secret)}") from None
        try:
            dek = pyrage.decrypt(wrapped, [identity])
        except pyrage.DecryptError as exc:
            raise DotsecDekUnwrapFailedError(f"age decrypt error: {_age_reason(exc, self._secret)}") from None
        return check_dek(dek, "age")


def _age_reason(exc: Exception, secret: str) -> str:
    """rage's first message line ("No matching keys found", "invalid Bech32 encoding"), unless it quotes
    any part of the identity."""
    message = (str(exc).splitlines() or [""])[0][:120]
    if not message or any(part and part.lower() in message.lower() for part in (secret, secret[15:40])):
        return type(exc).__name__
    return message
