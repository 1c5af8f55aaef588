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


def test_scale_case_reports_the_median_run_and_the_worst_idle_counts() -> None:
    from bench.run import representative

    runs = [
        {"n": 10, "ready_s": 3.0, "idle_cycle_api_writes": 0, "idle_cycle_kdf_calls": 0, "tag": "slow"},
        {"n": 10, "ready_s": 1.0, "idle_cycle_api_writes": 2, "idle_cycle_kdf_calls": 0, "tag": "fast"},
        {"n": 10, "ready_s": 2.0, "idle_cycle_api_writes": 0, "idle_cycle_kdf_calls": 1, "tag": "median"},
        {"n": 10, "ready_s": None, "tag": "timed out"},
    ]
    entry = representative(runs)
    assert entry["tag"] == "median" and entry["ready_s"] == 2.0  # every field from that one run
    assert entry["spread"]["ready_s"] == {"median": 2.0, "min": 1.0, "max": 3.0, "samples": [3.0, 1.0, 2.0]}
    assert entry["repeats"] == 4 and entry["failed_runs"] == 1
    assert entry["idle_cycle_api_writes_max_over_runs"] == 2 and entry["idle_cycle_kdf_calls_max_over_runs"] == 1


def test_dotsec_open_bench_shape() -> None:
    from bench.dotsec_open import measure_age

    result = measure_age(entries=5, runs=2)
    json.loads(json.dumps(result))
    assert result["entries"] == 5 and result["file_bytes"] > 5 * 200
    for step in ("open_ms", "parse_ms", "age_unwrap_ms", "mac_ms", "decrypt_values_ms", "schema_check_ms"):
        assert 0 < result[step]["min"] <= result[step]["median"] <= result[step]["max"], step
        assert len(result[step]["samples"]) == 2
