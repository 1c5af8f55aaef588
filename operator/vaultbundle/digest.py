"""Keyed digests of secret material for status and annotations: HMAC-SHA256 under the operator's key.

Secrets can be low-entropy, so a plain hash in status would let anyone who can read the VaultBundle
brute-force them; a keyed digest only tells whether two contents are equal. Everything shown for a VaultBundle
is digested under its namespace's own key (`for_namespace`, HKDF from the operator's key: L1), so equal values
in two namespaces give unrelated digests and one tenant's digests say nothing about another's.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Mapping
from pathlib import Path

from .stores import namespace_key


class Digester:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("digest key must be at least 16 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "<Digester key=redacted>"

    @classmethod
    def from_file_or_random(cls, path: str | None) -> Digester:
        """The key from *path* (raw bytes, e.g. a mounted Secret); else a random per-process key."""
        if path:
            return cls(Path(path).read_bytes().strip())
        return cls(os.urandom(32))

    def for_namespace(self, namespace: str) -> Digester:
        """The Digester for one namespace: `stores.namespace_key(operator key, namespace, "digest")`."""
        return Digester(namespace_key(self._key, namespace, "digest"))

    def digest(self, items: Mapping[str, bytes] | Mapping[str, str]) -> str:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for name in sorted(items):
            value = items[name]
            raw = value if isinstance(value, bytes) else value.encode("utf-8")
            encoded = name.encode("utf-8")
            mac.update(struct.pack(">QQ", len(encoded), len(raw)) + encoded + raw)
        return "hmac-sha256:" + mac.hexdigest()[:32]
