"""Small statistics helpers shared by the bench modules (medians and ranges, never means of noisy runs)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypedDict


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


class LoadSampler:
    """The machine's load average every *every* seconds in a thread, so that a result says how busy the
    (shared) machine was while it was measured, not only at the start and the end."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.samples: list[list[float]] = []  # [seconds since start, 1-min, 5-min, 15-min]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-sampler", daemon=True)
        self._started = time.monotonic()

    def _loop(self) -> None:
        while True:
            self.samples.append([round(time.monotonic() - self._started, 1), *(round(x, 2) for x in os.getloadavg())])
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        """Median, min and max of the 1-minute load average, and every sample."""
        one_minute = [s[1] for s in self.samples]
        if not one_minute:
            return {"every_s": self.every, "loadavg_1m": None, "samples": []}
        summary = {k: v for k, v in spread(one_minute, 2).items() if k != "samples"}
        return {"every_s": self.every, "loadavg_1m": summary, "samples": list(self.samples)}
