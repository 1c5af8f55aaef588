"""Derived-key cache and worker pool for the CPU-heavy crypto (PBKDF2 with 600,000 iterations).

* `KeyCache`: bounded LRU of derived keys, keyed by HMAC-SHA256 under a per-process random key of
  (passphrase, salt, iterations), so an unchanged bundle never pays PBKDF2 twice and the cache's keys say
  nothing about the passphrase even in a memory dump of the index.
* `CryptoPool`: runs key derivation on a pool of worker threads. The async API (for the operator) never
  blocks the event loop and coalesces concurrent derivations of the same key; the sync API serves the CLI.
  `workers=0` has no pool of its own: the sync API derives inline, the async API on the event loop's default
  executor (tests, tiny tools).

Why threads and not processes: `cryptography`'s PBKDF2 runs in OpenSSL with the GIL released
(tests/unit/test_pool.py proves it), so N threads derive N keys at once on N cores, as N processes would,
without ~40 MiB per worker process (each re-imports the operator), a forkserver, a writable socket
directory, or key material pickled across processes. AES-GCM holds the GIL per call, so envelopes are
decrypted in 1 MiB chunks (`rqe1.open_envelope`) on an I/O thread: the event loop waits at most one chunk.

Bounds (the iteration count comes from a tenant's config blob): `limits` (`--min/--max-kdf-iterations`) are
checked before any derivation, and whatever the crypto library raises in a worker, even a `BaseException`
such as pyo3's `PanicException`, comes back as a typed `KeyDerivationFailedError`; the worker thread lives on.
A reconcile waiting for a derivation gives its reconcile slot back meanwhile (`fairness.released`), and a
derivation outlives a cancelled waiter (it stays in flight and cached), so a re-queued reconcile never starts
a second one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from . import fairness
from .crypto import rqe1
from .crypto.kdf import DerivedKey, IterationLimits, check_iterations, derive_key
from .errors import KeyDerivationFailedError, VaultBundleError


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    derivations: int = 0


class KeyCache:
    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._entries: OrderedDict[bytes, DerivedKey] = OrderedDict()
        self._hmac_key = os.urandom(32)
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def fingerprint(self, passphrase: str, salt: str, iterations: int) -> bytes:
        mac = hmac.new(self._hmac_key, digestmod=hashlib.sha256)
        for part in (passphrase.encode("utf-8"), salt.encode("utf-8")):
            mac.update(struct.pack(">Q", len(part)) + part)
        mac.update(struct.pack(">Q", iterations))
        return mac.digest()

    def get(self, fingerprint: bytes) -> DerivedKey | None:
        with self._lock:
            key = self._entries.get(fingerprint)
            if key is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(fingerprint)
            self.stats.hits += 1
            return key

    def put(self, fingerprint: bytes, key: DerivedKey) -> None:
        with self._lock:
            self.stats.derivations += 1
            self._entries[fingerprint] = key
            self._entries.move_to_end(fingerprint)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<KeyCache entries={len(self._entries)}/{self._max}>"


def _derive_typed(passphrase: str, salt: str, iterations: int) -> DerivedKey:
    """`derive_key` where any failure is a typed error: this runs in a worker thread, and an exception that is
    not an `Exception` (a Rust panic) would otherwise escape every `except Exception` of the caller."""
    try:
        return derive_key(passphrase, salt, iterations)
    except (VaultBundleError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - e.g. pyo3_runtime.PanicException; only its type is shown
        raise KeyDerivationFailedError(f"key derivation failed in the crypto library ({type(exc).__name__})") from None


class CryptoPool:
    def __init__(
        self,
        workers: int | None = None,
        *,
        cache: KeyCache | None = None,
        on_derive: Callable[[float], None] | None = None,
        limits: IterationLimits | None = None,
    ) -> None:
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.cache = cache if cache is not None else KeyCache()
        self.on_derive = on_derive  # called with the seconds each real derivation took (metrics)
        self.limits = limits  # None: only what the crypto library can take (the CLI reads its user's own bundles)
        self._executor: Executor | None = None
        self._executor_lock = threading.Lock()
        self._inflight: dict[bytes, asyncio.Future[DerivedKey]] = {}

    def check_iterations(self, iterations: int) -> None:
        """Refuse an iteration count before anything is downloaded or derived (typed `KdfLimitError`)."""
        check_iterations(iterations)
        if self.limits is not None:
            self.limits.check(iterations)

    def __repr__(self) -> str:
        return f"<CryptoPool workers={self.workers} {self.cache!r}>"

    def _pool(self) -> Executor | None:
        if self.workers == 0:
            return None
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="vaultbundle-crypto")
            return self._executor

    def warm(self) -> None:
        """Start every worker thread now, so the first derivations do not also pay for thread start-up."""
        pool = self._pool()
        if pool is not None:
            barrier = threading.Barrier(self.workers)  # each task waits for all others: one task per thread
            list(pool.map(lambda _: barrier.wait(timeout=60), range(self.workers)))

    def _derived(self, fingerprint: bytes, key: DerivedKey, started: float) -> DerivedKey:
        self.cache.put(fingerprint, key)
        if self.on_derive is not None:
            self.on_derive(time.monotonic() - started)
        return key

    def close(self) -> None:
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None

    def __enter__(self) -> CryptoPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sync API (CLI) ---------------------------------------------------------------------------------
    def derive(self, passphrase: str, salt: str, iterations: int) -> DerivedKey:
        self.check_iterations(iterations)
        fingerprint = self.cache.fingerprint(passphrase, salt, iterations)
        key = self.cache.get(fingerprint)
        if key is None:
            started = time.monotonic()
            pool = self._pool()
            key = (
                _derive_typed(passphrase, salt, iterations)
                if pool is None
                else pool.submit(_derive_typed, passphrase, salt, iterations).result()
            )
            key = self._derived(fingerprint, key, started)
        return key

    def open_envelope(self, blob: bytes, passphrase: str, salt: str, iterations: int) -> bytes:
        rqe1.check_envelope(blob)  # structural errors never cost a derivation
        return rqe1.open_envelope(self.derive(passphrase, salt, iterations), blob)

    # -- async API (operator) ---------------------------------------------------------------------------
    async def aderive(self, passphrase: str, salt: str, iterations: int) -> DerivedKey:
        self.check_iterations(iterations)
        fingerprint = self.cache.fingerprint(passphrase, salt, iterations)
        key = self.cache.get(fingerprint)
        if key is not None:
            return key
        pending = self._inflight.get(fingerprint)
        if pending is None:  # nobody is deriving this very key yet: start it (waiters share it, never derive twice)
            pending = asyncio.ensure_future(self._derive_in_worker(fingerprint, passphrase, salt, iterations))
            pending.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved, even unwaited
            self._inflight[fingerprint] = pending
        async with fairness.released():  # the crypto threads are the bottleneck here, not the reconcile slots
            return await asyncio.shield(pending)

    async def _derive_in_worker(self, fingerprint: bytes, passphrase: str, salt: str, iterations: int) -> DerivedKey:
        try:
            started = time.monotonic()
            derived = await asyncio.get_running_loop().run_in_executor(
                self._pool(), _derive_typed, passphrase, salt, iterations
            )
            return self._derived(fingerprint, derived, started)
        finally:
            self._inflight.pop(fingerprint, None)

    async def aopen_envelope(self, blob: bytes, passphrase: str, salt: str, iterations: int) -> bytes:
        key = await self.akey_for(blob, passphrase, salt, iterations)
        return await asyncio.to_thread(rqe1.open_envelope, key, blob)

    async def akey_for(self, blob: bytes, passphrase: str, salt: str, iterations: int) -> DerivedKey:
        """The key that opens *blob* (`rqe1.open_envelope(key, blob)`, e.g. in a worker thread that has more to
        do); a structurally broken envelope raises first, without a derivation."""
        rqe1.check_envelope(blob)
        return await self.aderive(passphrase, salt, iterations)
