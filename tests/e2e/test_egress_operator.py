"""The egress policy through the real operator: a tenant's config blob naming a loopback or metadata S3 endpoint
is refused with PolicyDenied, and no request reaches the address (a recording server listens on loopback).

The operator here runs WITHOUT `--egress-allow-local`, the production default; every other e2e module passes it
because the test bed's servers listen on loopback."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest
from kubernetes import client as k8s
from tests.conftest import REPO
from tests.e2e.helpers import wait_for
from tests.e2e.test_operator import Scenario, kube, kubectl, start_operator, stop_operator

from vaultbundle.crypto import configblob

pytestmark = pytest.mark.testbed
__all__ = ["kube"]  # the fixture


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    hits: ClassVar[list[str]] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("R", (_Recorder,), {"hits": hits}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def scenario(testbed: dict[str, str], kube: k8s.ApiClient, tmp_path: Path) -> Iterator[Scenario]:
    """A namespace of its own, watched by an operator of its own that runs with the production egress default."""
    kubectl(testbed, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(testbed, "wait", "--for=condition=Established", "crd/vaultbundles.vaultbundle.io", "--timeout=30s")
    made = Scenario(testbed, kube)
    log = tmp_path / "operator.log"
    process, _ = start_operator(testbed, log, "--namespace", made.ns, allow_local=False)
    try:
        yield made
    finally:
        stop_operator(process, log)
        made.core.delete_namespace(made.ns)


def test_a_loopback_or_metadata_s3_endpoint_is_policy_denied_and_never_contacted(
    scenario: Scenario, recorder: tuple[str, list[str]]
) -> None:
    url, hits = recorder
    for name, endpoint in (
        ("loop", url),
        ("imds", "http://169.254.169.254"),
        ("named", url.replace("127.0.0.1", "localhost")),
    ):
        blob = configblob.encode(replace(scenario.config, endpoint=endpoint))
        scenario.secret(f"{name}-vsync", {"config": blob})
        refs = {"configSecretRef": {"name": f"{name}-vsync"}}
        scenario.apply(name, {"name": f"{name}-env"}, source=refs)
    for name in ("loop", "imds", "named"):
        wait_for(lambda n=name: scenario.reason(n) == "PolicyDenied", f"PolicyDenied for {name}")
        message = scenario.condition(name)["message"]
        assert "S3 endpoint of the config blob" in message and "egress policy" in message
        assert scenario.data(f"{name}-env") is None
    assert hits == [], "a request reached the tenant's loopback endpoint"
    # the test bed's own S3 is on loopback too: refused the same way, so nothing here is specific to the recorder
    scenario.push({".env.prod": b"A=1\n"})
    scenario.apply("bed", {"name": "bed-env"})
    wait_for(lambda: scenario.reason("bed") == "PolicyDenied", "PolicyDenied for the test bed's S3")
