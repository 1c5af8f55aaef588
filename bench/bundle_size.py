"""Per-sync CPU cost as a function of bundle size: number of keys and bytes of files (no test bed needed).

A changed bundle costs, besides the one derivation (cached for a known passphrase and salt): AES-GCM
decryption of the envelope (on the event loop: it holds the GIL, so a thread would not help), the
sealed-timestamp check with ZIP and `.env` parsing (`bundles.finish`, in a thread) and the keyed content
digest (in a thread). This times each step with the functions the operator calls, then runs them as the
reconciler does while a ticker measures how long the event loop is blocked, and reports the size of the
Kubernetes Secret the bundle becomes (1 MiB is the API server's limit for one Secret).
"""

from __future__ import annotations

import asyncio
import base64
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vaultbundle import bundles, envfile, vault
from vaultbundle.bundles import Layout, Pointer
from vaultbundle.crypto import rqe1
from vaultbundle.crypto.kdf import derive_key
from vaultbundle.digest import Digester
from vaultbundle.pool import CryptoPool
from vaultbundle.verify import content_items

from .kdf import ticker
from .stats import samples_ms

TIMESTAMP = "20260101-000000"
SECRET_LIMIT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Shape:
    keys: int
    file_bytes: int  # one binary file of this size (random: incompressible), 0 for none


DEFAULT_SHAPES = (
    Shape(10, 0),
    Shape(100, 0),
    Shape(1_000, 0),
    Shape(5_000, 0),
    Shape(10, 64 * 1024),
    Shape(10, 512 * 1024),
    Shape(10, 4 * 1024 * 1024),
    Shape(10, 32 * 1024 * 1024),
)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    return round(statistics.median(samples_ms(fn, repeats)), 2)


def _secret_bytes(bundle: bundles.Bundle) -> int:
    """Bytes of the Secret's `data` (base64 values plus keys), as the API server stores it."""
    items = {**{k: v.encode() for k, v in bundle.vault.kv.items()}, **bundle.vault.files}
    return sum(len(name) + len(base64.b64encode(value)) for name, value in items.items())


def measure_shape(shape: Shape, repeats: int) -> dict[str, Any]:
    key = derive_key("bench-size", "bench-size-salt-0001", 1000)  # the KDF is measured elsewhere
    env_text = envfile.render({f"KEY_{i:05d}": f"value-{i:05d}-" + "x" * 20 for i in range(shape.keys)})
    members = {".env.prod": env_text.encode()}
    if shape.file_bytes:
        members["blob.bin"] = os.urandom(shape.file_bytes)
    envelope = bundles.seal_bundle(key, Layout.CLI, TIMESTAMP, members, folder="infra/vault/prod")
    pointer = Pointer(layout=Layout.CLI, timestamp=TIMESTAMP, etag="")
    plaintext = rqe1.open_envelope(key, envelope)
    bundle = bundles.finish(pointer, plaintext, 0, env="prod")
    digester = Digester(os.urandom(32))
    decrypt_ms = _median_ms(lambda: rqe1.open_envelope(key, envelope), repeats)
    parse_ms = _median_ms(lambda: bundles.finish(pointer, plaintext, 0, env="prod"), repeats)
    digest_ms = _median_ms(lambda: digester.digest(content_items(bundle)), repeats)
    stalls = [asyncio.run(_loop_stall_ms(envelope, pointer, digester)) for _ in range(repeats)]
    secret_bytes = _secret_bytes(bundle)
    return {
        "keys": shape.keys,
        "file_bytes": shape.file_bytes,
        "envelope_bytes": len(envelope),
        "decrypt_ms": decrypt_ms,
        "parse_ms": parse_ms,
        "digest_ms": digest_ms,
        "total_ms": round(decrypt_ms + parse_ms + digest_ms, 2),
        "loop_stall_ms": round(statistics.median(stalls), 2),
        "secret_bytes": secret_bytes,
        "fits_one_kubernetes_secret": secret_bytes <= SECRET_LIMIT_BYTES,
        "repeats": repeats,
    }


async def _loop_stall_ms(envelope: bytes, pointer: Pointer, digester: Digester) -> float:
    """Longest event-loop pause while one bundle is opened, parsed and digested the way `Reconciler` does it."""
    pool = CryptoPool(workers=1)
    pool.derive("bench-size", "bench-size-salt-0001", 1000)  # cached, as for a known passphrase
    lateness: list[float] = []
    done = asyncio.Event()
    task = asyncio.create_task(ticker(lateness, done, 0.001, 0.001))  # 1 ms ticks: a pause is seen to ~1 ms
    await asyncio.sleep(0.01)
    plaintext = await pool.aopen_envelope(envelope, "bench-size", "bench-size-salt-0001", 1000)
    bundle = await asyncio.to_thread(bundles.finish, pointer, plaintext, 0, env="prod")
    await asyncio.to_thread(digester.digest, content_items(bundle))
    done.set()
    await task
    pool.close()
    return max(lateness, default=0.0)


def measure_bundle_sizes(shapes: tuple[Shape, ...] = DEFAULT_SHAPES, repeats: int = 5) -> list[dict[str, Any]]:
    # vault.MAX_TOTAL_BYTES caps what any bundle may expand to; the largest shape stays under it
    assert all(s.file_bytes < vault.MAX_TOTAL_BYTES for s in shapes)
    return [measure_shape(shape, repeats) for shape in shapes]
