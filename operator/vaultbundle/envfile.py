"""`.env` text exactly as vsync reads it (spec §10), and a writer whose output that reader reads back.

vsync's rules, quirks included:
* lines split on `\\n` / `\\r\\n`, each trimmed as JavaScript's `String.prototype.trim()` does (`js_trim`):
  the BOM U+FEFF is trimmed, U+001C-U+001F and U+0085 are not (Python's `str.strip()` does the opposite);
* blank lines, `#` comments and lines without `=` are skipped;
* key = text before the first `=`, trimmed; value = the rest, trimmed, then one pair of matching
  surrounding `"…"` or `'…'` removed (only when at least 2 characters long);
* no escape processing, no `export ` handling (`export A=1` gives key `export A`), no inline-comment
  stripping (`A=b # c` gives `b # c`), no multi-line values (continuation lines have no `=` and are dropped);
* duplicate keys are all emitted in order; when folded into a mapping, the last one wins.
vsync's `sync` also expands `~/`, `${HOME}` and `${VAULT_ROOT}` on the laptop that runs it; a cluster has no
such home, so we take values literally.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping

from .errors import VaultFolderError

# ECMAScript WhiteSpace (incl. every Unicode Zs space separator) + LineTerminator: what JS trim() removes.
JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def js_trim(text: str) -> str:
    """`text.trim()` as vsync (JavaScript) does it."""
    return text.strip(JS_WHITESPACE)


def iter_pairs(text: str) -> Iterator[tuple[str, str]]:
    """The pairs one at a time (a caller can stop early, e.g. at a key-count limit, without a list of lines)."""
    for raw_line in io.StringIO(text):  # splits on "\n" only, like str.split("\n")
        line = js_trim(raw_line.removesuffix("\n").removesuffix("\r"))
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = js_trim(key), js_trim(value)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        yield key, value


def parse_pairs(text: str) -> list[tuple[str, str]]:
    return list(iter_pairs(text))


def parse(text: str) -> dict[str, str]:
    return dict(parse_pairs(text))


def render(values: Mapping[str, str]) -> str:
    """Write values so that `parse` returns them unchanged; each value goes in double quotes.

    Values vsync's reader cannot carry (line breaks) and keys it would mangle are refused by name.
    """
    bad = sorted(unrepresentable(values.items()))
    if bad:
        raise VaultFolderError(
            "cannot write these keys to a .env file (line breaks, or a key with '=', '#' or spaces at its ends): "
            + ", ".join(bad),
            hint="use --json --reveal, or store such values as files",
        )
    return "".join(f'{key}="{value}"\n' for key, value in values.items())


def unrepresentable(items: Iterable[tuple[str, str]]) -> list[str]:
    return [
        key
        for key, value in items
        if "\n" in value
        or "\r" in value
        or "\n" in key
        or "\r" in key
        or "=" in key
        or not key
        or key != js_trim(key)
        or key.startswith("#")
    ]
