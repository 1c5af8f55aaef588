"""Find, fetch, open and check a VaultBundle's bundle; nothing here writes anywhere.

Order matters for cost and safety: the pointer is located first and checked against the anti-rollback floor
(`status.lastAppliedTimestamp`) before any byte of the bundle is downloaded or a key derived; the envelope is
then authenticated (AES-GCM, PBKDF2 on the crypto pool's threads) and, in the CLI layout, its sealed timestamp
must equal the pointer (`bundles.finish`). A pinned `spec.source.version` is a deliberate rollback by whoever
may edit the spec, so the floor does not apply to it. S3 and parsing run in threads, off the event loop.

The S3 endpoint comes from the tenant's config blob, so every S3 read is tenant egress: `_s3` checks the
endpoint against the operator's egress policy and runs the read inside `egress.tenant_egress` (a denied
address is `PolicyDenied`, and no request leaves).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from . import bundles
from .bundles import Bundle, Pointer
from .crypto import rqe1
from .crypto.configblob import BootstrapConfig
from .crypto.kdf import DerivedKey
from .egress import SECURE_DEFAULT, EgressPolicy, guarded
from .errors import RollbackRefusedError
from .pool import CryptoPool
from .remote import ObjectStore
from .spec import VaultBundleSpec

P = ParamSpec("P")
T = TypeVar("T")
SOURCE_EGRESS = "the S3 endpoint of the config blob"


async def _s3(
    egress: EgressPolicy | None,
    config: BootstrapConfig,
    function: Callable[P, T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """One S3 read in a worker thread, as tenant egress (the endpoint is checked first)."""

    def call() -> T:
        return guarded(egress, SOURCE_EGRESS, [config.endpoint], function, *args, **kwargs)

    return await asyncio.to_thread(call)


@dataclass(frozen=True)
class Verified:
    """An authenticated bundle and the pointer it was found by (its ETag makes later checks conditional)."""

    bundle: Bundle
    pointer: Pointer


def rollback_floor(spec: VaultBundleSpec, status: Mapping[str, Any]) -> str | None:
    """The timestamp a followed pointer must not go below, or None when rollbacks are allowed or pinned."""
    if spec.rollback_policy != "Refuse" or spec.version:
        return None
    return status.get("lastAppliedTimestamp") or None


def check_rollback(pointer: Pointer, floor: str | None) -> None:
    if floor and pointer.timestamp < floor:
        raise RollbackRefusedError(
            f"bundle {pointer.timestamp} is older than the last applied {floor}; nothing was changed "
            "(pin spec.source.version, or set rollbackPolicy: Allow, to roll back on purpose)"
        )


async def pointer_unchanged(
    objects: ObjectStore, config: BootstrapConfig, pointer: Pointer, egress: EgressPolicy | None = SECURE_DEFAULT
) -> bool:
    """One conditional GET of the pointer: True on 304 (same ETag), which costs no transfer."""
    changed = await _s3(egress, config, bundles.read_pointer, objects, config, pointer.layout, known_etag=pointer.etag)
    return changed is None


async def open_bundle(
    pool: CryptoPool,
    objects: ObjectStore,
    config: BootstrapConfig,
    spec: VaultBundleSpec,
    passphrase: str,
    floor: str | None,
    egress: EgressPolicy | None = SECURE_DEFAULT,
) -> Verified:
    def download() -> tuple[Pointer, bytes]:
        pointer = bundles.locate(objects, config, spec.layout, version=spec.version or None)
        check_rollback(pointer, floor)  # before a byte of the bundle is read
        return pointer, bundles.fetch(objects, config, pointer)

    def finish(key: DerivedKey, envelope: bytes) -> Bundle:
        plaintext = rqe1.open_envelope(key, envelope)  # AES-GCM: the tag is checked before anything is parsed
        generation = bundles.read_generation(objects, config, pointer.layout)
        # AES-GCM, ZIP inflation, CRCs and HMACs run without the GIL: a large bundle is opened off the event loop
        return bundles.finish(pointer, plaintext, generation, env=config.env, env_file=spec.env_file)

    # two worker-thread trips (each with one egress pre-flight check): the pointer and the envelope; then the
    # decryption, the generation and the parse. Each trip costs the event loop and a thread a wake-up, and under
    # load a GIL hand-off each way (~0.2 ms per trip: the hand-off share of bench/results/first_sync_profile.json)
    pointer, envelope = await _s3(egress, config, download)
    key = await pool.akey_for(envelope, passphrase, config.salt, config.iterations)  # derived once, then cached
    return Verified(await _s3(egress, config, finish, key, envelope), pointer)


def content_items(bundle: Bundle) -> dict[str, bytes]:
    """What the content digest covers: every key/value and every file of the bundle."""
    return {
        **{f"kv:{k}": v.encode() for k, v in bundle.vault.kv.items()},
        **{f"file:{k}": v for k, v in bundle.vault.files.items()},
    }


def timestamp_epoch(timestamp: str) -> float:
    return datetime.strptime(timestamp, "%Y%m%d-%H%M%S").replace(tzinfo=UTC).timestamp()


def verified_message(bundle: Bundle) -> str:
    sealed = " and its sealed timestamp matches the pointer" if bundle.layout.value == "cli" else ""
    return f"bundle {bundle.timestamp} authenticated{sealed}"
