"""The `.sec` / `dotsec.schema` grammar (spec/dotsec-format.md §2, §8.1), quirks included.

dotsec parses with a PEG (ordered choice, no backtracking into a choice that succeeded) in which blanks and
comments may sit between any two tokens. That is where its quirks come from, and a regex-based dotenv
parser gets them wrong, so this is a small hand-written recursive-descent parser over the whole text:

* a `KEY=value` line with a blank or comment between `export`, the key, `=` and the value (`A = 1`,
  `export A=1`, `A=#x`, `A= 1`) parses but is *dropped* without a trace;
* `export` is matched greedily (`exporter=1` is key `er`);
* quoted values are the raw text between the quotes (no unescaping); a double-quoted value with a bad
  escape or no closing quote falls back to a bare value that keeps its quotes;
* a comment after a directive on the same line is a separate comment item (it detaches the directive).

The result is a flat list of items (`Directive`, `Pair`, `COMMENT`); `model.py` gives them meaning. Error
messages carry a line and column and what was expected, never text from the input (it may be a secret).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..errors import DotsecError, DotsecParseError

MAX_TEXT_CHARS = 1 << 20  # a ConfigMap holds at most 1 MiB; dotsec files are a few KiB
MAX_LINE_CHARS = 128 * 1024  # the longest ENC[...] (a 65,535-byte value) is about 87,500 characters
MAX_ITEMS = 50_000

FLAGS: Final = ("default-encrypt", "default-plaintext", "encrypt", "not-empty", "optional", "plaintext", "also-env")
TEXT_DIRECTIVES: Final = ("description", "provider", "key-id", "region")
NUMERIC_DIRECTIVES: Final = ("max-length", "max", "min-length", "min")  # longest first, as dotsec tries them
TYPE_WORDS: Final = ("string", "number", "boolean", "bool")
FORMAT_WORDS: Final = ("email", "ipv4", "ipv6", "semver", "url", "uuid", "date")
PUSH_TARGETS: Final = ("aws-secrets-manager", "aws-ssm")

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_QUOTED = re.compile(r'"[^"]*"')
_PUSH_PARAM = re.compile(r'[A-Za-z_\-]+="[^"]*"')
_HEADER_PARAM = re.compile(r"[A-Za-z\-]+=[^,)]+")
# quoted values, written as unrolled loops (fast on 80 KiB ciphertexts)
_DOUBLE = re.compile(r'"([^"\\]*(?:(?:\\["\\/bfnrt]|\\u[0-9A-Fa-f]{4})[^"\\]*)*)"')
_SINGLE = re.compile(r"'([^'\r\n]*(?:\r(?!\n)[^'\r\n]*)*)'")
_BACKTICK = re.compile(r"`([^`]*)`")
_TEXT_VALUE = re.compile(r"(?:(?! @)(?!\r\n)[^\n])+")
# Rust's char::is_whitespace (Unicode White_Space); str.strip() would also remove U+001C..U+001F.
UNICODE_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


@dataclass(frozen=True, slots=True)
class Directive:
    """One `@name[=value]`. `value` is the text the MAC and the schema hash use (§2.3), or None."""

    name: str
    value: str | None = None

    def canonical(self) -> str:
        return f"{self.name}={self.value or ''}"


@dataclass(frozen=True, slots=True)
class Pair:
    """A `KEY=value` entry. The value may be a secret (or ciphertext): it never appears in a repr."""

    key: str
    value: str

    def __repr__(self) -> str:
        return f"Pair(key={self.key!r}, value=<redacted>)"


class _Comment:
    __slots__ = ()

    def __repr__(self) -> str:
        return "COMMENT"


COMMENT: Final = _Comment()
Item = Directive | Pair | _Comment


def _is_ident(char: str) -> bool:
    return char.isascii() and (char.isalpha() or char in "_-")


def check_bounds(text: str, what: str, error: type[DotsecError] = DotsecParseError) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise error(f"{what} is {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    longest = max((len(line) for line in text.split("\n")), default=0)
    if longest > MAX_LINE_CHARS:
        raise error(f"{what} has a line of {longest} characters; the limit is {MAX_LINE_CHARS}")


class _Parser:
    def __init__(self, text: str, *, schema: bool, what: str, error: type[DotsecError]) -> None:
        self.text = text
        self.schema = schema
        self.what = what
        self.error = error
        self.items: list[Item] = []

    # -- errors and small matchers -------------------------------------------------------------------

    def fail(self, pos: int, expected: str) -> DotsecError:
        line = self.text.count("\n", 0, pos) + 1
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return self.error(f"{self.what}: line {line}, column {column}: {expected}")

    def char(self, pos: int) -> str:
        return self.text[pos] if pos < len(self.text) else ""

    def newline(self, pos: int) -> int:
        """Length of the newline at *pos* (LF or CR LF; a lone CR is ordinary text), else 0."""
        if self.text.startswith("\n", pos):
            return 1
        return 2 if self.text.startswith("\r\n", pos) else 0

    def starts_directive(self, pos: int) -> bool:
        """`#`, spaces, `@` and a letter, `_` or `-`: must be a directive line, never a comment."""
        probe = pos + 1
        while self.char(probe) == " ":
            probe += 1
        return self.char(probe) == "@" and _is_ident(self.char(probe + 1))

    def line_end(self, pos: int) -> int:
        """Where the newline after *pos* starts (before the CR of a CR LF), or the end of the text."""
        end = self.text.find("\n", pos)
        if end < 0:
            return len(self.text)
        return end - 1 if end > pos and self.text[end - 1] == "\r" else end

    def comment_end(self, pos: int) -> int | None:
        """End of a comment starting at *pos* (it runs to the newline), or None if none starts there."""
        if not (self.text.startswith("//", pos) or (self.char(pos) == "#" and not self.starts_directive(pos))):
            return None
        return self.line_end(pos)

    def skip(self, pos: int, *, emit: bool) -> tuple[int, bool]:
        """Skip the blanks and comments PEG allows between tokens; comments become items when *emit*."""
        start = pos
        while True:
            if self.char(pos) in (" ", "\t"):
                pos += 1
                continue
            end = self.comment_end(pos)
            if end is None:
                return pos, pos != start
            if emit:
                self.add(COMMENT, pos)
            pos = end

    def add(self, item: Item, pos: int) -> None:
        if len(self.items) >= MAX_ITEMS:
            raise self.fail(pos, f"more than {MAX_ITEMS} lines of directives, entries and comments")
        self.items.append(item)

    # -- the file -------------------------------------------------------------------------------------

    def parse(self) -> list[Item]:
        pos, end = 0, len(self.text)
        while True:
            pos, _ = self.skip(pos, emit=True)
            if pos >= end:
                return self.items
            if step := self.newline(pos):
                pos += step
                continue
            pos = self.line(pos)
            pos, _ = self.skip(pos, emit=True)
            if pos >= end:
                return self.items
            if not (step := self.newline(pos)):
                raise self.fail(pos, "expected the end of the line (one item per line)")
            pos += step

    def line(self, pos: int) -> int:
        char = self.char(pos)
        if char == "#":
            return self.directive_line(pos)
        if char == "@":
            raise self.fail(pos, "a bare directive: directives must start with '#'")
        return self.schema_key(pos) if self.schema else self.entry(pos)

    def schema_key(self, pos: int) -> int:
        match = _KEY.match(self.text, pos)
        if not match:
            raise self.fail(pos, "expected a key (a letter or '_', then letters, digits, '_', '-' or '.')")
        self.add(Pair(match.group(), ""), pos)
        return match.end()

    def entry(self, pos: int) -> int:
        """`export? KEY = value?`; blanks or comments between the tokens drop the whole entry (dotsec's quirk)."""
        if self.text.startswith("export", pos):
            pos += len("export")
        pos, dirty = self.skip(pos, emit=False)
        match = _KEY.match(self.text, pos)
        if not match:
            raise self.fail(pos, "expected a key (a letter or '_', then letters, digits, '_', '-' or '.')")
        key = match.group()
        pos, gap = self.skip(match.end(), emit=False)
        dirty |= gap
        if self.char(pos) != "=":
            raise self.fail(pos, "expected '=' after the key")
        pos, gap = self.skip(pos + 1, emit=False)
        dirty |= gap
        value, pos = self.value(pos)
        if not dirty:
            self.add(Pair(key, value), pos)
        return pos

    def value(self, pos: int) -> tuple[str, int]:
        if pos >= len(self.text) or self.newline(pos):
            return "", pos
        for pattern in (_DOUBLE, _SINGLE, _BACKTICK):
            if match := pattern.match(self.text, pos):
                return match.group(1), match.end()
        end = self.line_end(pos)  # a bare value: the rest of the line, trailing CRs removed, blanks kept
        return self.text[pos:end].rstrip("\r"), end

    # -- directives -----------------------------------------------------------------------------------

    def directive_line(self, pos: int) -> int:
        start = pos + 1
        while self.char(start) == " ":
            start += 1
        parsed = self.directive(start)
        if parsed is None:
            raise self.fail(start, "an unknown or malformed @directive")
        while parsed is not None:
            directive, pos = parsed
            self.add(directive, pos)
            following = pos
            while self.char(following) == " ":
                following += 1
            parsed = self.directive(following) if following > pos else None
        return pos

    def directive(self, pos: int) -> tuple[Directive, int] | None:
        """One `@...` directive at *pos* (dotsec's ordered choice), or None if none matches there."""
        if self.char(pos) != "@":
            return None
        name_at = pos + 1
        for flag in FLAGS:
            if self.word(name_at, flag):
                return Directive(flag), name_at + len(flag)
        for parse in (self.push, self.type_, self.format_, self.numeric, self.pattern, self.deprecated, self.text_):
            if parsed := parse(name_at):
                return parsed
        return self.header(name_at)

    def word(self, pos: int, word: str) -> bool:
        """*word* at *pos*, not followed by a letter, `_` or `-`."""
        return self.text.startswith(word, pos) and not _is_ident(self.char(pos + len(word)))

    def valued(self, pos: int, name: str, body: int | None) -> tuple[Directive, int] | None:
        if body is None:
            return None
        return Directive(name, self.text[pos + len(name) + 1 : body]), body

    def push(self, pos: int) -> tuple[Directive, int] | None:
        if not self.text.startswith("push=", pos):
            return None
        return self.valued(pos, "push", self.listed(pos + len("push="), self.push_target))

    def push_target(self, pos: int) -> int | None:
        name = next((target for target in PUSH_TARGETS if self.word(pos, target)), None)
        if name is None:
            return None
        pos += len(name)
        if self.char(pos) != "(":
            return pos
        end = self.listed(pos + 1, lambda at: self.regex_end(_PUSH_PARAM, at))
        return end + 1 if end is not None and self.char(end) == ")" else pos

    def listed(self, pos: int, item: Callable[[int], int | None]) -> int | None:
        """`item (',' spaces* item)*`; returns the end of the last item that matched."""
        end = item(pos)
        if end is None:
            return None
        while self.char(end) == ",":
            after = end + 1
            while self.char(after) == " ":
                after += 1
            following = item(after)
            if following is None:
                break
            end = following
        return end

    def regex_end(self, pattern: re.Pattern[str], pos: int) -> int | None:
        match = pattern.match(self.text, pos)
        return match.end() if match else None

    def type_(self, pos: int) -> tuple[Directive, int] | None:
        if not self.text.startswith("type=", pos):
            return None
        at = pos + len("type=")
        if self.text.startswith("enum(", at):
            end = self.listed(at + len("enum("), lambda item: self.regex_end(_QUOTED, item))
            return self.valued(pos, "type", end + 1 if end is not None and self.char(end) == ")" else None)
        word = next((word for word in TYPE_WORDS if self.word(at, word)), None)
        return self.valued(pos, "type", at + len(word) if word else None)

    def format_(self, pos: int) -> tuple[Directive, int] | None:
        if not self.text.startswith("format=", pos):
            return None
        at = pos + len("format=")
        word = next((word for word in FORMAT_WORDS if self.word(at, word)), None)
        return self.valued(pos, "format", at + len(word) if word else None)

    def numeric(self, pos: int) -> tuple[Directive, int] | None:
        name = next((name for name in NUMERIC_DIRECTIVES if self.word(pos, name)), None)
        if name is None or self.char(pos + len(name)) != "=":
            return None
        return self.valued(pos, name, self.regex_end(_NUMBER, pos + len(name) + 1))

    def pattern(self, pos: int) -> tuple[Directive, int] | None:
        if not self.text.startswith('pattern="', pos):
            return None
        end = self.regex_end(_QUOTED, pos + len("pattern="))
        if end is None:
            return None
        return Directive("pattern", self.text[pos + len('pattern="') : end - 1]), end

    def deprecated(self, pos: int) -> tuple[Directive, int] | None:
        if not self.word(pos, "deprecated"):
            return None
        end = pos + len("deprecated")
        if self.char(end) == "=" and (quoted := self.regex_end(_QUOTED, end + 1)):
            return Directive("deprecated", self.text[end + 2 : quoted - 1]), quoted
        return Directive("deprecated"), end

    def text_(self, pos: int) -> tuple[Directive, int] | None:
        name = next((name for name in TEXT_DIRECTIVES if self.word(pos, name)), None)
        if name is None or self.char(pos + len(name)) != "=":
            return None
        match = _TEXT_VALUE.match(self.text, pos + len(name) + 1)
        if not match:
            return None
        return Directive(name, match.group().strip(UNICODE_WHITESPACE)), match.end()

    def header(self, pos: int) -> tuple[Directive, int] | None:
        if not self.text.startswith("dotsec(", pos):
            return None
        body = pos + len("dotsec(")
        end = self.listed(body, lambda item: self.regex_end(_HEADER_PARAM, item))
        if end is None or self.char(end) != ")":
            return None
        return Directive("dotsec", self.text[body:end]), end + 1


def parse(text: str, *, what: str = ".sec file") -> list[Item]:
    """Items of a `.sec` file in order. DotsecParseError if it does not parse or breaks a bound."""
    check_bounds(text, what)
    return _Parser(text, schema=False, what=what, error=DotsecParseError).parse()


def parse_schema_items(text: str, error: type[DotsecError], *, what: str = "schema") -> list[Item]:
    """Items of a schema (bare keys instead of entries; each key is a `Pair` with an empty value)."""
    check_bounds(text, what, error)
    return _Parser(text, schema=True, what=what, error=error).parse()
