"""`vsync-cfg-v1:` bootstrap blob: prefix + base64url-without-padding(gzip(UTF-8 JSON)) (spec §5).

Decoding follows vsync's Python reader's order of checks so every failure gets the same error class.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import BundleCorruptError, ConfigMissingError, ConfigUnsupportedVersionError
from .kdf import DEFAULT_ITERATIONS, check_params

PREFIX = "vsync-cfg-v1:"
MAX_JSON_BYTES = 64 * 1024  # a real blob is a few hundred bytes; this bounds a gzip bomb

_STRING_FIELDS = (
    ("endpoint", "endpoint"),
    ("region", "region"),
    ("bucket", "bucket"),
    ("accessKeyId", "access_key_id"),
    ("secretAccessKey", "secret_access_key"),
    ("prefix", "prefix"),
    ("env", "env"),
    ("salt", "salt"),
)


@dataclass(frozen=True)
class BootstrapConfig:
    """Where the bundle lives and how its key is derived. The secret access key never shows in repr."""

    endpoint: str
    region: str
    bucket: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    prefix: str
    env: str
    salt: str = field(repr=False)
    iterations: int = DEFAULT_ITERATIONS

    def to_json(self) -> dict[str, Any]:
        """The blob's JSON object, keys in the order `vsync runtime-token` writes them."""
        return {
            "v": 1,
            **{json_name: getattr(self, attr) for json_name, attr in _STRING_FIELDS},
            "iterations": self.iterations,
        }


def _gunzip_bounded(data: bytes) -> bytes:
    if data[:2] != b"\x1f\x8b":
        raise BundleCorruptError("config blob body is not a gzip stream")
    try:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out = inflater.decompress(data, MAX_JSON_BYTES + 1)
    except zlib.error:
        raise BundleCorruptError("config blob body is not a valid gzip stream") from None
    if len(out) > MAX_JSON_BYTES:
        raise BundleCorruptError(f"config blob expands beyond {MAX_JSON_BYTES} bytes")
    if not inflater.eof:
        raise BundleCorruptError("config blob gzip stream is truncated")
    return out


def decode(text: str) -> BootstrapConfig:
    """Decode a blob. Surrounding whitespace (e.g. the newline `runtime-token` prints) is ignored."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise ConfigMissingError("config is not a vsync-cfg-v1: blob (missing prefix)")
    body = text[len(PREFIX) :]
    if any(ch in body for ch in "+/="):
        raise ConfigUnsupportedVersionError("config blob body must be base64url without padding")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise BundleCorruptError("config blob body is not base64url") from None
    try:
        obj = json.loads(_gunzip_bounded(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BundleCorruptError("config blob does not hold JSON") from None
    if not isinstance(obj, dict):
        raise BundleCorruptError("config blob JSON is not an object")
    if obj.get("v") != 1 or isinstance(obj.get("v"), bool):
        raise ConfigUnsupportedVersionError(f"config blob version {obj.get('v')!r} is not supported (only 1)")
    values: dict[str, Any] = {}
    for json_name, attr in _STRING_FIELDS:
        if json_name not in obj:
            raise BundleCorruptError(f"config blob lacks the field {json_name!r}")
        if not isinstance(obj[json_name], str):
            raise BundleCorruptError(f"config blob field {json_name!r} must be a string")
        values[attr] = obj[json_name]
    iterations = obj.get("iterations")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations <= 0:
        raise BundleCorruptError("config blob field 'iterations' must be a positive integer")
    check_params(values["salt"], iterations)
    return BootstrapConfig(iterations=iterations, **values)


def encode(config: BootstrapConfig) -> str:
    """Encode a blob the way `vsync runtime-token` does (gzip mtime 0, base64url, no `=`)."""
    check_params(config.salt, config.iterations)
    payload = json.dumps(config.to_json(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body = base64.urlsafe_b64encode(gzip.compress(payload, compresslevel=6, mtime=0)).rstrip(b"=")
    return PREFIX + body.decode("ascii")
