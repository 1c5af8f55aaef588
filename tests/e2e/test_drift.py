"""Drift repair on the real apiserver (and moto / OpenBao for stores), with an unchanged bundle throughout.

Kubernetes Secret targets are repaired from the managed-Secret watch: a hand edit within 5 s of the edit, a
deleted Secret recreated, removed labels restored, a key of another field manager kept, a burst of edits one
repair, and idle cycles write nothing (the apiserver's audit log). External stores are checked on their
`driftCheckInterval`; the operator runs with `--min-drift-check-interval 1s` (a test-bed override of the 1m
minimum) so a check comes every few seconds. Requests per check are counted by a pass-through proxy in front of
each store: the numbers docs/targets/*.md report.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.helpers import aws_client, wait_for
from tests.e2e.test_operator import (
    CANARY,
    REPO,
    Operator,
    Scenario,
    kube,
    kubectl,
    scenario,
    start_operator,
    stop_operator,
)

__all__ = ["kube", "scenario"]  # the fixtures, shared with test_operator.py

pytestmark = pytest.mark.testbed
KIND_LABEL = "app.kubernetes.io/managed-by"


@pytest.fixture(scope="module")
def operator(testbed: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    kubectl(testbed, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(testbed, "wait", "--for=condition=Established", "crd/vaultbundles.vaultbundle.io", "--timeout=30s")
    log: Path = tmp_path_factory.mktemp("operator-drift") / "operator.log"
    process, port = start_operator(testbed, log, "--min-drift-check-interval", "1s")
    try:
        yield Operator(log, port)
    finally:
        stop_operator(process, log)


def repairs(operator: Operator, kind: str) -> float:
    return operator.metric("vaultbundle_drift_repairs_total", kind=kind)


def checks(operator: Operator) -> float:
    return operator.metric("vaultbundle_drift_checks_total", kind="kubernetesSecret")


def drift_events(scenario: Scenario) -> list[str]:
    return [message for _, reason, message in scenario.events() if reason == "DriftRepaired"]


def patch_data(scenario: Scenario, name: str, **data: str) -> None:
    """A hand edit, as `kubectl edit` makes it (an Update by another field manager)."""
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    scenario.core.patch_namespaced_secret(name, scenario.ns, {"data": encoded}, field_manager="kubectl-edit")


def timed_repair(scenario: Scenario, name: str, expected: dict[str, str], what: str) -> float:
    started = time.monotonic()
    wait_for(lambda: scenario.data(name) == expected, what, timeout=15)
    return time.monotonic() - started


def test_kubernetes_secret_drift_is_repaired_from_the_watch(
    scenario: Scenario, operator: Operator, testbed: dict[str, str]
) -> None:
    scenario.push({".env.prod": f"API_KEY={CANARY}\nDB_URL=postgres://db/app\n".encode()})
    # a long refreshInterval: every repair below comes from the watch, not from a refresh
    scenario.apply("web", {"name": "web-env"}, refreshInterval="1h")
    ours = {"API_KEY": CANARY, "DB_URL": "postgres://db/app"}
    wait_for(lambda: scenario.data("web-env") == ours, "the first sync")
    wait_for(lambda: scenario.reason("web") == "Synced", "Ready=Synced")
    before, checked = repairs(operator, "kubernetesSecret"), checks(operator)

    # a key written by another field manager (server-side apply) stays, and is no drift
    theirs = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-env"}, "data": {"THEIRS": "eA=="}}
    scenario.core.patch_namespaced_secret(
        "web-env", scenario.ns, theirs, field_manager="someone-else", _content_type="application/apply-patch+yaml"
    )
    expected = {**ours, "THEIRS": "x"}
    wait_for(lambda: checks(operator) > checked, "the drift check of the other manager's change")
    assert scenario.data("web-env") == expected and repairs(operator, "kubernetesSecret") == before

    # a hand edit of one of our keys: put back within 5 s of the edit, one Event naming the key, no value
    patch_data(scenario, "web-env", API_KEY="edited-by-hand")
    took = timed_repair(scenario, "web-env", expected, "the edited key put back")
    assert took < 5, f"repair took {took:.1f}s"
    wait_for(lambda: drift_events(scenario), "a DriftRepaired Event")
    (message,) = drift_events(scenario)
    assert "API_KEY" in message and "edited-by-hand" not in message and CANARY not in message
    assert repairs(operator, "kubernetesSecret") == before + 1

    # the Secret deleted: recreated (the other manager's key went with it)
    scenario.core.delete_namespaced_secret("web-env", scenario.ns)
    took = timed_repair(scenario, "web-env", ours, "the deleted Secret recreated")
    assert took < 5, f"recreation took {took:.1f}s"

    # our label and annotations removed: restored
    scenario.core.patch_namespaced_secret(
        "web-env",
        scenario.ns,
        {"metadata": {"labels": {KIND_LABEL: None}, "annotations": {"vaultbundle.io/owner": None}}},
    )

    def restored() -> bool:
        meta = scenario.core.read_namespaced_secret("web-env", scenario.ns).metadata
        return (meta.labels or {}).get(KIND_LABEL) == "vaultbundle" and "vaultbundle.io/owner" in (
            meta.annotations or {}
        )

    wait_for(restored, "the label and annotation restored", timeout=5)

    # a burst of three edits inside the debounce: one repair
    wait_for(lambda: repairs(operator, "kubernetesSecret") == before + 3, "the metric counted every repair")
    for value in ("one", "two", "three"):
        patch_data(scenario, "web-env", DB_URL=value)
    timed_repair(scenario, "web-env", ours, "the burst repaired")
    wait_for(lambda: repairs(operator, "kubernetesSecret") == before + 4, "the burst's repair counted")

    # idle: our own repairs woke nothing (no second repair of the burst), and with no drift nothing is written
    # (the apiserver's audit log)
    writes, events, checked = scenario.api_writes(), len(scenario.events()), checks(operator)
    time.sleep(4)
    assert checks(operator) == checked
    assert scenario.api_writes() == writes and len(scenario.events()) == events
    assert repairs(operator, "kubernetesSecret") == before + 4


def test_idle_refresh_cycles_without_drift_write_nothing(scenario: Scenario, operator: Operator) -> None:
    scenario.push({".env.prod": f"API_KEY={CANARY}\n".encode()})
    scenario.apply("idle", {"name": "idle-env"})  # refreshInterval 1s
    wait_for(lambda: scenario.data("idle-env") == {"API_KEY": CANARY}, "the first sync")
    wait_for(lambda: scenario.reason("idle") == "Synced", "Ready=Synced")
    time.sleep(1.5)
    writes, idle = scenario.api_writes(), operator.metric("vaultbundle_syncs_total", result="Idle")
    time.sleep(5)
    assert operator.metric("vaultbundle_syncs_total", result="Idle") - idle >= 3
    assert scenario.api_writes() == writes


def _vault(testbed: dict[str, str]) -> Any:
    import hvac

    return hvac.Client(url=testbed["VAULT_ADDR"], token=testbed["VAULT_TOKEN"])


def test_store_values_changed_by_hand_are_repaired_on_the_next_drift_check(
    scenario: Scenario, operator: Operator, testbed: dict[str, str], request: pytest.FixtureRequest
) -> None:
    from e2e.faults import FaultProxy

    aws_proxy, vault_proxy = FaultProxy(testbed["AWS_ENDPOINT_URL"]), FaultProxy(testbed["VAULT_ADDR"])
    request.addfinalizer(aws_proxy.close)
    request.addfinalizer(vault_proxy.close)
    scenario.push({".env.prod": f"API_KEY={CANARY}\nDB_URL=postgres://db/app\n".encode()})
    scenario.secret("vault", {"token": testbed["VAULT_TOKEN"]})
    scenario.secret(
        "aws", {"access-key-id": testbed["AWS_ACCESS_KEY_ID"], "secret-access-key": testbed["AWS_SECRET_ACCESS_KEY"]}
    )
    prefix, path = f"{scenario.ns}/", f"apps/{scenario.ns}"
    targets = [
        {
            "name": "aws",
            "awsSecretsManager": {
                "region": "us-east-1",
                "endpoint": aws_proxy.url,
                "namePrefix": prefix,
                "credentialsSecretRef": {"name": "aws"},
                "driftCheckInterval": "3s",
            },
        },
        {
            "name": "vault",
            "hashicorpVault": {
                "address": vault_proxy.url,
                "mount": "secret",
                "path": path,
                "auth": {"tokenSecretRef": {"name": "vault"}},
                "driftCheckInterval": "3s",
            },
        },
    ]
    scenario.apply("stores", {}, refreshInterval="1h", targets=targets)  # `targets` replaces the Secret target
    wait_for(lambda: scenario.reason("stores") == "Synced", "both stores in sync", 60)
    secrets_manager = aws_client(testbed, "secretsmanager")
    vault = _vault(testbed)

    def aws_value() -> str:
        return str(secrets_manager.get_secret_value(SecretId=f"{prefix}API_KEY")["SecretString"])

    def vault_data() -> dict[str, str]:
        read = vault.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
        return dict(read["data"]["data"])

    def vault_version() -> int:
        return int(vault.secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")["data"]["current_version"])

    assert aws_value() == CANARY and vault_data()["API_KEY"] == CANARY

    # checks without drift: read-only. Count requests per check (what docs/targets/*.md report), sampled between
    # checks: when neither proxy has seen a request for half a second (a check comes every 3 s)
    def between_checks() -> tuple[int, int, float, float]:
        def quiet() -> bool:
            seen = (aws_proxy.requests, vault_proxy.requests)
            time.sleep(0.5)
            return seen == (aws_proxy.requests, vault_proxy.requests)

        wait_for(quiet, "a pause between drift checks", 30)
        return (
            aws_proxy.requests,
            vault_proxy.requests,
            operator.metric("vaultbundle_drift_checks_total", kind="awsSecretsManager"),
            operator.metric("vaultbundle_drift_checks_total", kind="hashicorpVault"),
        )

    aws_start, vault_start, aws_checks, vault_checks = between_checks()
    writes, versions = scenario.api_writes(), vault_version()
    wait_for(
        lambda: operator.metric("vaultbundle_drift_checks_total", kind="hashicorpVault") >= vault_checks + 2,
        "two drift checks",
        30,
    )
    aws_end, vault_end, aws_checks_end, vault_checks_end = between_checks()
    aws_done, vault_done = aws_checks_end - aws_checks, vault_checks_end - vault_checks
    aws_requests, vault_requests = aws_end - aws_start, vault_end - vault_start
    assert aws_done >= 1 and vault_done >= 1
    print(f"\nrequests per drift check: AWS {aws_requests / aws_done:g}, Vault {vault_requests / vault_done:g}")
    assert aws_requests / aws_done == 4  # DescribeSecret and GetSecretValue per key (2 keys, no prune)
    assert vault_requests / vault_done == 4  # token lookup-self, mount check, metadata read, data read
    assert scenario.api_writes() == writes and vault_version() == versions  # nothing written anywhere

    # a value changed by hand in AWS: put back by the next check (one new version), Event and metric
    before = repairs(operator, "awsSecretsManager")
    secrets_manager.put_secret_value(SecretId=f"{prefix}API_KEY", SecretString="edited-by-hand")
    wait_for(lambda: aws_value() == CANARY, "the AWS value put back", 30)
    wait_for(lambda: repairs(operator, "awsSecretsManager") == before + 1, "the AWS repair counted")
    assert any("aws" in m and "API_KEY" in m for m in drift_events(scenario))

    # Vault likewise: a hand-written version is replaced by one new version
    before = repairs(operator, "hashicorpVault")
    vault.secrets.kv.v2.create_or_update_secret(
        path=path, mount_point="secret", secret={**vault_data(), "DB_URL": "edited-by-hand"}
    )
    edited = vault_version()
    wait_for(lambda: vault_data().get("DB_URL") == "postgres://db/app", "the Vault value put back", 30)
    assert vault_version() == edited + 1
    wait_for(lambda: repairs(operator, "hashicorpVault") == before + 1, "the Vault repair counted")
    for message in drift_events(scenario):
        assert "edited-by-hand" not in message and CANARY not in message


def test_check_intervals_reach_kubectl_explain(testbed: dict[str, str], operator: Operator) -> None:
    import subprocess

    def explain(field: str) -> str:
        command = [testbed["KUBECTL"], "--kubeconfig", testbed["KUBECONFIG"], "explain", f"vaultbundles.spec.{field}"]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    for kind in ("awsSecretsManager", "hashicorpVault", "gcpSecretManager", "azureKeyVault"):
        text = explain(f"targets.{kind}.driftCheckInterval")
        assert "DriftRepaired" in text and "--min-drift-check-interval" in text
    assert "write-only" in explain("targets.githubActions.resyncInterval")
