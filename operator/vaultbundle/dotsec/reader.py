"""Opening a `.sec` file: dotsec's read algorithm (spec/dotsec-format.md §9) with our reader profile (§11).

`open_sec(text, key, schema)` is pure apart from what the injected `KeyUnwrapper` does (a KMS call), so a
reconcile can run it in a worker thread. The order, and so the error class for any input, is dotsec's:
schema, parse, provider, header, DEK, MAC (constant time, before any value is decrypted), values. Then ours:
the plaintext policy and the schema check, which raise before anything could be fanned out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypedDict

from ..errors import (
    DotsecDekUnwrapFailedError,
    DotsecHeaderMissingError,
    DotsecIdentityInvalidError,
    DotsecPlaintextRefusedError,
    DotsecProviderInvalidError,
    SchemaViolationError,
)
from . import mac
from .header import parse_header
from .keys import KeyUnwrapper
from .model import SecFile, load
from .rules import Finding, Subject, check
from .schema import EMPTY_SHA256, Schema, parse_schema
from .values import decrypt_value

PROVIDERS = ("local", "aws")


class PlaintextPolicy(StrEnum):
    """What to do with entries whose value is not ENC[...] (the MAC does not cover plaintext values)."""

    ALLOW = "allow"
    WARN = "warn"
    REFUSE = "refuse"


class Values(Mapping[str, str]):
    """The decrypted entries: a mapping where the last duplicate wins (dotsec's JSON), plus `pairs` in file
    order with duplicates. Its repr names the keys only."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = tuple(pairs)
        self._last = dict(pairs)

    def __getitem__(self, key: str) -> str:
        return self._last[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def __repr__(self) -> str:
        return f"<dotsec Values: {len(self._last)} keys {sorted(self._last)}, values redacted>"


@dataclass(frozen=True)
class Report:
    """What was read, for status, Events and the CLI: names and counts only."""

    provider: str | None
    schema_sha256: str
    mac_verified: bool
    keys: tuple[str, ...]  # unique, file order
    encrypted_keys: tuple[str, ...]
    plaintext_keys: tuple[str, ...]
    duplicates: tuple[str, ...]
    warnings: tuple[str, ...] = field(default=())
    unchecked_keys: tuple[str, ...] = field(default=())  # encrypted values a key-less validation could not see
    file_mac: bytes = field(default=b"", repr=False)  # the verified header MAC: identifies the file's content


def _schema(schema: Schema | str | None) -> Schema | None:
    return parse_schema(schema) if isinstance(schema, str) else schema


def _provider(sec: SecFile) -> str | None:
    provider = sec.setting("provider")
    if provider is not None and provider not in PROVIDERS:
        raise DotsecProviderInvalidError(f"unknown encryption provider {provider[:32]!r}, expected 'aws' or 'local'")
    return provider


def _unwrap(sec: SecFile, provider: str | None, wrapped: bytes, key: KeyUnwrapper) -> bytes:
    if provider is None:
        raise DotsecProviderInvalidError("the file has a header but no @provider (encryption engine is required)")
    if key.provider != provider:
        if provider == "local":
            raise DotsecIdentityInvalidError("the file uses @provider=local (age) but no age identity was given")
        raise DotsecDekUnwrapFailedError("the file uses @provider=aws (KMS) but an age identity was given")
    return key.unwrap(wrapped, file_region=sec.setting("region"))


class _Summary(TypedDict):
    keys: tuple[str, ...]
    encrypted_keys: tuple[str, ...]
    plaintext_keys: tuple[str, ...]
    duplicates: tuple[str, ...]


def _summary(sec: SecFile) -> _Summary:
    keys = list(dict.fromkeys(entry.key for entry in sec.entries))
    counts = {key: sum(entry.key == key for entry in sec.entries) for key in keys}
    return {
        "keys": tuple(keys),
        "encrypted_keys": tuple(dict.fromkeys(e.key for e in sec.entries if e.encrypted)),
        "plaintext_keys": tuple(dict.fromkeys(e.key for e in sec.entries if not e.encrypted)),
        "duplicates": tuple(key for key in keys if counts[key] > 1),
    }


def _policy_warnings(sec: SecFile, plaintext: PlaintextPolicy) -> list[str]:
    plain = list(dict.fromkeys(entry.key for entry in sec.entries if not entry.encrypted))
    if not plain or plaintext is PlaintextPolicy.ALLOW:
        return []
    names = ", ".join(plain)
    if plaintext is PlaintextPolicy.REFUSE:
        raise DotsecPlaintextRefusedError(f"plaintext (unauthenticated) values refused by policy: {names}")
    return [f"{names}: plaintext value(s), not covered by the file MAC"]


def _enforce(findings: list[Finding]) -> list[str]:
    errors = [str(finding) for finding in findings if finding.error]
    if errors:
        raise SchemaViolationError(errors)
    return [str(finding) for finding in findings if not finding.error]


def _duplicate_warnings(duplicates: tuple[str, ...]) -> list[str]:
    return [f"{key}: appears more than once; the last occurrence wins" for key in duplicates]


def open_sec(
    text: str,
    key: KeyUnwrapper,
    schema: Schema | str | None = None,
    *,
    plaintext: PlaintextPolicy = PlaintextPolicy.ALLOW,
    validate: bool = True,
) -> tuple[Values, Report]:
    """Verify and decrypt a `.sec` text. Returns the values and a report (names only); raises a
    `DotsecError` subclass named after the contract's §10 class, never with a value in it.

    *schema* (a parsed `Schema` or its text) is bound through the MAC and, with *validate*, enforced:
    violations raise SchemaViolationError. Without a schema the entries' inline directives are checked.
    """
    parsed_schema = _schema(schema)
    schema_sha256 = parsed_schema.sha256 if parsed_schema else EMPTY_SHA256
    sec = load(text)
    provider = _provider(sec)
    if sec.header is None:
        raise DotsecHeaderMissingError(
            "no @dotsec(...) header before the first entry; a .sec without one is unauthenticated and refused"
        )
    header = parse_header(sec.header)
    dek = _unwrap(sec, provider, header.wrapped_dek, key)
    mac.verify(dek, sec, schema_sha256, header.mac, schema_given=parsed_schema is not None)
    pairs = [(e.key, decrypt_value(dek, e.key, e.value) if e.encrypted else e.value) for e in sec.entries]
    summary = _summary(sec)
    warnings = _policy_warnings(sec, plaintext) + _duplicate_warnings(summary["duplicates"])
    if validate:
        subjects = [
            Subject(e.key, value, e.directives, e.synthetic_encrypt)
            for e, (_, value) in zip(sec.entries, pairs, strict=True)
        ]
        warnings += _enforce(check(subjects, parsed_schema))
    report = Report(provider, schema_sha256, True, warnings=tuple(warnings), file_mac=header.mac, **summary)
    return Values(pairs), report


def validate_structure(
    text: str, schema: Schema | str | None = None, *, plaintext: PlaintextPolicy = PlaintextPolicy.ALLOW
) -> Report:
    """What can be checked without a key: grammar, provider, header, the schema's required / unknown keys
    and inline directives, and the rules on plaintext values. Encrypted values are listed as unchecked;
    the MAC cannot be verified (`mac_verified` is False). Raises like `open_sec`."""
    parsed_schema = _schema(schema)
    sec = load(text)
    provider = _provider(sec)
    if sec.header is None:
        raise DotsecHeaderMissingError("no @dotsec(...) header before the first entry")
    parse_header(sec.header)
    summary = _summary(sec)
    subjects = [Subject(e.key, e.value, e.directives, e.synthetic_encrypt, not e.encrypted) for e in sec.entries]
    warnings = _policy_warnings(sec, plaintext) + _duplicate_warnings(summary["duplicates"])
    warnings += _enforce(check(subjects, parsed_schema))
    return Report(
        provider,
        parsed_schema.sha256 if parsed_schema else EMPTY_SHA256,
        False,
        warnings=tuple(warnings),
        unchecked_keys=summary["encrypted_keys"],
        **summary,
    )
