"""The file MAC (spec/dotsec-format.md §7): HMAC-SHA256 under the DEK over canonical bytes that bind entry
names and order, every file-level directive, the directives and exact ciphertext of encrypted entries, and
the schema's hash. Plaintext values, comments, blank lines, quoting and the header line are not covered.
"""

from __future__ import annotations

import hashlib
import hmac

from ..errors import DotsecMacMismatchError
from .grammar import Directive
from .model import SecFile

PREFIX = "dotsec-mac-v3\n"


def _sorted(directives: tuple[Directive, ...]) -> list[Directive]:
    return sorted(directives, key=lambda directive: directive.name.encode("utf-8"))  # stable, byte order


def canonical_bytes(sec: SecFile, schema_sha256: str) -> bytes:
    lines = [PREFIX, f"schema-sha256={schema_sha256}\n"]
    lines += [f"file-directive:{directive.canonical()}\n" for directive in _sorted(sec.file_directives)]
    for entry in sec.entries:
        lines.append(f"entry:{entry.key}\n")
        if entry.encrypted:
            lines += [f"  directive:{directive.canonical()}\n" for directive in _sorted(entry.directives)]
            lines.append(f"  enc:{entry.value}\n")
    return "".join(lines).encode("utf-8")


def compute(dek: bytes, sec: SecFile, schema_sha256: str) -> bytes:
    return hmac.new(dek, canonical_bytes(sec, schema_sha256), hashlib.sha256).digest()


def verify(dek: bytes, sec: SecFile, schema_sha256: str, expected: bytes, *, schema_given: bool) -> None:
    """Constant-time comparison; MacMismatch names the schema hash used (never a value)."""
    if not hmac.compare_digest(compute(dek, sec, schema_sha256), expected):
        used = f"schema sha256 {schema_sha256[:16]}..." if schema_given else "no schema (sha256 of nothing)"
        raise DotsecMacMismatchError(
            "the .sec file has changed in a way its MAC does not cover (entries added, removed, renamed or "
            f"reordered, directives or ciphertext edited, or a different schema); verified with {used}"
        )
