"""Derived-key cache and worker pool: one PBKDF2 per (passphrase, salt, iterations), bounded, redacted."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import Callable

import pytest

from vaultbundle.crypto import rqe1
from vaultbundle.crypto.kdf import derive_key
from vaultbundle.errors import BundleCorruptError, WrongPassphraseError
from vaultbundle.pool import CryptoPool, KeyCache

SALT = "0123456789abcdef"


def test_cache_hits_and_bound() -> None:
    pool = CryptoPool(workers=0, cache=KeyCache(max_entries=2))
    first = pool.derive("a", SALT, 10)
    assert pool.derive("a", SALT, 10) is first
    pool.derive("b", SALT, 10)
    pool.derive("c", SALT, 10)  # evicts "a"
    assert len(pool.cache) == 2
    assert pool.cache.stats.derivations == 3
    pool.derive("a", SALT, 10)
    assert pool.cache.stats.derivations == 4
    assert pool.derive("a", SALT, 11).reveal() != first.reveal()  # iterations are part of the identity


def test_no_key_material_in_reprs() -> None:
    pool = CryptoPool(workers=0)
    key = pool.derive("hunter2-passphrase", SALT, 10)
    for text in (repr(key), str(key), repr(pool), repr(pool.cache)):
        assert key.reveal().hex() not in text and "hunter2" not in text
    assert "hunter2" not in repr(list(pool.cache._entries))


def test_structural_errors_cost_no_derivation() -> None:
    pool = CryptoPool(workers=0)
    with pytest.raises(BundleCorruptError):
        pool.open_envelope(b"XQE1" + b"\0" * 40, "pw", SALT, 10)
    assert pool.cache.stats.derivations == 0


def test_thread_pool_sync_and_large_envelopes() -> None:
    with CryptoPool(workers=2) as pool:
        key = derive_key("pw", SALT, 1000)
        small, large = b"s" * 10, b"L" * (1024 * 1024)
        assert pool.open_envelope(rqe1.seal(key, small), "pw", SALT, 1000) == small
        assert pool.open_envelope(rqe1.seal(key, large), "pw", SALT, 1000) == large
        with pytest.raises(WrongPassphraseError):  # raised in a worker, arrives typed
            pool.open_envelope(rqe1.seal(derive_key("other", SALT, 1000), large), "pw", SALT, 1000)
        assert pool.cache.stats.derivations == 1


async def test_async_coalesces_concurrent_derivations() -> None:
    with CryptoPool(workers=2) as pool:
        key = derive_key("shared", SALT, 50_000)
        blobs = [rqe1.seal(key, f"bundle {i}".encode()) for i in range(20)]
        results = await asyncio.gather(*(pool.aopen_envelope(b, "shared", SALT, 50_000) for b in blobs))
        assert results == [f"bundle {i}".encode() for i in range(20)]
        assert pool.cache.stats.derivations == 1


async def test_async_failure_propagates_to_all_waiters_and_is_not_cached() -> None:
    pool = CryptoPool(workers=0)
    with pytest.raises(Exception):  # noqa: B017 - a non-positive iteration count fails inside the KDF
        await asyncio.gather(pool.aderive("x", SALT, 0), pool.aderive("x", SALT, 0))
    assert len(pool.cache) == 0 and not pool._inflight


def test_derived_keys_cannot_be_pickled() -> None:
    """Keys never leave the process: nothing may serialise one by accident (a cache dump, a queue)."""
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(derive_key("pw", SALT, 10))


def _longest_main_thread_stall(work: Callable[[], object]) -> tuple[float, float]:
    """Run *work* on a worker thread; return (its duration, the longest pause of a busy main thread meanwhile)."""
    done = threading.Event()
    took: list[float] = []

    def run() -> None:
        started = time.perf_counter()
        work()
        took.append(time.perf_counter() - started)
        done.set()

    worker = threading.Thread(target=run)
    last = time.perf_counter()
    longest = 0.0
    worker.start()
    while not done.is_set():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    return took[0], longest


def test_worker_threads_derive_without_the_gil() -> None:
    """The pool's premise: PBKDF2 runs without the GIL, so worker threads use other cores and the event-loop
    thread never stalls for a derivation. A GIL-holding KDF would pause the main thread for (nearly) the
    whole derivation; here every pause must be a small part of it."""
    with CryptoPool(workers=1) as pool:
        took, stall = _longest_main_thread_stall(lambda: pool.derive("pw", SALT, 3_000_000))
    assert stall < took / 4, f"main thread stalled {stall * 1000:.1f} ms during a {took * 1000:.1f} ms derivation"


async def test_on_derive_counts_real_derivations_only() -> None:
    """The KDF metric hook fires once per PBKDF2 run, not per caller (coalesced and cached calls excluded)."""
    seen: list[float] = []
    pool = CryptoPool(workers=0, on_derive=seen.append)
    await asyncio.gather(*(pool.aderive("p", SALT, 1000) for _ in range(5)))
    pool.derive("p", SALT, 1000)
    pool.derive("q", SALT, 1000)
    assert len(seen) == 2 and all(seconds >= 0 for seconds in seen)
