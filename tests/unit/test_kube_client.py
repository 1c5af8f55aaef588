"""The operator's Kubernetes client keeps as many connections alive as it has I/O threads."""

from __future__ import annotations

from pathlib import Path

from vaultbundle.kube import load_api_client

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_connection_pool_matches_the_io_threads(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    client = load_api_client(str(kubeconfig), connections=32)
    assert client.configuration.host == "https://127.0.0.1:1"
    # urllib3 keeps at most `maxsize` idle connections per host; more concurrent calls would each open
    # (and TLS-handshake) a connection that is then thrown away
    assert client.rest_client.pool_manager.connection_pool_kw["maxsize"] == 32
    assert client.configuration.api_key == {"BearerToken": "Bearer not-a-real-token"}
