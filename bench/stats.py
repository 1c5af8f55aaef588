"""Small statistics helpers shared by the bench modules (medians and ranges, never means of noisy runs)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypedDict


class Spread(TypedDict):
    median: float
    min: float
    max: float
    samples: list[float]


def spread(samples: Sequence[float], digits: int = 3) -> Spread:
    if not samples:
        raise ValueError("no samples")
    return {
        "median": round(statistics.median(samples), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "samples": [round(s, digits) for s in samples],
    }


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of *samples*."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(len * q / 100), at least 1
    return ordered[int(rank) - 1]


def samples_ms(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall time of *runs* calls of *fn*, one sample (milliseconds) per call."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples
