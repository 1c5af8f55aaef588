"""SLS1 share frame: "SLS1" | 1-byte salt length L | L ASCII salt chars | RQE1 envelope (spec §4).

The plaintext is ASCII standard base64 of gzip of UTF-8 JSON
`{"version":2,"repo":…,"env":…,"config":<per-env ConfigFile>,"key":<keychain key text>}`.
Key derivation: PBKDF2(share passphrase, the stored salt string, 600000).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import BundleCorruptError, ShareKeyTooShortError
from . import rqe1
from .kdf import DEFAULT_ITERATIONS, derive_key

MAGIC = b"SLS1"
SHARE_VERSION = 2
MIN_KEY_CHARS = 20
MAX_PLAINTEXT_BYTES = 1024 * 1024
_PASSPHRASE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ"  # noqa: S105 (an alphabet)


@dataclass(frozen=True)
class ShareFile:
    """What a `.share` file carries. `key` is the bundle passphrase; it never shows in repr."""

    repo: str
    env: str
    config: dict[str, Any] = field(repr=False)
    key: str = field(repr=False)

    def validate(self) -> None:
        if not self.repo or not self.env:
            raise BundleCorruptError("share payload needs a non-empty repo and env")
        if len(self.key) < MIN_KEY_CHARS:
            raise BundleCorruptError(f"share payload key is shorter than {MIN_KEY_CHARS} characters")
        validate_env_config(self.config)


def validate_env_config(config: Any) -> None:
    """Check the per-env ConfigFile shape vsync's import requires (spec §10)."""
    if not isinstance(config, dict) or config.get("version") != 1:
        raise BundleCorruptError("share config must be an object with version 1")
    s3 = config.get("s3")
    if not isinstance(s3, dict):
        raise BundleCorruptError("share config lacks the s3 block")
    for name in ("endpoint", "region", "bucket", "accessKeyId", "secretAccessKey"):
        if not isinstance(s3.get(name), str) or not s3[name]:
            raise BundleCorruptError(f"share config s3.{name} must be a non-empty string")
    if not isinstance(s3.get("useSsl"), bool):
        raise BundleCorruptError("share config s3.useSsl must be a boolean")
    encryption = config.get("encryption")
    if not isinstance(encryption, dict) or not isinstance(encryption.get("salt"), str):
        raise BundleCorruptError("share config lacks encryption.salt")


def generate_share_passphrase() -> str:
    """A passphrase shaped like vsync's default: XXXX-XXXX-XXXX."""
    return "-".join("".join(secrets.choice(_PASSPHRASE_ALPHABET) for _ in range(4)) for _ in range(3))


def check_key(key: str) -> None:
    """Refuse, by name, a bundle passphrase that vsync's import would refuse (before anything is derived)."""
    if len(key) < MIN_KEY_CHARS:
        raise ShareKeyTooShortError(f"the bundle passphrase is shorter than {MIN_KEY_CHARS} characters")


def seal(share: ShareFile, passphrase: str, *, salt: str | None = None) -> bytes:
    check_key(share.key)
    share.validate()
    if salt is None:
        salt = base64.b64encode(os.urandom(16)).decode("ascii")
    salt_bytes = salt.encode("ascii")
    if len(salt_bytes) > 255:
        raise ValueError("share salt must be at most 255 ASCII characters")
    document = {
        "version": SHARE_VERSION,
        "repo": share.repo,
        "env": share.env,
        "config": share.config,
        "key": share.key,
    }
    plaintext = base64.b64encode(gzip.compress(json.dumps(document, separators=(",", ":")).encode("utf-8")))
    key = derive_key(passphrase, salt, DEFAULT_ITERATIONS)
    return MAGIC + bytes([len(salt_bytes)]) + salt_bytes + rqe1.seal(key, plaintext)


def split(data: bytes) -> tuple[str, bytes]:
    """Return (salt, envelope) after structural checks; raises before any key derivation."""
    if len(data) < len(MAGIC) + 1 or data[: len(MAGIC)] != MAGIC:
        raise BundleCorruptError("file is not an SLS1 share (bad magic)")
    salt_length = data[len(MAGIC)]
    start = len(MAGIC) + 1
    raw_salt = data[start : start + salt_length]
    if len(raw_salt) != salt_length:
        raise BundleCorruptError("SLS1 share is truncated inside its salt")
    try:
        salt = raw_salt.decode("ascii")
    except UnicodeDecodeError:
        raise BundleCorruptError("SLS1 salt is not ASCII") from None
    envelope = data[start + salt_length :]
    rqe1.check_envelope(envelope)
    return salt, envelope


def open_share(data: bytes, passphrase: str) -> ShareFile:
    salt, envelope = split(data)
    plaintext = rqe1.open_envelope(derive_key(passphrase, salt, DEFAULT_ITERATIONS), envelope)
    try:
        compressed = base64.b64decode(plaintext, validate=True)
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        raw = inflater.decompress(compressed, MAX_PLAINTEXT_BYTES + 1)
        if len(raw) > MAX_PLAINTEXT_BYTES or not inflater.eof:
            raise BundleCorruptError("share payload is too large or truncated")
        document = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, zlib.error):
        raise BundleCorruptError("share payload is not base64(gzip(JSON))") from None
    if not isinstance(document, dict):
        raise BundleCorruptError("share payload is not a JSON object")
    if document.get("version") != SHARE_VERSION:
        raise BundleCorruptError(f"share payload version {document.get('version')!r} is not supported (only 2)")
    fields = {name: document.get(name) for name in ("repo", "env", "key")}
    if not all(isinstance(value, str) for value in fields.values()):
        raise BundleCorruptError("share payload repo, env and key must be strings")
    share = ShareFile(
        repo=str(fields["repo"]), env=str(fields["env"]), config=document.get("config") or {}, key=str(fields["key"])
    )
    share.validate()
    return share
