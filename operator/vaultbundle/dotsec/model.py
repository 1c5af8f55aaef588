"""What the parsed items of a `.sec` file mean (spec/dotsec-format.md §4): file-level directives, the
configuration, the header, and each entry with the directives that attach to it.

dotsec's attachment rules are subtle and the file MAC depends on them, so they live here alone:
file-level directives are *all* directives before the first entry (the first entry's own included); a
comment empties the pending directive list (blank lines do not); and `@default-encrypt` anywhere in the
file makes every entry without `@encrypt`/`@plaintext` start with a synthetic `encrypt`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DotsecParseError
from .grammar import COMMENT, Directive, Item, Pair, parse

MAX_ENTRIES = 10_000
NEVER_PENDING = frozenset({"default-encrypt", "default-plaintext", "provider", "key-id", "region", "dotsec"})
ENC_PREFIX, ENC_SUFFIX = "ENC[", "]"


def is_encrypted(value: str) -> bool:
    """dotsec's reader rule: a value is ciphertext iff it starts with `ENC[` and ends with `]`."""
    return value.startswith(ENC_PREFIX) and value.endswith(ENC_SUFFIX)


@dataclass(frozen=True, slots=True)
class Entry:
    """One `KEY=value` with its directives (§4.2). `value` is as stored (ciphertext or plaintext)."""

    key: str
    value: str
    directives: tuple[Directive, ...]
    synthetic_encrypt: bool = False  # the `encrypt` inserted because of `@default-encrypt`

    @property
    def encrypted(self) -> bool:
        return is_encrypted(self.value)

    def __repr__(self) -> str:
        kind = "ENC" if self.encrypted else "plaintext"
        return f"Entry(key={self.key!r}, value=<{kind}, redacted>, directives={len(self.directives)})"


@dataclass(frozen=True, slots=True)
class SecFile:
    file_directives: tuple[Directive, ...]  # before the first entry, in file order, without `dotsec`
    header: str | None  # the body of the first `@dotsec(...)` before the first entry
    entries: tuple[Entry, ...]

    def setting(self, name: str) -> str | None:
        """`provider`, `key-id` or `region` from the file-level directives: the last one wins."""
        values = [directive.value for directive in self.file_directives if directive.name == name]
        return values[-1] if values else None


def _file_default_encrypts(items: list[Item]) -> bool:
    for item in items:
        if isinstance(item, Directive) and item.name in ("default-encrypt", "default-plaintext"):
            return item.name == "default-encrypt"
    return False


def _entries(items: list[Item]) -> tuple[Entry, ...]:
    default_encrypt = _file_default_encrypts(items)
    entries: list[Entry] = []
    pending: list[Directive] = []
    for item in items:
        if item is COMMENT:
            pending.clear()
        elif isinstance(item, Directive):
            if item.name not in NEVER_PENDING:
                pending.append(item)
        elif isinstance(item, Pair):
            directives, pending = tuple(pending), []
            synthetic = default_encrypt and not any(d.name in ("encrypt", "plaintext") for d in directives)
            if synthetic:
                directives = (Directive("encrypt"), *directives)
            entries.append(Entry(item.key, item.value, directives, synthetic))
            if len(entries) > MAX_ENTRIES:
                raise DotsecParseError(f".sec file has more than {MAX_ENTRIES} entries")
    return tuple(entries)


def build(items: list[Item]) -> SecFile:
    preamble: list[Directive] = []
    for item in items:
        if isinstance(item, Pair):
            break
        if isinstance(item, Directive):
            preamble.append(item)
    header = next((directive.value for directive in preamble if directive.name == "dotsec"), None)
    return SecFile(
        file_directives=tuple(directive for directive in preamble if directive.name != "dotsec"),
        header=header,
        entries=_entries(items),
    )


def load(text: str) -> SecFile:
    """Parse and interpret a `.sec` text (§2, §4). DotsecParseError if it does not parse."""
    return build(parse(text))
