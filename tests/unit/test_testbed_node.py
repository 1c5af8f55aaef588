"""The test bed's node, the parts that need no root: its config files, its cgroup cleanup and step progress.

(The node itself runs in tests/e2e/test_node.py: a real kubelet, containerd and the operator image.)
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from e2e.testbed import artifacts, node_progress
from e2e.testbed.node_cleanup import remove_kubepods_cgroups
from e2e.testbed.node_config import NODE_NAME, PAUSE_IMAGE, NodeLayout, write_node_files
from e2e.testbed.node_network import network
from e2e.testbed.node_pki import create_node_pki
from e2e.testbed.pki import create_pki

PORTS = {
    "containerd": {"metrics": 1001},
    "kube-scheduler": {"https": 1002},
    "kubelet": {"healthz": 1003, "https": 1004},
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> NodeLayout:
    root = tmp_path_factory.mktemp("bed")
    create_pki(root / "pki")
    layout = NodeLayout(root / "data" / "node")
    net = network()
    pki = create_node_pki(root / "pki", layout.pki, NODE_NAME, net["gateway"])
    write_node_files(layout, pki, PORTS, "https://127.0.0.1:6443", net)
    return layout


def test_containerd_config_keeps_everything_in_the_node_directory(node: NodeLayout) -> None:
    config = tomllib.loads((node.configs / "containerd.toml").read_text())
    assert config["version"] == 2
    for path in (config["root"], config["state"], config["grpc"]["address"]):
        assert Path(path).is_relative_to(node.root), path
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == PAUSE_IMAGE
    assert cri["restrict_oom_score_adj"] is True  # root here has no CAP_SYS_RESOURCE
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False  # cgroupfs
    assert Path(cri["cni"]["conf_dir"]).is_relative_to(node.root)
    assert config["metrics"]["address"] == "127.0.0.1:1001"


def test_kubelet_config_authenticates_and_uses_cgroupfs(node: NodeLayout) -> None:
    config = yaml.safe_load((node.configs / "kubelet.yaml").read_text())
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert config["readOnlyPort"] == 0
    gateway = network()["gateway"]
    assert config["address"] == gateway and config["clusterDNS"] == [gateway]
    assert config["healthzBindAddress"] == "127.0.0.1" and config["healthzPort"] == 1003
    assert Path(config["podLogsDir"]).is_relative_to(node.root)
    kubeconfig = yaml.safe_load((node.configs / "kubelet.kubeconfig").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"


def test_node_certs_name_the_node_and_its_ip(node: NodeLayout) -> None:
    from cryptography import x509

    client = x509.load_pem_x509_certificate((node.pki / "kubelet-client.crt").read_bytes())
    assert client.subject.rfc4514_string() == f"O=system:nodes,CN=system:node:{NODE_NAME}"
    serving = x509.load_pem_x509_certificate((node.pki / "kubelet-serving.crt").read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert network()["gateway"] in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert (node.pki / "kubelet-client.key").stat().st_mode & 0o077 == 0


def test_kubepods_cgroups_are_removed_leaves_first_and_only_when_empty(tmp_path: Path) -> None:
    for hierarchy in ("cpu", "memory"):
        (tmp_path / hierarchy / "kubepods" / "besteffort" / "pod1").mkdir(parents=True)
    busy = tmp_path / "pids" / "kubepods" / "burstable" / "pod2"
    busy.mkdir(parents=True)
    (busy / "tasks").write_text("1234\n")  # a cgroup that still has a process: rmdir must fail
    (tmp_path / "memory" / "other").mkdir()
    left = remove_kubepods_cgroups(tmp_path)
    assert not (tmp_path / "cpu" / "kubepods").exists() and not (tmp_path / "memory" / "kubepods").exists()
    assert (tmp_path / "memory" / "other").is_dir()  # not the kubelet's: untouched
    assert str(busy) in left and busy.is_dir()


def test_a_long_step_reports_progress_and_a_failed_one_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "HEARTBEAT_SECONDS", 0.2)
    said: list[str] = []
    node_progress.run_step("waiting", ["sleep", "0.7"], tmp_path / "a.log", said.append)
    ticks = [s for s in said if s.startswith("  waiting: still running")]
    assert len(ticks) >= 2, said
    assert said[-1].startswith("  waiting: done in")
    with pytest.raises(node_progress.NodeError, match=r"(?s)failing failed \(exit 3\).*boom"):
        node_progress.run_step("failing", ["sh", "-c", "echo boom; exit 3"], tmp_path / "b.log", said.append)
