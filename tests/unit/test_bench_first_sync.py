"""bench/first_sync_cpu.py's bookkeeping without a test bed: request accounting and the summary's shape."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.first_sync_cpu import operator_requests, summarize
from bench.profile_shares import parse_raw, shares


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


def test_profile_shares_charge_a_library_call_to_the_library_not_to_its_caller() -> None:
    raw = "\n".join(
        [
            # a kube call from a worker thread: the client's, though the executor and our code are on the stack
            "_bootstrap (threading.py:1002);run (concurrent/futures/thread.py:58);_call (vaultbundle/kube.py:117);"
            "request (kubernetes/client/rest.py:170) 6",
            # our reconcile on the event loop, under kopf's frames at the root of the main thread: ours, not kopf's
            "run (kopf/_core/reactor/running.py:1);_run_once (asyncio/base_events.py:1922);"
            "_reconcile (vaultbundle/reconcile.py:160) 3",
            # the loop waiting in select with the GIL (between callbacks)
            "_run_once (asyncio/base_events.py:1898);select (selectors.py:468) 1",
            "frame (unknown.py:1) 0",  # a zero count line adds nothing
            "garbage line without a count",
        ]
    )
    found = shares(parse_raw(raw), ms_per_bundle=10.0)
    by_name = {row["share"]: row for row in found["shares"]}
    assert found["samples"] == 10
    assert by_name["Kubernetes client calls"]["ms_per_bundle"] == 6.0
    assert by_name["our reconcile, targets, status, scheduling"]["percent"] == 30.0
    assert by_name["event loop (asyncio, selectors)"]["samples"] == 1
    assert sum(row["samples"] for row in found["shares"]) == found["samples"] and "other" not in by_name
