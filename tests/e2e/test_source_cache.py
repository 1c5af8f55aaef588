"""Labelled source Secrets are read from the operator's watch-fed cache, on the real kube-apiserver.

An idle VaultBundle whose sources carry `vaultbundle.io/source=true` makes no GET of them (the operator's own
read counter, and the apiserver's `apiserver_request_total` for Secret GETs); a rotated passphrase resyncs at
once with the new value (refreshInterval 1h: only the watch can wake it, and a stale read would leave it at
WrongPassphrase); taking the label off sends the reads back to GETs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from tests.e2e.helpers import wait_for
from tests.e2e.test_operator import ROTATED, Operator, Scenario, kube, operator  # noqa: F401 - module fixtures

pytestmark = pytest.mark.testbed
LABEL = "vaultbundle.io/source"
_GETS = re.compile(r"^apiserver_request_total\{([^}]*)\} (\S+)$", re.MULTILINE)


@pytest.fixture
def scenario(testbed: dict[str, str], kube: k8s.ApiClient, operator: Operator) -> Iterator[Scenario]:  # noqa: F811
    made = Scenario(testbed, kube)
    yield made
    made.core.delete_namespace(made.ns)


def only_ours(scenario: Scenario) -> bool:
    """True when every VaultBundle in the cluster is *scenario*'s. The operator's read counter and the apiserver's
    GET counter are cluster-wide: another namespace's VaultBundle (an earlier module's, its namespace still
    terminating) reads its unlabelled sources by GET and would count in the window."""
    listed = scenario.custom.list_cluster_custom_object("vaultbundle.io", "v1alpha1", "vaultbundles")["items"]
    return all(item["metadata"]["namespace"] == scenario.ns for item in listed)


def label(scenario: Scenario, name: str, value: str | None) -> None:
    scenario.core.patch_namespaced_secret(name, scenario.ns, {"metadata": {"labels": {LABEL: value}}})


def api_reads(process: Operator) -> float:
    return process.metric("vaultbundle_source_reads_total", kind="secret", origin="api")


def cache_reads(process: Operator) -> float:
    return process.metric("vaultbundle_source_reads_total", kind="secret", origin="cache")


def apiserver_secret_gets(api: k8s.ApiClient) -> float:
    """Single-Secret GETs the apiserver served (every client: the test makes none in the window)."""
    text = api.request("GET", f"{api.configuration.host}/metrics", _preload_content=False).data.decode()
    total = 0.0
    for labels, value in _GETS.findall(text):
        if 'verb="GET"' in labels and 'resource="secrets"' in labels and 'scope="resource"' in labels:
            total += float(value)
    return total


def test_labelled_sources_are_not_read_from_the_apiserver_while_idle(
    scenario: Scenario,
    operator: Operator,  # noqa: F811
    kube: k8s.ApiClient,  # noqa: F811
) -> None:
    wait_for(lambda: only_ours(scenario), "no VaultBundle left in another namespace", timeout=120)
    for name in ("web-vsync", "web-passphrase"):
        label(scenario, name, "true")
    scenario.push({".env.prod": b"API_KEY=one\n"})
    scenario.apply("idle", {"name": "idle-env"})  # refreshInterval 1s: a cycle every second
    scenario.apply("rot", {"name": "rot-env"}, refreshInterval="1h")  # only a watch event wakes it
    wait_for(lambda: scenario.data("idle-env") == {"API_KEY": "one"}, "the first sync")
    wait_for(lambda: scenario.data("rot-env") == {"API_KEY": "one"}, "the first sync")

    # (a) idle cycles: the sources come from the cache, not one GET of them
    time.sleep(1.5)  # the first syncs' own reads are done
    api, cached, gets = api_reads(operator), cache_reads(operator), apiserver_secret_gets(kube)
    time.sleep(4)
    assert only_ours(scenario)  # still alone: the counters below are this test's
    assert api_reads(operator) == api
    assert cache_reads(operator) >= cached + 2 * 3  # at least 3 idle cycles, two sources each
    assert apiserver_secret_gets(kube) == gets  # the apiserver agrees: no Secret GET from anyone

    # (b) rotation: the cycle the watch wakes reads the new passphrase (a stale one would be WrongPassphrase)
    scenario.push({".env.prod": b"API_KEY=two\n"}, passphrase=ROTATED)
    changed = time.monotonic()
    scenario.core.patch_namespaced_secret("web-passphrase", scenario.ns, {"stringData": {"passphrase": ROTATED}})
    wait_for(lambda: scenario.data("rot-env") == {"API_KEY": "two"}, "the rotated passphrase's resync", timeout=10)
    assert time.monotonic() - changed < 10 and scenario.reason("rot") == "Synced"

    # (c) the label taken off: the apiserver sends DELETED, the cache forgets it, every cycle GETs it again
    label(scenario, "web-passphrase", None)
    wait_for(lambda: api_reads(operator) >= api + 2, "the unlabelled passphrase read by GET", timeout=10)
    api = api_reads(operator)
    time.sleep(3)
    assert api_reads(operator) >= api + 2  # one GET a cycle, as for any unlabelled source
    assert scenario.data("idle-env") == {"API_KEY": "two"} and scenario.reason("idle") == "Synced"
