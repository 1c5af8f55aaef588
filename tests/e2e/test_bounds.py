"""Issue #13 item 3 on the real apiserver: one namespace's slow bundles do not delay another namespace's sync.

Namespace a holds 16 VaultBundles whose config blob points at an S3 endpoint that answers every request only
after 15 s (a loopback fault proxy in front of the bed's S3). With the old single semaphore of 16 slots they
held every slot, and namespace b's VaultBundle waited for them; with per-namespace limits (4) b syncs at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from tests.conftest import REPO
from tests.e2e.helpers import http_get, wait_for
from tests.e2e.test_operator import PASSPHRASE, Scenario, kube, kubectl, start_operator, stop_operator  # noqa: F401

from vaultbundle import bundles
from vaultbundle.bundles import Layout
from vaultbundle.crypto import configblob
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.remote import S3Objects
from vaultbundle.vault import MAX_KEYS as LIMIT_KEYS

pytestmark = pytest.mark.testbed
SLOW_SECONDS = 15.0


@pytest.fixture
def operator_port(testbed: dict[str, str], tmp_path: Path) -> Iterator[int]:
    kubectl(testbed, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(testbed, "wait", "--for=condition=Established", "crd/vaultbundles.vaultbundle.io", "--timeout=30s")
    log = tmp_path / "operator.log"
    process, port = start_operator(testbed, log, "--max-concurrent-per-namespace", "4")
    try:
        yield port
    finally:
        stop_operator(process, log)


def test_sixteen_slow_vaultbundles_do_not_delay_another_namespace(
    testbed: dict[str, str],
    kube: k8s.ApiClient,  # noqa: F811 - the module fixture of test_operator
    operator_port: int,
) -> None:
    from e2e.faults import FaultProxy

    slow_ns, other = Scenario(testbed, kube), Scenario(testbed, kube)
    proxy = FaultProxy(testbed["AWS_ENDPOINT_URL"])
    try:
        slow_ns.push({".env.prod": b"A=1\n"})
        via_proxy = BootstrapConfig(**{**slow_ns.config.__dict__, "endpoint": proxy.url})
        slow_ns.secret("web-vsync", {"config": configblob.encode(via_proxy)}, replace=True)
        proxy.set("slow", SLOW_SECONDS)
        for index in range(16):
            slow_ns.apply(f"slow-{index}", {"name": f"slow-{index}"})
        wait_for(lambda: proxy.requests >= 4, "namespace a's reconciles to be stuck on the slow endpoint")

        other.push({".env.prod": b"B=2\n"})
        started = time.monotonic()
        other.apply("web", {"name": "web-env"})
        wait_for(lambda: other.data("web-env") == {"B": "2"}, "namespace b's Secret", timeout=SLOW_SECONDS * 3)
        waited = time.monotonic() - started
        assert waited < 5.0, f"namespace b waited {waited:.1f}s behind namespace a's slow bundles"
        assert proxy.requests <= 4 * 3, "more than 4 of namespace a's reconciles ran at once"  # 4 slots, ≤3 GETs
        assert http_get(f"http://127.0.0.1:{operator_port}/healthz") == "ok\n"
    finally:
        proxy.set("pass")
        for scenario in (slow_ns, other):
            scenario.core.delete_namespace(scenario.ns)
        time.sleep(SLOW_SECONDS + 1)  # let the requests held by the proxy finish before the operator stops
        proxy.close()


def test_a_bundle_at_every_limit_keeps_healthz_green(
    testbed: dict[str, str],
    kube: k8s.ApiClient,  # noqa: F811 - the module fixture of test_operator
    operator_port: int,
) -> None:
    """10,000 keys (the limit), ~62 MiB of runtime-layout JSON (the object cap is 64 MiB), a dry-run target:
    while the operator downloads, decrypts, parses, selects and digests it, /healthz answers at once."""
    scenario = Scenario(testbed, kube)
    try:
        value = "v" * 6_400
        files = {".env": "".join(f"KEY_{i}={value}\n" for i in range(LIMIT_KEYS)).encode()}
        bundles.push(
            S3Objects(scenario.config), scenario.config, PASSPHRASE, scenario.pool, files, layout=Layout.RUNTIME
        )
        answers: list[tuple[float, str]] = []
        done = threading.Event()

        def probe() -> None:
            while not done.is_set():
                started = time.monotonic()
                try:
                    text = http_get(f"http://127.0.0.1:{operator_port}/healthz")
                except OSError as exc:
                    text = type(exc).__name__
                answers.append((time.monotonic() - started, text))
                time.sleep(0.05)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        scenario.apply("big", {"name": "big-env"}, dryRun=True)
        wait_for(
            lambda: (scenario.vb("big").get("status", {}).get("targets") or [{}])[0].get("keys") == LIMIT_KEYS,
            "the dry run of the bundle at the limits",
            timeout=120,
        )
        done.set()
        prober.join(5)
        assert scenario.reason("big") == "DryRun"
        assert len(scenario.vb("big")["status"]["targets"][0]["plan"]["create"]) == 100  # status stays bounded
        assert answers and all(text == "ok\n" for _, text in answers), {text for _, text in answers}
        slowest = max(seconds for seconds, _ in answers)
        print(f"/healthz: {len(answers)} probes, slowest {slowest * 1000:.0f} ms")
        assert slowest < 1.0, f"/healthz took {slowest:.2f}s while the bundle was processed"
    finally:
        scenario.core.delete_namespace(scenario.ns)
