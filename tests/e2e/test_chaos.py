"""The operator killed (SIGKILL) at random moments while it fans a new bundle out to several stores, and restarted:
every store converges to the last bundle, nothing that should stay is pruned, and no push is lost."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import hvac
import pytest
from kubernetes import config as k8s_config
from tests.conftest import REPO
from tests.e2e.helpers import http_get, wait_for
from tests.e2e.test_operator import Scenario, kubectl, start_operator, stop_operator

pytestmark = pytest.mark.testbed


def test_operator_killed_mid_fan_out_converges(testbed: dict[str, str], tmp_path: Path) -> None:
    kubectl(testbed, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    scenario = Scenario(testbed, k8s_config.new_client_from_config(config_file=testbed["KUBECONFIG"]))
    scenario.secret("gh", {"token": testbed["GITHUB_TOKEN"]})
    scenario.secret("vault", {"token": testbed["VAULT_TOKEN"]})
    scenario.push({".env.prod": b"A=0\nB=fixed\nC=leaves-later\n"})
    scenario.custom.create_namespaced_custom_object(
        "vaultbundle.io",
        "v1alpha1",
        scenario.ns,
        "vaultbundles",
        {
            "apiVersion": "vaultbundle.io/v1alpha1",
            "kind": "VaultBundle",
            "metadata": {"name": "chaos"},
            "spec": {
                "source": {"configSecretRef": {"name": "web-vsync"}, "passphraseSecretRef": {"name": "web-passphrase"}},
                "refreshInterval": "1s",
                "targets": [
                    {"name": "k8s", "kubernetesSecret": {"name": "chaos-env"}},
                    {
                        "name": "github",
                        "githubActions": {
                            "repository": f"acme/{scenario.ns}",
                            "apiURL": testbed["GITHUB_API_URL"],
                            "auth": {"tokenSecretRef": {"name": "gh"}},
                        },
                    },
                    {
                        "name": "vault",
                        "hashicorpVault": {
                            "address": testbed["VAULT_ADDR"],
                            "path": f"chaos/{scenario.ns}",
                            "auth": {"tokenSecretRef": {"name": "vault"}},
                        },
                    },
                ],
            },
        },
    )
    log = tmp_path / "operator.log"
    process, _ = start_operator(testbed, log, "--namespace", scenario.ns)
    vault = hvac.Client(url=testbed["VAULT_ADDR"], token=testbed["VAULT_TOKEN"])

    def github() -> dict[str, str]:
        secrets = json.loads(http_get(f"{testbed['GITHUB_API_URL']}/_fake/secrets"))
        return {s["name"]: s["value"] for s in secrets if s.get("repo") == scenario.ns}

    def vault_data() -> dict[str, str]:
        try:
            return dict(
                vault.secrets.kv.v2.read_secret_version(
                    path=f"chaos/{scenario.ns}", mount_point="secret", raise_on_deleted_version=True
                )["data"]["data"]
            )
        except hvac.exceptions.InvalidPath:
            return {}

    try:
        wait_for(lambda: scenario.reason("chaos") == "Synced", "the first fan-out", 60)
        rng = random.Random(20261123)  # reproducible kill moments
        for round_ in range(1, 4):
            scenario.push({".env.prod": f"A={round_}\nB=fixed\nC=leaves-later\n".encode()})
            time.sleep(rng.uniform(0.05, 1.2))
            process.kill()
            process.wait(10)
            process, _ = start_operator(testbed, log, "--namespace", scenario.ns)
        scenario.push({".env.prod": b"A=final\nB=fixed\n"})  # C leaves the bundle
        final = {"A": "final", "B": "fixed"}
        wait_for(lambda: scenario.data("chaos-env") == final, "the Secret (C pruned)", 90)
        wait_for(lambda: vault_data() == final, "Vault (C pruned: the whole secret is ours)", 90)
        wait_for(lambda: github() == {**final, "C": "leaves-later"}, "GitHub (prune off: C kept)", 90)
        wait_for(lambda: scenario.reason("chaos") == "Synced", "Synced", 60)
    finally:
        stop_operator(process, log)
        scenario.core.delete_namespace(scenario.ns)
