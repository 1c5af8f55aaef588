"""Schema evaluation exactly as `dotsec validate` does it (spec/dotsec-format.md §8.5), for `.sec` values
and, through `check_values`, for any source's key/value map (a vsync bundle too).

dotsec's semantics, reproduced: every schema key is required unless `@optional`; a key the schema lacks is
only a warning; inline schema directives in a `.sec` are an error when a schema exists (the synthetic
`encrypt` of `@default-encrypt` excepted); `@type=number` is Rust's f64 grammar (`1e0`, `NaN`, `inf` are
numbers, `" 5"` is not); `@min`/`@max` apply only to numbers; lengths count Unicode scalars; `@pattern` is
an *unanchored* search; the first directive of a name wins. Findings name the key and the rule, never a
value (dotsec prints plaintext values; we print none).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import regex

from .grammar import Directive
from .schema import Schema

SCHEMA_DIRECTIVES = frozenset(
    {
        "type", "push", "encrypt", "plaintext", "format", "pattern", "min", "max", "min-length", "max-length",
        "optional", "not-empty", "deprecated", "description", "also-env",
    }
)  # fmt: skip
MAX_PATTERN_BYTES = 1024
PATTERN_TIMEOUT_SECONDS = 1.0  # Rust's regex is linear-time; Python's backtracks, so a hostile pattern is cut off
_RUST_F64 = re.compile(r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)", re.IGNORECASE)
_RUST_UNSIGNED = re.compile(r"\+?[0-9]+")
_NOT_IN_RUST_REGEX = ("(?=", "(?!", "(?<=", "(?<!", "(?>", "(?(", "(?R", "(?&", "(?|")
_ENUM_ITEM = re.compile(r'"([^"]*)"')


@dataclass(frozen=True, slots=True)
class Subject:
    """One key/value to check, with the `.sec` entry's inline directives. The value is never shown."""

    key: str
    value: str
    directives: tuple[Directive, ...] = ()
    synthetic_encrypt: bool = False
    value_known: bool = True  # False for ciphertext checked without a key: only key-level rules apply

    def __repr__(self) -> str:
        return f"Subject(key={self.key!r}, value=<redacted>)"


@dataclass(frozen=True, slots=True)
class Finding:
    key: str
    rule: str
    message: str
    error: bool = True

    def __str__(self) -> str:
        return f"{self.key}: {self.rule}: {self.message}"


def _rule(directive: Directive) -> str:
    return f"@{directive.name}" if directive.value is None else f"@{directive.name}={directive.value}"


def _unsigned(text: str, bits: int) -> int | None:
    if not _RUST_UNSIGNED.fullmatch(text) or int(text) >= 1 << bits:
        return None
    return int(text)


def rust_f64(text: str) -> float | None:
    """`text.parse::<f64>()`: None where Rust refuses (blanks, `_`, hex), else the number."""
    return float(text) if _RUST_F64.fullmatch(text) else None


def _email(value: str) -> bool:
    at = value.find("@")
    domain = value[at + 1 :] if at >= 0 else ""
    dot = domain.rfind(".")
    return at > 0 and dot > 0 and dot < len(domain) - 1


def _uuid(value: str) -> bool:
    parts = value.split("-")
    hexdigits = set("0123456789abcdefABCDEF")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(set(p) <= hexdigits for p in parts)


def _ipv6(value: str) -> bool:
    parts = value.split(":")
    hexdigits = set("0123456789abcdefABCDEF")
    return 2 <= len(parts) <= 8 and all(len(p) <= 4 and set(p) <= hexdigits for p in parts) and any(parts)


def _date(value: str) -> bool:
    parts = value.split("-")
    if [len(p) for p in parts] != [4, 2, 2] or not all(p.isascii() and p.isdigit() for p in parts):
        return False
    year, month, day = (int(p) for p in parts)
    longest = 29 if month == 2 else 30 if month in (4, 6, 9, 11) else 31
    return year > 0 and 1 <= month <= 12 and 1 <= day <= longest


FORMATS: dict[str, Callable[[str], bool]] = {
    "email": _email,
    "url": lambda value: value.startswith(("http://", "https://")),
    "uuid": _uuid,
    "ipv4": lambda value: len(parts := value.split(".")) == 4 and all(_unsigned(p, 8) is not None for p in parts),
    "ipv6": _ipv6,
    "date": _date,
    "semver": lambda value: (
        len(parts := value.split("-")[0].split(".")) == 3 and all(_unsigned(p, 64) is not None for p in parts)
    ),
}


def _unsupported_syntax(pattern: str) -> str | None:
    """Constructs Rust's regex crate rejects but Python's `regex` would accept."""
    position, in_class = 0, False
    while position < len(pattern):
        char = pattern[position]
        if char == "\\":
            if not in_class and pattern[position + 1 : position + 2].isdigit():
                return "backreferences are not supported"
            position += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif pattern.startswith(_NOT_IN_RUST_REGEX, position):
            return "look-around, atomic groups, conditionals and recursion are not supported"
        position += 1
    return None


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern[str] | str:
    """The compiled pattern, or why it is invalid (as Rust's regex crate would refuse it)."""
    if len(pattern.encode("utf-8")) > MAX_PATTERN_BYTES:
        return f"the pattern exceeds {MAX_PATTERN_BYTES} bytes"
    if reason := _unsupported_syntax(pattern):
        return f"invalid pattern: {reason}"
    try:
        return regex.compile(pattern)
    except (regex.error, ValueError, RecursionError) as exc:
        return f"invalid pattern: {str(exc).split(' at position')[0][:80]}"


def _pattern(value: str, pattern: str) -> str | None:
    compiled = _compiled(pattern)
    if isinstance(compiled, str):
        return compiled
    try:
        matched = compiled.search(value, timeout=PATTERN_TIMEOUT_SECONDS) is not None
    except TimeoutError:
        return f"matching took longer than {PATTERN_TIMEOUT_SECONDS:g} s (simplify the pattern)"
    return None if matched else "does not match the pattern"


def _type(value: str, declared: str) -> str | None:
    if declared == "number":
        return None if rust_f64(value) is not None else "expected a number"
    if declared in ("boolean", "bool"):
        return None if value in ("true", "false", "1", "0") else "expected true, false, 1 or 0"
    if declared.startswith("enum(") and declared.endswith(")"):
        return None if value in _ENUM_ITEM.findall(declared[5:-1]) else "not one of the enum's values"
    return None  # string, or a type dotsec does not know: anything goes


def _bounds(value: str, first: Callable[[str], Directive | None]) -> Iterable[tuple[Directive, str]]:
    typed = first("type")
    number = rust_f64(value) if typed is not None and typed.value == "number" else None
    if number is not None:
        for name, below in (("min", True), ("max", False)):
            if (limit := first(name)) is not None and limit.value is not None:
                bound = float(limit.value)
                if (number < bound) if below else (number > bound):
                    yield limit, "below the minimum" if below else "above the maximum"
    for name, shorter in (("min-length", True), ("max-length", False)):
        if (limit := first(name)) is None or limit.value is None:
            continue
        length = _unsigned(limit.value, 64)
        if length is None:
            yield limit, "is not a valid integer length"
        elif (len(value) < length) if shorter else (len(value) > length):
            yield limit, "shorter than the minimum length" if shorter else "longer than the maximum length"


def _constraints(subject: Subject, directives: tuple[Directive, ...]) -> list[Finding]:
    def first(name: str) -> Directive | None:
        return next((directive for directive in directives if directive.name == name), None)

    key, value = subject.key, subject.value
    problems: list[tuple[Directive, str | None]] = []
    if not subject.value_known:
        directives = tuple(directive for directive in directives if directive.name == "deprecated")
    if (typed := first("type")) is not None and typed.value is not None:
        problems.append((typed, _type(value, typed.value)))
    if (shape := first("format")) is not None and shape.value in FORMATS:
        problems.append((shape, None if FORMATS[shape.value](value) else f"expected {shape.value} format"))
    if (pattern := first("pattern")) is not None:
        problems.append((pattern, _pattern(value, pattern.value or "")))
    problems += list(_bounds(value, first))
    if (not_empty := first("not-empty")) is not None and not value:
        problems.append((not_empty, "must not be empty"))
    findings = [Finding(key, _rule(directive), message) for directive, message in problems if message]
    if (deprecated := first("deprecated")) is not None:
        findings.append(Finding(key, "@deprecated", f"deprecated: {deprecated.value or 'no reason given'}", False))
    return findings


def check(subjects: Iterable[Subject], schema: Schema | None) -> list[Finding]:
    """Every finding (errors and warnings) for *subjects* in dotsec's order: with a schema, missing keys,
    unknown keys, inline directives, then each value; without one, each entry's own inline directives."""
    subjects = list(subjects)
    if schema is None:
        return [finding for subject in subjects for finding in _constraints(subject, subject.directives)]
    present = {subject.key for subject in subjects}
    findings = [
        Finding(key, "required", "required by the schema but missing")
        for key, directives in schema.rules.items()
        if key not in present and not any(directive.name == "optional" for directive in directives)
    ]
    findings += [
        Finding(subject.key, "schema", "not defined in the schema", False)
        for subject in subjects
        if subject.key not in schema.rules
    ]
    for subject in subjects:
        inline = subject.directives[1:] if subject.synthetic_encrypt else subject.directives
        findings += [
            Finding(subject.key, _rule(d), "inline directive not allowed with a schema (dotsec remove-directives)")
            for d in inline
            if d.name in SCHEMA_DIRECTIVES
        ]
    for subject in subjects:
        if subject.key in schema.rules:
            findings += _constraints(subject, schema.rules[subject.key])
    return findings


def check_values(values: Mapping[str, str], schema: Schema) -> list[Finding]:
    """A schema check of any key/value map (e.g. a vsync bundle's), as if it were a `.sec` without directives."""
    return check((Subject(key, value) for key, value in values.items()), schema)
