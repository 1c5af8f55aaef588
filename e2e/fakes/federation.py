"""What the cloud fakes share for workload identity federation: verifying a Kubernetes ServiceAccount token
against the real kube-apiserver, and a ledger of what reached a token endpoint.

A cloud that federates with a cluster trusts the cluster's ServiceAccount issuer: it checks the JWT's signature,
issuer, expiry and audience, then maps its subject (``system:serviceaccount:<namespace>:<name>``) to an
identity. The fakes do the same through a TokenReview (the apiserver checks signature, expiry, audience and
that the ServiceAccount still exists), so a token only passes if the apiserver itself minted it for that
audience. The ledger records who asked for a token and the outcome (never the presented token), so tests can
prove whose credentials reached the endpoint.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

SUBJECT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class KubeAccess:
    """How a fake reaches the test bed's kube-apiserver (an identity allowed to create TokenReviews)."""

    url: str
    ca_file: str
    cert_file: str
    key_file: str


class TokenReviewer:
    """`subject(token, audience)`: the ServiceAccount subject the apiserver vouches for, or None."""

    def __init__(self, kube: KubeAccess | None) -> None:
        self.kube = kube
        self._context: ssl.SSLContext | None = None
        if kube is not None:
            self._context = ssl.create_default_context(cafile=kube.ca_file)
            self._context.load_cert_chain(kube.cert_file, kube.key_file)

    def subject(self, token: str, audience: str) -> str | None:
        if self.kube is None or not token:
            return None
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [audience]},
        }
        request = urllib.request.Request(
            f"{self.kube.url}/apis/authentication.k8s.io/v1/tokenreviews",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=10) as response:
                status = json.loads(response.read()).get("status") or {}
        except (urllib.error.URLError, OSError, ValueError):
            return None
        username = str((status.get("user") or {}).get("username") or "")
        if not status.get("authenticated") or audience not in (status.get("audiences") or []):
            return None
        return username if username.startswith(SUBJECT_PREFIX) else None


class Ledger:
    """Every request to a token endpoint: who (the verified subject, or None), for what, and the outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    def record(self, **entry: Any) -> None:
        with self._lock:
            self._entries.append({"time": time.time(), **entry})

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries]


def kube_access_arguments(parser: Any) -> None:
    """The argparse options a fake needs to verify ServiceAccount tokens."""
    parser.add_argument("--kube-apiserver", default="", help="kube-apiserver URL, for TokenReviews")
    parser.add_argument("--kube-ca", default="", help="CA file of the kube-apiserver")
    parser.add_argument("--kube-cert", default="", help="client certificate allowed to create TokenReviews")
    parser.add_argument("--kube-key", default="", help="its private key")


def kube_access(args: Any) -> KubeAccess | None:
    if not args.kube_apiserver:
        return None
    return KubeAccess(args.kube_apiserver, args.kube_ca, args.kube_cert, args.kube_key)
