"""bench/drift_cost.py's bookkeeping without a test bed: which store requests are writes, the window's deltas and
the per-check figures, and the counting proxy's operations."""

from __future__ import annotations

import http.client
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

from bench.drift_cost import Snapshot, delta, is_write, per_check
from e2e.faults import FaultProxy


def test_writes_are_told_from_reads_per_store() -> None:
    assert not is_write("awsSecretsManager", "GetSecretValue") and not is_write("awsSecretsManager", "DescribeSecret")
    assert is_write("awsSecretsManager", "PutSecretValue") and is_write("awsSecretsManager", "TagResource")
    assert is_write("gcpSecretManager", "AddSecretVersion") and not is_write("gcpSecretManager", "AccessSecretVersion")
    assert is_write("hashicorpVault", "POST") and not is_write("hashicorpVault", "GET")
    assert is_write("githubActions", "PUT") and not is_write("githubActions", "GET")


def _snapshot(at: float, checks: float, store: dict[str, int], cpu: float, api: dict[str, int]) -> Snapshot:
    snap = Snapshot.__new__(Snapshot)
    values: dict[str, Any] = {"at": at, "checks": checks, "repairs": 0.0, "s3": 4 * checks, "op_writes": 0.0}
    values |= {"kdf": 1.0, "cpu": cpu, "store": Counter(store), "api": Counter(api)}
    snap.__dict__.update(values)
    return snap


def test_window_deltas_and_per_check_figures() -> None:
    before = _snapshot(10.0, 5, {"GetSecretValue": 10, "DescribeSecret": 10}, 1.0, {"GET secrets": 7})
    after = _snapshot(
        40.0, 15, {"GetSecretValue": 40, "DescribeSecret": 40, "PutSecretValue": 1}, 1.5, {"GET secrets": 37}
    )
    window = delta("awsSecretsManager", before, after)
    assert window["drift_checks"] == 10 and window["seconds"] == 30.0
    assert window["store_requests"] == 61 and window["store_writes"] == 1
    assert window["store_requests_by_operation"] == {"DescribeSecret": 30, "GetSecretValue": 30, "PutSecretValue": 1}
    assert window["operator_s3_requests"] == 40 and window["kdf"] == 0 and window["api_requests"] == 30
    assert per_check(window) == {
        "store_requests": 6.1,
        "s3_requests": 4.0,
        "api_requests": 3.0,
        "operator_cpu_ms": 50.0,
    }


def test_no_checks_gives_no_per_check_figure_rather_than_a_division_by_zero() -> None:
    same = _snapshot(1.0, 3, {}, 1.0, {})
    assert set(per_check(delta("kubernetesSecret", same, same)).values()) == {None}


def test_the_proxy_counts_requests_by_aws_action_or_http_method() -> None:
    class Upstream(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PATCH = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    Thread(target=server.serve_forever, daemon=True).start()
    proxy = FaultProxy(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        port = int(proxy.url.rsplit(":", 1)[1])
        for method, headers in (
            ("POST", {"X-Amz-Target": "secretsmanager.GetSecretValue"}),
            ("POST", {"X-Amz-Target": "secretsmanager.GetSecretValue"}),
            ("GET", {}),
            ("PATCH", {}),
        ):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request(method, "/", body=b"{}", headers=headers)
            assert connection.getresponse().status == 200
            connection.close()
        assert proxy.operations == Counter({"GetSecretValue": 2, "GET": 1, "PATCH": 1})
        assert proxy.requests == 4
    finally:
        proxy.close()
        server.shutdown()
        server.server_close()
