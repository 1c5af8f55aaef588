"""KDF throughput (raw `cryptography`, inline, worker pool, cache) and event-loop lag under a decrypt storm.

Every derivation uses a fresh (passphrase, salt) pair so `KeyCache` never hides work, except in the
`cached` measurement, which is exactly the cache hit path. Rates are derivations per second of wall time;
each figure is the median (with min/max) over `repeats` timed rounds.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from vaultbundle.crypto import rqe1
from vaultbundle.pool import CryptoPool

from .stats import percentile, spread


@dataclass(frozen=True)
class KdfSizes:
    iterations: int = 600_000
    repeats: int = 3
    per_repeat: int = 4  # derivations per timed round and per worker (pool rounds run workers × this many)
    cached_calls: int = 20_000
    pool_workers: tuple[int, ...] = (1, 2)
    lag_bundles: int = 100
    lag_payload_bytes: int = 4096


def default_pool_workers() -> tuple[int, ...]:
    """1, 2 and the CPU count (the operator's default `--workers`), without duplicates."""
    return tuple(sorted({1, 2, os.cpu_count() or 1}))


class Pairs:
    """An endless supply of distinct (passphrase, salt) pairs; salts are >= 16 characters as vsync requires."""

    def __init__(self) -> None:
        self._run = secrets.token_hex(4)
        self._counter = itertools.count()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return self

    def __next__(self) -> tuple[str, str]:
        i = next(self._counter)
        return f"bench-pass-{self._run}-{i}", f"bench-salt-{self._run}-{i:08d}"

    def take(self, count: int) -> list[tuple[str, str]]:
        return [next(self) for _ in range(count)]


def _raw_round(pairs: list[tuple[str, str]], iterations: int) -> float:
    started = time.perf_counter()
    for passphrase, salt in pairs:
        PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt.encode(), iterations=iterations).derive(
            passphrase.encode()
        )
    return len(pairs) / (time.perf_counter() - started)


def _inline_round(pool: CryptoPool, pairs: list[tuple[str, str]], iterations: int) -> float:
    started = time.perf_counter()
    for passphrase, salt in pairs:
        pool.derive(passphrase, salt, iterations)
    return len(pairs) / (time.perf_counter() - started)


async def _pool_round(pool: CryptoPool, pairs: list[tuple[str, str]], iterations: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(pool.aderive(passphrase, salt, iterations) for passphrase, salt in pairs))
    return len(pairs) / (time.perf_counter() - started)


async def _warm(pool: CryptoPool, pairs: Pairs, workers: int) -> None:
    """Start every worker thread before timing (cheap derivations, own pairs)."""
    await asyncio.gather(*(pool.aderive(p, s, 1000) for p, s in pairs.take(workers * 2)))


async def _cached_round(pool: CryptoPool, passphrase: str, salt: str, iterations: int, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await pool.aderive(passphrase, salt, iterations)
    return calls / (time.perf_counter() - started)


def measure_kdf(sizes: KdfSizes) -> dict[str, Any]:
    """Derivations/s: raw single-core PBKDF2, CryptoPool inline, through 1..N workers, and cache hits.

    The methods are interleaved within each repeat (raw, inline, pool 1, pool 2, ..., cache), so a change
    in the machine's background load hits every method alike and the ratios stay comparable."""
    return asyncio.run(_measure_kdf(sizes))


async def _measure_kdf(sizes: KdfSizes) -> dict[str, Any]:
    pairs = Pairs()
    it = sizes.iterations
    inline_pool = CryptoPool(workers=0)
    pools = {str(w): CryptoPool(workers=w) for w in sizes.pool_workers}
    cache_pool = CryptoPool(workers=0)
    cached_pair = next(pairs)
    cache_pool.derive(*cached_pair, it)  # the one miss
    raw: list[float] = []
    inline: list[float] = []
    cached: list[float] = []
    pooled: dict[str, list[float]] = {w: [] for w in pools}
    try:
        for workers, pool in pools.items():
            await _warm(pool, pairs, int(workers))
        for _ in range(sizes.repeats):
            raw.append(_raw_round(pairs.take(sizes.per_repeat), it))
            inline.append(_inline_round(inline_pool, pairs.take(sizes.per_repeat), it))
            for workers, pool in pools.items():
                pooled[workers].append(await _pool_round(pool, pairs.take(sizes.per_repeat * int(workers)), it))
            cached.append(await _cached_round(cache_pool, *cached_pair, it, sizes.cached_calls))
    finally:
        for pool in pools.values():
            pool.close()
    raw_median = spread(raw)["median"]
    detail: dict[str, Any] = {
        "raw": spread(raw),
        "inline": spread(inline),
        "cached": spread(cached, 1),
        "pool": {w: spread(r) for w, r in pooled.items()},
    }
    return {
        "raw_limit_per_s": raw_median,
        "inline_per_s": detail["inline"]["median"],
        "cached_per_s": detail["cached"]["median"],
        "pool_per_s": {w: detail["pool"][w]["median"] for w in pooled},
        "single_derivation_s": round(1 / raw_median, 4),
        "ratio_to_raw": {
            "inline": round(detail["inline"]["median"] / raw_median, 3),
            "cached": round(detail["cached"]["median"] / raw_median, 1),
            **{f"pool_{w}": round(detail["pool"][w]["median"] / raw_median, 3) for w in pooled},
        },
        "iterations": it,
        "repeats": sizes.repeats,
        "derivations_per_round": sizes.per_repeat,  # pool rounds: this many per worker
        "interleaved": True,
        "detail": detail,
    }


async def ticker(samples: list[float], stop: asyncio.Event, low: float = 0.005, high: float = 0.010) -> None:
    """Sleep *low*..*high* seconds at a time and record how late each wake-up is (ms)."""
    rng = random.Random(0)
    while not stop.is_set():
        delay = rng.uniform(low, high)
        started = time.perf_counter()
        await asyncio.sleep(delay)
        samples.append(max(0.0, time.perf_counter() - started - delay) * 1000)


def _lag_summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(samples, 50), 2),
        "p99": round(percentile(samples, 99), 2),
        "max": round(max(samples), 2),
        "ticks": len(samples),
    }


async def _loop_lag(sizes: KdfSizes, workers: int) -> dict[str, Any]:
    pairs = Pairs()
    rng = random.Random(1)
    payload = bytes(rng.getrandbits(8) for _ in range(sizes.lag_payload_bytes))
    chosen = pairs.take(sizes.lag_bundles)
    with CryptoPool(workers=workers) as sealer:  # setup, untimed: one key per bundle
        keys = await asyncio.gather(*(sealer.aderive(p, s, sizes.iterations) for p, s in chosen))
    envelopes = [rqe1.seal(key, payload) for key in keys]

    with CryptoPool(workers=workers) as pool:  # a fresh cache: every open derives
        await _warm(pool, pairs, workers)
        stop = asyncio.Event()
        baseline: list[float] = []
        ticking = asyncio.create_task(ticker(baseline, stop))
        await asyncio.sleep(1.0)
        stop.set()
        await ticking

        stop = asyncio.Event()
        samples: list[float] = []
        ticking = asyncio.create_task(ticker(samples, stop))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        opened = await asyncio.gather(
            *(pool.aopen_envelope(blob, p, s, sizes.iterations) for blob, (p, s) in zip(envelopes, chosen, strict=True))
        )
        elapsed = time.perf_counter() - started
        stop.set()
        await ticking
        derivations = pool.cache.stats.derivations - workers * 2
    if any(plain != payload for plain in opened):
        raise RuntimeError("a bundle decrypted to the wrong plaintext")
    return {
        **_lag_summary(samples),
        "baseline_idle": _lag_summary(baseline),
        "bundles": sizes.lag_bundles,
        "workers": workers,
        "derivations": derivations,
        "elapsed_s": round(elapsed, 3),
        "derivations_per_s": round(sizes.lag_bundles / elapsed, 3),
        "ticker": "sleeps uniform 5-10 ms, records lateness",
        "target_p99_ms": 50,
    }


def measure_loop_lag(sizes: KdfSizes, workers: int | None = None) -> dict[str, Any]:
    """Ticker lateness while `lag_bundles` distinct-passphrase bundles open at once via `aopen_envelope`."""
    return asyncio.run(_loop_lag(sizes, workers or os.cpu_count() or 1))
