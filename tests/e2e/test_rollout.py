"""Rollout restarts and the never-silently-empty guard (issue #14, items 3 and 4) on the real kube-apiserver.

Restarts: the chart is rendered and applied in namespaced mode, and the operator runs with a token of the chart's
ServiceAccount (as in test_chart_rbac.py). Deployments exist in the apiserver and the controller-manager rolls them
(a new ReplicaSet per pod template change); no pod needs to run, so no node is needed. Without
`rbac.rolloutRestart` a restart reports `Forbidden` naming that value; with it, no restart at the Secret's
creation, one restart for three quick pushes inside `rolloutMinInterval`, and a missing Deployment fails alone.

Empty bundles: a bundle that suddenly holds nothing is refused (`BundleEmpty`) and leaves a Kubernetes Secret and
an AWS Secrets Manager target (moto) untouched; `spec.source.allowEmpty` lets it through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from tests.e2e.helpers import secrets_manager, wait_for
from tests.e2e.test_chart_rbac import (
    CHART,
    Scenario,
    admin,
    chart_key,
    helm,
    kubectl,
    namespaces,
    start_operator,
    stop_operator,
    token_kubeconfig,
)

pytestmark = pytest.mark.testbed
__all__ = ["admin", "namespaces"]  # fixtures used here
ANNOTATION = "vaultbundle.io/restartedAt"


def install_chart(testbed: dict[str, str], release: str, system: str, watched: str, *sets: str) -> None:
    """`helm template | kubectl apply --server-side`: a re-apply replaces the Role's rules (the atomic list)."""
    flags = [item for value in (f"watchNamespaces={{{watched}}}", *sets) for item in ("--set", value)]
    rendered = helm(testbed, "template", release, str(CHART), "-n", system, "--kube-version", "1.34.0", *flags)
    assert {doc["kind"] for doc in yaml.safe_load_all(rendered) if doc} >= {"Role", "RoleBinding"}
    kubectl(testbed, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=rendered)


def deployment(apps: k8s.AppsV1Api, namespace: str, name: str) -> None:
    labels = {"app": name}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
                },
            },
        },
    )


def replica_sets(apps: k8s.AppsV1Api, namespace: str, name: str) -> list[k8s.V1ReplicaSet]:
    return [
        rs
        for rs in apps.list_namespaced_replica_set(namespace, label_selector=f"app={name}").items
        if any(ref.name == name for ref in rs.metadata.owner_references or [])
    ]


def rollouts(scenario: Scenario, name: str) -> dict[str, dict[str, Any]]:
    entries = scenario.vb(name).get("status", {}).get("rollouts") or []
    return {f"{e['kind']}/{e['name']}": e for e in entries}


def warnings(scenario: Scenario) -> set[tuple[str, str]]:
    events = scenario.core.list_namespaced_event(scenario.ns).items
    return {(e.reason, e.message) for e in events if e.type == "Warning"}


def push_and_wait(scenario: Scenario, value: str) -> None:
    scenario.push({".env.prod": f"A={value}\n".encode()})
    wait_for(lambda: scenario.data("web-env") == {"A": value}, f"the Secret to hold A={value}", timeout=30)


def test_rollout_restarts_with_the_charts_rbac(
    testbed: dict[str, str], admin: k8s.ApiClient, namespaces: Callable[[str], str], tmp_path: Path
) -> None:
    system, app = namespaces("vbop"), namespaces("vbroll")
    release = "vbroll"
    account = f"{release}-vaultbundle-operator"
    install_chart(testbed, release, system, app)  # rbac.rolloutRestart off (the default)
    apps = k8s.AppsV1Api(admin)
    deployment(apps, app, "web")
    wait_for(lambda: len(replica_sets(apps, app, "web")) == 1, "the controller-manager's first ReplicaSet")
    scenario = Scenario(testbed, admin, app)
    kubeconfig = token_kubeconfig(testbed, system, account, tmp_path / "sa.kubeconfig")
    operator = start_operator(kubeconfig, chart_key(system, account), tmp_path / "operator.log", "--namespace", app)
    try:
        scenario.push({".env.prod": b"A=1\n"})
        workloads = [{"kind": "Deployment", "name": "web"}, {"kind": "Deployment", "name": "ghost"}]
        scenario.apply("web", {"name": "web-env"}, rolloutRestartTargets=workloads, rolloutMinInterval="0s")
        wait_for(lambda: scenario.data("web-env") == {"A": "1"}, "the Secret created")
        wait_for(lambda: scenario.reason("web") == "Synced", "Ready=Synced")
        assert not rollouts(scenario, "web")  # the first creation restarts nothing

        # without rbac.rolloutRestart: Forbidden, naming the chart value; the sync itself is done
        push_and_wait(scenario, "2")
        wait_for(lambda: len(rollouts(scenario, "web")) == 2, "both workloads reported")
        for entry in rollouts(scenario, "web").values():
            assert (entry["state"], entry["reason"]) == ("Failed", "Forbidden")
            assert "rbac.rolloutRestart=true" in entry["message"]
        assert scenario.reason("web") == "Synced"
        wait_for(
            lambda: any(r == "Forbidden" and "rbac.rolloutRestart" in m for r, m in warnings(scenario)),
            "the Forbidden Warning Event",
        )
        web = apps.read_namespaced_deployment("web", app)
        assert ANNOTATION not in (web.spec.template.metadata.annotations or {}) and web.metadata.generation == 1

        # with it: three quick pushes inside a 40 s window give one restart at the window's end
        install_chart(testbed, release, system, app, "rbac.rolloutRestart=true")
        patch = {"spec": {"rolloutMinInterval": "40s"}}
        scenario.custom.patch_namespaced_custom_object("vaultbundle.io", "v1alpha1", app, "vaultbundles", "web", patch)
        first_change = datetime.now().astimezone()
        for value in ("3", "4", "5"):
            push_and_wait(scenario, value)
        pending = rollouts(scenario, "web")["Deployment/web"]
        assert (pending["state"], pending["reason"]) == ("Pending", "RolloutPending")
        assert pending["secrets"] == ["web-env"]
        assert apps.read_namespaced_deployment("web", app).metadata.generation == 1  # not yet: coalescing

        def restarted() -> bool:
            template = apps.read_namespaced_deployment("web", app).spec.template.metadata
            return ANNOTATION in (template.annotations or {})

        wait_for(restarted, "the restart at the window's end", timeout=120)
        web = apps.read_namespaced_deployment("web", app)
        stamp = datetime.fromisoformat(web.spec.template.metadata.annotations[ANNOTATION])
        assert (stamp - first_change).total_seconds() >= 38  # not before the window's end (1 s stamp resolution)
        wait_for(lambda: len(replica_sets(apps, app, "web")) == 2, "the controller-manager's new ReplicaSet")
        wait_for(lambda: rollouts(scenario, "web")["Deployment/web"]["state"] == "Restarted", "status: Restarted")
        entry = rollouts(scenario, "web")["Deployment/web"]
        assert entry["restartedAt"] == web.spec.template.metadata.annotations[ANNOTATION]
        assert "pendingSince" not in entry  # nothing left to restart: exactly one restart for the three pushes
        assert apps.read_namespaced_deployment("web", app).metadata.generation == 2
        assert len(replica_sets(apps, app, "web")) == 2
        ghost = rollouts(scenario, "web")["Deployment/ghost"]
        assert (ghost["state"], ghost["reason"]) == ("Failed", "NotFound")
        assert "ghost does not exist" in ghost["message"]
        assert scenario.reason("web") == "Synced"  # a missing workload does not block the sync
        wait_for(lambda: ("Normal", "RolloutRestarted") in scenario.events(), "the RolloutRestarted Event")
        assert any(r == "NotFound" and "ghost" in m for r, m in warnings(scenario))
    finally:
        stop_operator(operator)
    assert "A=5" not in operator.text()


def test_an_empty_bundle_leaves_every_target_untouched(
    testbed: dict[str, str], admin: k8s.ApiClient, namespaces: Callable[[str], str], tmp_path: Path
) -> None:
    app = namespaces("vbempty")
    scenario = Scenario(testbed, admin, app)
    scenario.core.create_namespaced_secret(
        app,
        {
            "metadata": {"name": "aws"},
            "stringData": {
                "access-key-id": testbed["AWS_ACCESS_KEY_ID"],
                "secret-access-key": testbed["AWS_SECRET_ACCESS_KEY"],
            },
        },
    )
    moto = secrets_manager(testbed)
    prefix = f"{app}/"
    aws = {
        "region": "us-east-1",
        "endpoint": testbed["AWS_ENDPOINT_URL"],
        "namePrefix": prefix,
        "credentialsSecretRef": {"name": "aws"},
        "prune": True,
        "forceDeleteWithoutRecovery": True,
    }
    key = tmp_path / "digest.key"
    key.write_bytes(b"e2e-digest-key-0123456789abcdef")
    operator = start_operator(Path(testbed["KUBECONFIG"]), key, tmp_path / "operator.log", "--namespace", app)
    try:
        scenario.push({".env.prod": b"API_KEY=one\nDB=two\n"})
        targets = [
            {"name": "app", "kubernetesSecret": {"name": "web-env"}},
            {"name": "aws", "awsSecretsManager": aws},
        ]
        scenario.apply("web", {}, targets=targets)
        wait_for(lambda: scenario.reason("web") == "Synced", "Ready=Synced", timeout=60)

        def stored() -> dict[str, str]:
            listing = moto.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}])["SecretList"]
            return {
                s["Name"]: moto.get_secret_value(SecretId=s["Name"])["SecretString"]
                for s in listing
                if s["Name"].startswith(prefix)
            }

        expected_aws = {f"{prefix}API_KEY": "one", f"{prefix}DB": "two"}
        assert stored() == expected_aws and scenario.data("web-env") == {"API_KEY": "one", "DB": "two"}
        secret_version = scenario.secret("web-env").metadata.resource_version  # type: ignore[union-attr]
        versions = {n: moto.get_secret_value(SecretId=n)["VersionId"] for n in expected_aws}

        empty = scenario.push({".env.prod": b"# every line commented out by mistake\n"})
        wait_for(lambda: scenario.reason("web") == "BundleEmpty", "Ready=BundleEmpty", timeout=60)
        status = scenario.vb("web")["status"]
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Verified"]["status"] == "True" and status["bundle"]["timestamp"] != empty
        assert "spec.source.allowEmpty: true" in conditions["Ready"]["message"]
        assert ("Warning", "BundleEmpty") in scenario.events()
        # nothing written anywhere: the Secret is the same object version, every AWS secret the same version
        assert scenario.secret("web-env").metadata.resource_version == secret_version  # type: ignore[union-attr]
        assert stored() == expected_aws
        assert {n: moto.get_secret_value(SecretId=n)["VersionId"] for n in expected_aws} == versions

        # `vaultbundle plan` of the same VaultBundle: the distinct exit code, nothing written
        manifest = tmp_path / "vb.json"
        manifest.write_text(json.dumps({**scenario.vb("web"), "status": {}}))
        command = [sys.executable, "-m", "vaultbundle.cli", "plan", "-f", str(manifest), "--egress-allow-local"]
        env = {**os.environ, "KUBECONFIG": testbed["KUBECONFIG"]}
        planned = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=120)
        assert planned.returncode == 33 and "BundleEmpty" in planned.stdout, planned.stdout + planned.stderr
        assert stored() == expected_aws and scenario.data("web-env") == {"API_KEY": "one", "DB": "two"}

        patch = {"spec": {"source": {"allowEmpty": True}}}
        scenario.custom.patch_namespaced_custom_object("vaultbundle.io", "v1alpha1", app, "vaultbundles", "web", patch)
        wait_for(lambda: scenario.reason("web") == "Synced", "Ready=Synced with allowEmpty", timeout=60)
        assert scenario.data("web-env") == {} and stored() == {}  # emptied on purpose (prune: the store too)
        assert scenario.vb("web")["status"]["bundle"]["timestamp"] == empty
    finally:
        stop_operator(operator)
