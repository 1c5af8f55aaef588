"""What the test bed runs: one :class:`ComponentSpec` per server process (argv, ports, health probe, order)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import GITHUB_TOKEN, Binaries, Layout
from .health import Probe, http_probe, tcp_probe
from .pki import Pki

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"

# kube-controller-manager: everything on by default except controllers that only act on cloud resources, node
# IPAM or volumes attached to nodes. The node lifecycle controller stays on: it does nothing without nodes, and
# with the optional node (NODE=1) it lifts the not-ready taint once the kubelet reports Ready.
_KCM_CONTROLLERS = ",".join(
    [
        "*",
        "-node-ipam-controller",
        "-cloud-node-lifecycle-controller",
        "-node-route-controller",
        "-service-lb-controller",
        "-persistentvolume-attach-detach-controller",
        "-taint-eviction-controller",
        "-device-taint-eviction-controller",
        "-ttl-controller",
    ]
)

# The port names each component needs; they are allocated together before anything starts.
PORT_NAMES: dict[str, tuple[str, ...]] = {
    "etcd": ("client", "peer"),
    "kube-apiserver": ("https",),
    "kube-controller-manager": ("https",),
    "moto": ("http",),
    "openbao": ("http", "cluster"),  # cluster = http + 1, fixed by the dev server
    "azure-keyvault": ("https",),
    "gcp-secret-manager": ("grpc", "grpc-tls", "https"),  # plaintext, TLS (federated tokens), STS + IAM
    "github-actions": ("http",),
}


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    argv: list[str]
    ports: dict[str, int]
    probe: Probe
    after: str | None = None  # a component that must be healthy before this one starts
    startup_timeout: float = 90.0
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    @property
    def main_port(self) -> int:
        return next(iter(self.ports.values()))


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _moto_argv(port: int) -> list[str]:
    return _python_module("moto.server", "-H", "127.0.0.1", "-p", str(port))


def build_specs(
    layout: Layout, binaries: Binaries, pki: Pki, ports: dict[str, dict[str, int]], vault_token: str
) -> list[ComponentSpec]:
    p = ports
    etcd_url = f"http://127.0.0.1:{p['etcd']['client']}"
    peer_url = f"http://127.0.0.1:{p['etcd']['peer']}"
    apiserver_port = p["kube-apiserver"]["https"]
    repo_root = Path(__file__).resolve().parents[2]
    base_env = dict(os.environ)
    # Python servers run from the repo root so that ``-m e2e...`` resolves; unbuffered so logs are live.
    py_env = dict(base_env, PYTHONUNBUFFERED="1")
    ca = str(pki.ca.cert)
    # The cloud fakes verify ServiceAccount tokens with TokenReviews (workload identity federation).
    kube_access = [
        f"--kube-apiserver=https://127.0.0.1:{apiserver_port}",
        f"--kube-ca={ca}",
        f"--kube-cert={pki.admin.cert}",
        f"--kube-key={pki.admin.key}",
    ]

    return [
        ComponentSpec(
            name="etcd",
            argv=[
                str(binaries.etcd),
                "--name=testbed",
                f"--data-dir={layout.data / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=testbed={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            ports=p["etcd"],
            probe=http_probe(f"{etcd_url}/health", body='"health":"true"'),
            env=base_env,
        ),
        ComponentSpec(
            name="kube-apiserver",
            after="etcd",
            argv=[
                str(binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={apiserver_port}",
                f"--cert-dir={layout.data / 'apiserver-certs'}",
                f"--tls-cert-file={pki.apiserver.cert}",
                f"--tls-private-key-file={pki.apiserver.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_public_key}",
                f"--service-account-signing-key-file={pki.sa_private_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                # The optional node's kubelet (kubectl logs/exec): mutual TLS against our CA, at its InternalIP.
                f"--kubelet-client-certificate={pki.kubelet_client.cert}",
                f"--kubelet-client-key={pki.kubelet_client.key}",
                f"--kubelet-certificate-authority={pki.ca.cert}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                f"--audit-policy-file={layout.audit_policy}",
                f"--audit-log-path={layout.audit_log}",
                "--audit-log-maxsize=200",
                "--v=1",
            ],
            ports=p["kube-apiserver"],
            probe=http_probe(
                f"https://127.0.0.1:{apiserver_port}/readyz",
                ca=ca,
                cert=str(pki.admin.cert),
                key=str(pki.admin.key),
                body="ok",
            ),
            startup_timeout=120.0,
            env=base_env,
        ),
        ComponentSpec(
            name="kube-controller-manager",
            after="kube-apiserver",
            argv=[
                str(binaries.kube_controller_manager),
                f"--kubeconfig={layout.kubeconfig}",
                f"--authentication-kubeconfig={layout.kubeconfig}",
                f"--authorization-kubeconfig={layout.kubeconfig}",
                # Our CA directly, instead of looking up a front-proxy CA that this cluster does not have.
                "--authentication-skip-lookup=true",
                f"--client-ca-file={pki.ca.cert}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p['kube-controller-manager']['https']}",
                f"--tls-cert-file={pki.controller_manager.cert}",
                f"--tls-private-key-file={pki.controller_manager.key}",
                f"--controllers={_KCM_CONTROLLERS}",
                f"--service-account-private-key-file={pki.sa_private_key}",
                f"--root-ca-file={pki.ca.cert}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
            ports=p["kube-controller-manager"],
            probe=http_probe(f"https://127.0.0.1:{p['kube-controller-manager']['https']}/healthz", ca=ca, body="ok"),
            env=base_env,
        ),
        ComponentSpec(
            name="moto",
            argv=_moto_argv(p["moto"]["http"]),
            ports=p["moto"],
            probe=http_probe(f"http://127.0.0.1:{p['moto']['http']}/moto-api/data.json"),
            env=py_env,
        ),
        ComponentSpec(
            name="openbao",
            argv=[
                str(binaries.bao),
                "server",
                "-dev",
                "-dev-no-store-token",
                f"-dev-listen-address=127.0.0.1:{p['openbao']['http']}",
            ],
            ports=p["openbao"],
            probe=http_probe(f"http://127.0.0.1:{p['openbao']['http']}/v1/sys/health"),
            # The root token goes through the environment, not argv (argv is world-readable in /proc).
            env=dict(
                base_env,
                BAO_DEV_ROOT_TOKEN_ID=vault_token,
                VAULT_DEV_ROOT_TOKEN_ID=vault_token,
                HOME=str(layout.data / "openbao-home"),
            ),
        ),
        ComponentSpec(
            name="azure-keyvault",
            argv=_python_module(
                "e2e.testbed.azure_keyvault_fake",
                "--host",
                "127.0.0.1",
                "--port",
                str(p["azure-keyvault"]["https"]),
                "--cert",
                str(pki.keyvault.cert),
                "--key",
                str(pki.keyvault.key),
                *kube_access,
            ),
            ports=p["azure-keyvault"],
            probe=http_probe(f"https://127.0.0.1:{p['azure-keyvault']['https']}/ping", ca=ca),
            env=py_env,
            cwd=repo_root,
        ),
        ComponentSpec(
            name="gcp-secret-manager",
            argv=_python_module(
                "e2e.fakes.gcp_secret_manager",
                "--host",
                "127.0.0.1",
                "--port",
                str(p["gcp-secret-manager"]["grpc"]),
                f"--tls-port={p['gcp-secret-manager']['grpc-tls']}",
                f"--https-port={p['gcp-secret-manager']['https']}",
                f"--cert={pki.keyvault.cert}",  # the bed's loopback server certificate
                f"--key={pki.keyvault.key}",
                *kube_access,
            ),
            ports=p["gcp-secret-manager"],
            probe=tcp_probe(p["gcp-secret-manager"]["grpc"]),
            env=py_env,
            cwd=repo_root,
        ),
        ComponentSpec(
            name="github-actions",
            argv=_python_module(
                "e2e.fakes.github_actions",
                "--host",
                "127.0.0.1",
                "--port",
                str(p["github-actions"]["http"]),
                "--token",
                GITHUB_TOKEN,
            ),
            ports=p["github-actions"],
            probe=http_probe(f"http://127.0.0.1:{p['github-actions']['http']}/_fake/health"),
            env=py_env,
            cwd=repo_root,
        ),
    ]
