"""Certificates of the optional node, issued by the test bed's own CA (``pki.py``) once the bed has one.

* kubelet client: ``system:node:<name>`` in group ``system:nodes`` (bound to the built-in ``system:node``
  ClusterRole by ``node.py``), so the kubelet has a node's permissions and no more;
* kubelet serving cert for the node IP (the kube-apiserver verifies it for ``kubectl logs``);
* kube-scheduler: ``system:kube-scheduler`` (the built-in RBAC user), also its serving cert for /healthz.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from .pki import CertPair, _name, _write_cert, _write_key, load_issuer


@dataclass(frozen=True)
class NodePki:
    ca: Path
    kubelet_client: CertPair
    kubelet_serving: CertPair
    scheduler: CertPair


def create_node_pki(bed_pki: Path, directory: Path, node_name: str, node_ip: str) -> NodePki:
    """Issue the node's certs from the CA in ``bed_pki`` into ``directory``."""
    issuer = load_issuer(bed_pki)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)

    def issue(name: str, subject: x509.Name, *, server: bool, client: bool) -> CertPair:
        ips = ("127.0.0.1", node_ip) if server else ()
        dns = (node_name, "localhost") if server else ()
        key, cert = issuer.issue(subject, server=server, client=client, dns=dns, ips=ips)
        pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
        _write_cert(cert, pair.cert)
        _write_key(key, pair.key)
        return pair

    return NodePki(
        ca=bed_pki / "ca.crt",
        kubelet_client=issue(
            "kubelet-client", _name(f"system:node:{node_name}", "system:nodes"), server=False, client=True
        ),
        kubelet_serving=issue("kubelet-serving", _name(node_name), server=True, client=False),
        scheduler=issue("kube-scheduler", _name("system:kube-scheduler"), server=True, client=True),
    )
