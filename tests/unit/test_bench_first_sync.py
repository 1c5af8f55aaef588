"""bench/first_sync_cpu.py's bookkeeping without a test bed: request accounting and the summary's shape."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.first_sync_cpu import operator_requests, summarize


def _run(variant: str, cpu: float, gets: int) -> dict[str, Any]:
    return {
        "variant": variant,
        "n": 10,
        "ready_s": 1.0,
        "operator_ms_per_bundle": cpu,
        "operator_ms_per_bundle_settled": cpu,
        "apiserver_ms_per_bundle": 2 * cpu,
        "apiserver_ms_per_bundle_settled": 2 * cpu,
        "api_requests_per_bundle": gets / 10,
        "api_requests": {"GET secrets": gets},
    }


def test_the_bench_clients_own_requests_are_not_the_operators() -> None:
    delta = Counter({"POST vaultbundle.io/vaultbundles": 10, "LIST vaultbundle.io/vaultbundles": 7, "GET secrets": 30})
    assert operator_requests(delta, n=10, bench_lists=7) == {"GET secrets": 30}


def test_summary_has_median_and_range_per_variant() -> None:
    runs = [_run("base", 20.0, 30), _run("this", 10.0, 20), _run("base", 22.0, 30), _run("this", 12.0, 20)]
    summary = summarize(runs, ["base", "this"])
    assert summary["base"]["operator_ms_per_bundle"]["median"] == 21.0
    assert summary["this"]["operator_ms_per_bundle"]["min"] == 10.0
    assert summary["this"]["api_requests_per_bundle_by_kind"] == {"GET secrets": 2.0}
