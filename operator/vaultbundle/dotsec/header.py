"""The `@dotsec(format=v3, mac=..., dek=...)` header (spec/dotsec-format.md §3), checked in dotsec's order.

Base64 in the format is strict (padding required, no whitespace, unused bits zero): Python's decoder alone
accepts more, so every decode is re-encoded and compared.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ..errors import DotsecHeaderInvalidError, DotsecUnsupportedFormatError
from .grammar import UNICODE_WHITESPACE

FORMAT = "v3"
MAC_LENGTH = 32
MAX_MAC_CHARS = 64
MAX_DEK_CHARS = 2048


def strict_b64decode(text: str) -> bytes | None:
    """RFC 4648 standard alphabet with padding, decoded strictly; None if *text* is not exactly that."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


@dataclass(frozen=True, slots=True)
class Header:
    mac: bytes
    wrapped_dek: bytes

    def __repr__(self) -> str:
        return f"Header(mac=<{len(self.mac)} bytes>, wrapped_dek=<{len(self.wrapped_dek)} bytes>)"


def _fields(body: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in body.split(","):
        name, sep, value = part.strip(UNICODE_WHITESPACE).partition("=")
        if not sep:
            continue
        name, value = name.strip(UNICODE_WHITESPACE), value.strip(UNICODE_WHITESPACE)
        if name in ("mac", "dek") and name in fields:
            raise DotsecHeaderInvalidError(f"@dotsec(...) field `{name}` appears more than once")
        fields[name] = value  # `format`: the last one wins; unknown names are ignored
    return fields


def parse_header(body: str) -> Header:
    """The header's fields from the text between its parentheses. HeaderInvalid / UnsupportedFormat."""
    fields = _fields(body)
    if "format" not in fields:
        raise DotsecHeaderInvalidError("@dotsec(...) is missing required param: format")
    if fields["format"] != FORMAT:
        raise DotsecUnsupportedFormatError(
            f"unsupported wire-format {fields['format'][:16]!r}; only {FORMAT!r} is understood"
        )
    for name in ("mac", "dek"):
        if name not in fields:
            raise DotsecHeaderInvalidError(f"@dotsec(...) is missing required param: {name}")
    if len(fields["mac"]) > MAX_MAC_CHARS:
        raise DotsecHeaderInvalidError(f"@dotsec(...) param `mac` is longer than {MAX_MAC_CHARS} characters")
    if len(fields["dek"]) > MAX_DEK_CHARS:
        raise DotsecHeaderInvalidError(f"@dotsec(...) param `dek` is longer than {MAX_DEK_CHARS} characters")
    mac = strict_b64decode(fields["mac"])
    if mac is None or len(mac) != MAC_LENGTH:
        raise DotsecHeaderInvalidError(
            f"@dotsec(...) param `mac` is malformed: expected {MAC_LENGTH} bytes of strict padded base64"
        )
    dek = strict_b64decode(fields["dek"])
    if not dek:
        raise DotsecHeaderInvalidError("@dotsec(...) param `dek` is malformed: not strict padded base64, or empty")
    return Header(mac=mac, wrapped_dek=dek)
