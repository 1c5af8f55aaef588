"""bench/memory.py without a test bed: the per-VaultBundle fit, its table, and the code it puts into the operator."""

from __future__ import annotations

from typing import Any

from bench.memory import SITECUSTOMIZE, TRIM_SITECUSTOMIZE, markdown, per_bundle


def _run(variant: str, n: int, idle: float, profiled: bool = False) -> dict[str, Any]:
    return {"variant": variant, "n": n, "profiled": profiled, "ready_s": 1.0, "rss_empty_mib": 100.0,
            "rss_ready_mib": idle, "rss_idle_mib": idle}  # fmt: skip


def test_the_fit_is_the_slope_between_the_smallest_and_largest_n_of_unprofiled_runs() -> None:
    runs = [_run("this", 1000, 150.0), _run("this", 3000, 250.0), _run("this", 3000, 999.0, profiled=True)]
    assert per_bundle(runs, "this", "rss_idle_mib") == {"kib_per_bundle": 51.2, "fixed_mib": 100.0}
    assert per_bundle(runs[:1], "this", "rss_idle_mib") is None  # one N: no slope
    result = {
        "machine": {"loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": [2.0, 2.0, 2.0]},
        "refresh_interval_s": 30.0,
        "distinct_bundles": 100,
        "runs": runs,
        "fit": {"this": per_bundle(runs, "this", "rss_idle_mib")},
    }
    table = markdown(result)
    assert "| this | 51.2 | 100.0 | 600 |" in table  # 100 MiB + 51.2 KiB x 10,000
    assert "999.0" not in table  # profiled runs are not compared


def test_the_operator_side_code_compiles() -> None:
    compile(SITECUSTOMIZE, "sitecustomize.py", "exec")
    compile(TRIM_SITECUSTOMIZE, "sitecustomize.py", "exec")
