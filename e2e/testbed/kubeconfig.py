"""Kubeconfig files for the test bed's apiserver."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from .pki import CertPair


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, server: str, ca: Path, client: CertPair, name: str = "vaultbundle-testbed") -> None:
    """An admin kubeconfig with the CA and client credentials embedded (usable from any working dir)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate-data": _b64(client.cert), "client-key-data": _b64(client.key)},
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "admin"}}],
        "current-context": name,
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
