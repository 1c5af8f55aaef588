"""Configuration files and process specs of the optional node: containerd (CRI), kube-scheduler and kubelet.

Everything lives under ``.testbed/data/node/`` (one directory per bed, recreated by each ``up``); nothing is
written to /etc or /var/lib. containerd and the kubelet run as root (they must: namespaces, cgroups, mounts),
with the cgroupfs driver (this VM has cgroup v1 and no systemd). The pods' network is a CNI bridge
(``node_network.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .components import ComponentSpec
from .config import Binaries, Layout
from .health import http_probe, tcp_probe
from .kubeconfig import write_kubeconfig
from .node_network import KUBERNETES_SERVICE
from .node_pki import NodePki

NODE_NAME = "testbed-node"
PAUSE_IMAGE = "localhost/vaultbundle-pause:3.10"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
CLUSTER_DOMAIN = "cluster.local"
NODE_PORT_NAMES = {
    "containerd": ("metrics",),
    "kube-scheduler": ("https",),
    "kubelet": ("healthz", "https"),
}


@dataclass(frozen=True)
class NodeLayout:
    """The node's files inside one bed: derivable from the bed's layout alone (``down`` needs nothing else)."""

    root: Path

    @classmethod
    def of(cls, layout: Layout) -> NodeLayout:
        return cls(layout.data / "node")

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd-state"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_state / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def configs(self) -> Path:
        return self.root / "config"


def _containerd_toml(node: NodeLayout, metrics_port: int) -> str:
    # containerd's v2 config format (1.6). Only the CRI plugin matters; the opt plugin stays inside our tree.
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{node.containerd_root}"
state = "{node.containerd_state}"

[grpc]
  address = "{node.containerd_socket}"

[ttrpc]
  address = "{node.containerd_socket}.ttrpc"

[metrics]
  address = "127.0.0.1:{metrics_port}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{node.root / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This VM gives root no CAP_SYS_RESOURCE: an oom_score_adj below our own (the sandbox's -998) is refused.
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{node.cni_conf_dir}"
    max_conf_num = 1
"""


def _kubelet_config(node: NodeLayout, pki: NodePki, ports: dict[str, int], node_ip: str) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "address": node_ip,  # the kubelet refuses a loopback node IP: it is the pod bridge's address
        "port": ports["https"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["healthz"],
        "tlsCertFile": str(pki.kubelet_serving.cert),
        "tlsPrivateKeyFile": str(pki.kubelet_serving.key),
        # Only the kube-apiserver's client cert (signed by our CA) gets in; what it may do is asked of the
        # apiserver (SubjectAccessReview).
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca)},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(node.pod_logs),
        "volumePluginDir": str(node.root / "volume-plugins"),
        "resolvConf": "/etc/resolv.conf",
        "clusterDNS": [node_ip],
        "clusterDomain": CLUSTER_DOMAIN,
        "failSwapOn": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "maxPods": 16,
        # A shared dev VM: never evict or garbage-collect images because the disk is fuller than a real node's.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusUpdateFrequency": "5s",
        "shutdownGracePeriod": "0s",
    }


def _cni_conflist(node: NodeLayout, bridge: str, subnet: str, gateway: str) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "vaultbundle-testbed",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node.cni_data_dir),
                    "ranges": [[{"subnet": subnet, "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "loopback"},
        ],
    }


def write_node_files(
    node: NodeLayout, pki: NodePki, ports: dict[str, dict[str, int]], apiserver_url: str, network: dict[str, str]
) -> None:
    for directory in (node.configs, node.cni_conf_dir, node.cni_data_dir, node.kubelet_root, node.pod_logs):
        directory.mkdir(parents=True, exist_ok=True)
    (node.configs / "containerd.toml").write_text(_containerd_toml(node, ports["containerd"]["metrics"]))
    kubelet = _kubelet_config(node, pki, ports["kubelet"], network["gateway"])
    (node.configs / "kubelet.yaml").write_text(yaml.safe_dump(kubelet, sort_keys=False))
    conflist = _cni_conflist(node, network["bridge"], network["subnet"], network["gateway"])
    (node.cni_conf_dir / "10-vaultbundle.conflist").write_text(json.dumps(conflist, indent=2))
    for name, pair in (("kubelet", pki.kubelet_client), ("kube-scheduler", pki.scheduler)):
        write_kubeconfig(node.configs / f"{name}.kubeconfig", server=apiserver_url, ca=pki.ca, client=pair)


def node_specs(
    node: NodeLayout,
    binaries: Binaries,
    pki: NodePki,
    ports: dict[str, dict[str, int]],
    node_ip: str,
    env: dict[str, str],
) -> list[ComponentSpec]:
    """containerd, kube-scheduler and kubelet; node.py starts containerd first (the kubelet needs its socket)."""
    kubelet_bin = binaries.k8s_bin / "kubelet"
    scheduler_bin = binaries.k8s_bin / "kube-scheduler"
    scheduler_port = ports["kube-scheduler"]["https"]
    scheduler_kubeconfig = node.configs / "kube-scheduler.kubeconfig"
    service_ip = KUBERNETES_SERVICE[0]
    return [
        # The pods' cluster DNS (what CoreDNS is in a real cluster), only for the names in-cluster clients use:
        # kopf dials https://kubernetes.default.svc. Nothing is forwarded upstream.
        ComponentSpec(
            name="cluster-dns",
            argv=[
                "dnsmasq",
                "--keep-in-foreground",
                "--log-facility=-",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                "--bind-interfaces",
                f"--listen-address={node_ip}",
                "--except-interface=lo",
                f"--local=/{CLUSTER_DOMAIN}/",  # other cluster names: NXDOMAIN, so the search list moves on
                f"--address=/kubernetes.default.svc.{CLUSTER_DOMAIN}/{service_ip}",
                f"--address=/kubernetes.default.svc/{service_ip}",
            ],
            ports={"dns": 53},
            probe=tcp_probe(53, host=node_ip),
            env=env,
        ),
        ComponentSpec(
            name="containerd",
            argv=["containerd", "--config", str(node.configs / "containerd.toml"), "--log-level", "warn"],
            ports=ports["containerd"],
            probe=http_probe(f"http://127.0.0.1:{ports['containerd']['metrics']}/v1/metrics"),
            env=env,
        ),
        ComponentSpec(
            name="kube-scheduler",
            argv=[
                str(scheduler_bin),
                f"--kubeconfig={scheduler_kubeconfig}",
                f"--authentication-kubeconfig={scheduler_kubeconfig}",
                f"--authorization-kubeconfig={scheduler_kubeconfig}",
                "--authentication-skip-lookup=true",
                f"--client-ca-file={pki.ca}",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
                f"--tls-cert-file={pki.scheduler.cert}",
                f"--tls-private-key-file={pki.scheduler.key}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
            ports=ports["kube-scheduler"],
            probe=http_probe(f"https://127.0.0.1:{scheduler_port}/healthz", ca=str(pki.ca), body="ok"),
            env=env,
        ),
        ComponentSpec(
            name="kubelet",  # started once containerd is healthy and has the images (node.py)
            argv=[
                str(kubelet_bin),
                f"--config={node.configs / 'kubelet.yaml'}",
                f"--kubeconfig={node.configs / 'kubelet.kubeconfig'}",
                f"--root-dir={node.kubelet_root}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={node_ip}",
                "--v=1",
            ],
            ports=ports["kubelet"],
            probe=http_probe(f"http://127.0.0.1:{ports['kubelet']['healthz']}/healthz", body="ok"),
            startup_timeout=120.0,
            env=env,
        ),
    ]
