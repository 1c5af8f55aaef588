"""The bench's KDF and loop-lag code at tiny sizes: the JSON keeps its shape (keys and types, not timings)."""

from __future__ import annotations

import json
from typing import Any

from bench.bundle_size import Shape, measure_bundle_sizes
from bench.kdf import KdfSizes, measure_kdf, measure_loop_lag
from bench.run import evaluate, machine_info, markdown

TINY = KdfSizes(iterations=1000, repeats=2, per_repeat=2, cached_calls=50, pool_workers=(1, 2), lag_bundles=5)


def test_kdf_and_loop_lag_shape() -> None:
    kdf = measure_kdf(TINY)
    lag = measure_loop_lag(TINY, workers=2)
    result: dict[str, Any] = {
        "machine": machine_info("unit test"),
        "kdf": kdf,
        "loop_lag_ms": lag,
        "scale": [],
        "bundle_size": measure_bundle_sizes((Shape(3, 0), Shape(2, 2 * 1024 * 1024)), repeats=1),
    }
    json.loads(json.dumps(result))  # serialisable as written

    for key in ("raw_limit_per_s", "inline_per_s", "cached_per_s"):
        assert isinstance(kdf[key], float) and kdf[key] > 0
    assert set(kdf["pool_per_s"]) == {"1", "2"}
    assert all(isinstance(v, float) and v > 0 for v in kdf["pool_per_s"].values())
    assert set(kdf["ratio_to_raw"]) == {"inline", "cached", "pool_1", "pool_2"}
    for spread in (kdf["detail"]["raw"], kdf["detail"]["inline"], *kdf["detail"]["pool"].values()):
        assert spread["min"] <= spread["median"] <= spread["max"] and len(spread["samples"]) == TINY.repeats

    assert isinstance(lag["p99"], float) and isinstance(lag["max"], float) and lag["p99"] <= lag["max"]
    assert lag["bundles"] == 5 and lag["derivations"] == 5  # distinct passphrases: nothing came from the cache
    assert set(lag["baseline_idle"]) >= {"p99", "max"}

    small, large = result["bundle_size"]
    assert small["fits_one_kubernetes_secret"] and not large["fits_one_kubernetes_secret"]
    assert large["envelope_bytes"] > 2 * 1024 * 1024 > small["envelope_bytes"]
    assert all(b["loop_stall_ms"] >= 0 and b["total_ms"] > 0 for b in result["bundle_size"])

    targets = evaluate(result)
    assert targets[0]["target"].startswith("loop lag") and isinstance(targets[0]["met"], bool)
    result["targets"] = targets
    table = markdown(result)
    assert "| raw `cryptography`, 1 core |" in table and "| 2, 2,097,152 |" in table
