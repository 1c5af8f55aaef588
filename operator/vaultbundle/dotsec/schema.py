"""`dotsec.schema` (spec/dotsec-format.md §8.1, §8.3): an ordered map from key to directives, and the
canonical hash of it that the file MAC binds (so a file verifies only with the schema it was written with).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..errors import DotsecSchemaInvalidError
from .grammar import COMMENT, Directive, Pair, parse_schema_items

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
NOT_HASHED = frozenset({"description", "deprecated"})
MAX_SCHEMA_KEYS = 10_000


@dataclass(frozen=True)
class Schema:
    rules: dict[str, tuple[Directive, ...]]  # key -> directives, in schema order
    sha256: str

    def first(self, key: str, name: str) -> Directive | None:
        return next((d for d in self.rules.get(key, ()) if d.name == name), None)


def canonical_bytes(rules: dict[str, tuple[Directive, ...]]) -> bytes:
    lines = ["schema-canonical-v1\n"]
    for key, directives in rules.items():
        lines.append(f"{key}\n")
        hashed = [directive for directive in directives if directive.name not in NOT_HASHED]
        for directive in sorted(hashed, key=lambda directive: directive.name.encode("utf-8")):
            lines.append(f"  @{directive.canonical()}\n")
    return "".join(lines).encode("utf-8")


def parse_schema(text: str) -> Schema:
    """Parse a schema text. A key given twice keeps its first position and takes the later directives."""
    rules: dict[str, tuple[Directive, ...]] = {}
    pending: list[Directive] = []
    for item in parse_schema_items(text, DotsecSchemaInvalidError):
        if item is COMMENT:
            pending.clear()
        elif isinstance(item, Directive):
            pending.append(item)
        elif isinstance(item, Pair):
            rules[item.key], pending = tuple(pending), []
            if len(rules) > MAX_SCHEMA_KEYS:
                raise DotsecSchemaInvalidError(f"schema has more than {MAX_SCHEMA_KEYS} keys")
    return Schema(rules=rules, sha256=hashlib.sha256(canonical_bytes(rules)).hexdigest())
