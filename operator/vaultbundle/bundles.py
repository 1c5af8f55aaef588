"""Both vsync S3 layouts: locate, fetch, verify, open (read) and seal, upload (write).

CLI layout:      <prefix>latest (plain ts) + <prefix>versions/<ts>.enc = RQE1(RQEM0001(ts) + ZIP)
                 (+ <prefix>latest.manifest {"gen": N}, written by `vsync rotate-passphrase`)
Runtime layout:  <prefix>manifest (plain RQEM0001 naming ts) + <prefix>v=<ts> = RQE1(JSON vault)
                 (+ <prefix>latest.meta {"gen": N})

Reading is split so each caller (the CLI's `pull`, the operator's reconcile) does each step where it belongs:
`locate` and `fetch` are S3 I/O, `CryptoPool` decrypts, and `finish` verifies the sealed timestamp and parses
the vault (pure).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from . import envfile
from . import vault as vault_format
from .crypto import rqe1, rqem
from .crypto.configblob import BootstrapConfig
from .crypto.kdf import DerivedKey
from .errors import (
    BundleCorruptError,
    BundleEmptyError,
    LayoutAmbiguousError,
    ManifestNotFoundError,
    RollbackRefusedError,
)
from .pool import CryptoPool
from .remote import ObjectMissing, ObjectStore
from .vault import Vault

MAX_POINTER_BYTES = 4096


class Layout(StrEnum):
    AUTO = "auto"
    CLI = "cli"
    RUNTIME = "runtime"
    DOTSEC = "dotsec"  # not a bucket layout: a `Bundle` opened from a dotsec `.sec` file (dotsec_source.py)


@dataclass(frozen=True)
class Pointer:
    """Where the current bundle is. `etag` is the pointer object's, for cheap change detection."""

    layout: Layout
    timestamp: str
    etag: str = ""


@dataclass(frozen=True)
class Bundle:
    layout: Layout
    timestamp: str
    generation: int
    vault: Vault

    def __repr__(self) -> str:
        return (
            f"Bundle(layout={self.layout.value}, timestamp={self.timestamp}, "
            f"generation={self.generation}, {self.vault!r})"
        )


def pointer_key(config: BootstrapConfig, layout: Layout) -> str:
    return config.prefix + ("latest" if layout is Layout.CLI else "manifest")


def bundle_key(config: BootstrapConfig, layout: Layout, timestamp: str) -> str:
    return config.prefix + (f"versions/{timestamp}.enc" if layout is Layout.CLI else f"v={timestamp}")


def meta_key(config: BootstrapConfig, layout: Layout) -> str:
    return config.prefix + ("latest.manifest" if layout is Layout.CLI else "latest.meta")


def parse_pointer(layout: Layout, body: bytes) -> str:
    if layout is Layout.CLI:
        try:
            timestamp = envfile.js_trim(body.decode("ascii"))  # vsync trims the pointer with JS trim()
        except UnicodeDecodeError:
            raise BundleCorruptError("the latest pointer is not ASCII") from None
        if not rqem.is_timestamp(timestamp):
            raise BundleCorruptError("the latest pointer does not hold a YYYYMMDD-HHMMSS timestamp")
        return timestamp
    return rqem.unwrap(body).timestamp


def read_pointer(
    objects: ObjectStore, config: BootstrapConfig, layout: Layout = Layout.AUTO, *, known_etag: str | None = None
) -> Pointer | None:
    """Read the pointer: one small GET. Returns None when *known_etag* still matches (nothing changed)."""
    candidates = [Layout.CLI, Layout.RUNTIME] if layout is Layout.AUTO else [layout]
    found: list[Pointer] = []
    for candidate in candidates:
        key = pointer_key(config, candidate)
        try:
            stored = objects.get(
                key, if_none_match=known_etag if layout is not Layout.AUTO else None, max_bytes=MAX_POINTER_BYTES
            )
        except ObjectMissing:
            continue
        if stored is None:
            return None
        found.append(Pointer(candidate, parse_pointer(candidate, stored.body), stored.etag))
    if not found:
        names = " or ".join(repr(pointer_key(config, c)) for c in candidates)
        raise ManifestNotFoundError(f"no bundle pointer {names} in bucket {config.bucket!r}")
    if len(found) > 1:
        raise LayoutAmbiguousError(
            f"both {pointer_key(config, Layout.CLI)!r} and {pointer_key(config, Layout.RUNTIME)!r} exist"
        )
    return found[0]


def read_generation(objects: ObjectStore, config: BootstrapConfig, layout: Layout) -> int:
    """Best effort, as vsync: absent or malformed metadata means generation 0."""
    try:
        stored = objects.get(meta_key(config, layout), max_bytes=MAX_POINTER_BYTES)
        document = json.loads(stored.body) if stored else {}
    except (ObjectMissing, BundleCorruptError, ValueError):
        return 0
    gen = document.get("gen") if isinstance(document, dict) else None
    return gen if isinstance(gen, int) and not isinstance(gen, bool) and gen >= 0 else 0


def check_not_older(timestamp: str, not_older_than: str | None) -> None:
    if not_older_than and timestamp < not_older_than:
        raise RollbackRefusedError(f"bundle {timestamp} is older than the known-good {not_older_than}")


def check_not_empty(bundle: Bundle, *, allow: bool = False) -> None:
    """Refuse a verified bundle that holds no keys and no files, unless *allow* (spec.source.allowEmpty,
    `pull --allow-empty`): applied, it would empty every target."""
    if not allow and not bundle.vault.kv and not bundle.vault.files:
        raise BundleEmptyError(
            f"bundle {bundle.timestamp} is verified but holds no keys and no files; nothing was written. Push the "
            "vault folder with its .env file, or set spec.source.allowEmpty: true (CLI: --allow-empty) if an empty "
            "bundle is intended"
        )


def locate(
    objects: ObjectStore,
    config: BootstrapConfig,
    layout: Layout = Layout.AUTO,
    *,
    version: str | None = None,
    not_older_than: str | None = None,
) -> Pointer:
    """Resolve which bundle to read (pinned *version*, else the pointer) and refuse a rollback early."""
    if version:
        if not rqem.is_timestamp(version):
            raise ValueError("version must be a YYYYMMDD-HHMMSS timestamp")
        if layout is Layout.AUTO:
            layout = read_pointer_layout(objects, config)
        pointer = Pointer(layout, version)
    else:
        found = read_pointer(objects, config, layout)
        assert found is not None
        pointer = found
    check_not_older(pointer.timestamp, not_older_than)
    return pointer


def read_pointer_layout(objects: ObjectStore, config: BootstrapConfig) -> Layout:
    found = read_pointer(objects, config, Layout.AUTO)
    assert found is not None
    return found.layout


def fetch(objects: ObjectStore, config: BootstrapConfig, pointer: Pointer) -> bytes:
    key = bundle_key(config, pointer.layout, pointer.timestamp)
    try:
        stored = objects.get(key, require_length=True)
    except ObjectMissing:
        raise BundleCorruptError(f"the pointer names {key!r}, which does not exist (torn or tampered bucket)") from None
    assert stored is not None
    return stored.body


def finish(
    pointer: Pointer, plaintext: bytes, generation: int, *, env: str | None = None, env_file: str | None = None
) -> Bundle:
    """Verify the sealed timestamp (CLI layout) and parse the vault."""
    if pointer.layout is Layout.CLI:
        record = rqem.verify_against_remote_ts(plaintext, pointer.timestamp)
        parsed = vault_format.from_zip(record.payload, env=env, env_file=env_file)
    else:
        parsed = vault_format.from_json(plaintext)
    return Bundle(layout=pointer.layout, timestamp=pointer.timestamp, generation=generation, vault=parsed)


def next_timestamp(current: str | None) -> str:
    """Now, or one second after *current* if the clock has not moved past it (never reuse or go back)."""
    now = rqem.now_timestamp()
    if current and now <= current:
        later = datetime.strptime(current, "%Y%m%d-%H%M%S").replace(tzinfo=UTC) + timedelta(seconds=1)
        return rqem.now_timestamp(later)
    return now


def seal_bundle(
    key: DerivedKey, layout: Layout, timestamp: str, files: Mapping[str, bytes], *, folder: str, env: str | None = None
) -> bytes:
    """Seal a vault folder's files: CLI = RQE1(RQEM0001(ts) + ZIP); runtime = RQE1(JSON of the key/values
    from `.env.<env>` (else `.env`) + every other file as an asset)."""
    if layout is Layout.CLI:
        return rqe1.seal(key, rqem.wrap(timestamp, vault_format.to_zip(files, folder=folder)))
    return rqe1.seal(key, vault_format.to_json(vault_format.from_folder_files(files, env=env)))


def push(
    objects: ObjectStore,
    config: BootstrapConfig,
    passphrase: str,
    pool: CryptoPool,
    files: Mapping[str, bytes],
    *,
    layout: Layout,
    folder: str | None = None,
) -> Pointer:
    """Seal and upload a vault folder; the bundle object first, the pointer last (no half-written state).

    CLI layout ZIP entries carry *folder* (default `infra/vault/<env>`, vsync's default vault folder) so
    `vsync pull` unpacks them where it expects them."""
    if layout is Layout.AUTO:
        raise ValueError("push needs an explicit layout")
    env = config.env.lower()
    try:
        current = read_pointer(objects, config, layout)
    except ManifestNotFoundError:
        current = None
    timestamp = next_timestamp(current.timestamp if current else None)
    key = pool.derive(passphrase, config.salt, config.iterations)
    blob = seal_bundle(key, layout, timestamp, files, folder=folder or f"infra/vault/{env}", env=env)
    objects.put(bundle_key(config, layout, timestamp), blob, create_only=True)
    if layout is Layout.CLI:
        etag = objects.put(pointer_key(config, layout), timestamp.encode("ascii"))
    else:
        etag = objects.put(pointer_key(config, layout), rqem.wrap(timestamp))
        generation = read_generation(objects, config, layout) + 1
        objects.put(meta_key(config, layout), json.dumps({"gen": generation}).encode("ascii"))
    return Pointer(layout, timestamp, etag)


def list_versions(objects: ObjectStore, config: BootstrapConfig, layout: Layout) -> list[str]:
    marker = "versions/" if layout is Layout.CLI else "v="
    suffix = ".enc" if layout is Layout.CLI else ""
    start = len(config.prefix) + len(marker)
    versions = []
    for key in objects.list_keys(config.prefix + marker):
        name = key[start:]
        name = name[: -len(suffix)] if suffix and name.endswith(suffix) else name
        if rqem.is_timestamp(name):
            versions.append(name)
    return sorted(versions)
