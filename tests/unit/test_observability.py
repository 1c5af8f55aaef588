"""/metrics can require a bearer token and serve TLS; the probes stay open; bad files fail before start."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner
from e2e.testbed.pki import create_pki

from vaultbundle import metrics
from vaultbundle.cli import cli
from vaultbundle.errors import Reason
from vaultbundle.observability import MetricsConfigError, MetricsSecurity, serve

TOKEN = "metrics-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A certificate for localhost signed by a fresh CA (the test bed's own PKI code): (cert, key, ca)."""
    pki = create_pki(directory)
    return pki.keyvault.cert, pki.keyvault.key, pki.ca.cert


async def test_metrics_need_the_token_over_tls_and_probes_stay_open(tmp_path: Path) -> None:
    cert_file, key_file, ca_file = server_cert(tmp_path / "pki")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    security = MetricsSecurity(str(cert_file), str(key_file), str(token_file))
    runner = await serve("127.0.0.1", port, lambda: True, security)
    trust = ssl.create_default_context(cafile=str(ca_file))
    base = f"https://localhost:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz", ssl=trust) as response:
                assert response.status == 200 and await response.text() == "ok\n"
            async with session.get(f"{base}/readyz", ssl=trust) as response:
                assert response.status == 200
            async with session.get(f"{base}/metrics", ssl=trust) as response:
                assert response.status == 401 and "vaultbundle_" not in await response.text()
                assert response.headers["WWW-Authenticate"] == "Bearer"
            wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
            async with session.get(f"{base}/metrics", ssl=trust, headers=wrong) as response:
                assert response.status == 401
            right = {"Authorization": f"Bearer {TOKEN}"}
            async with session.get(f"{base}/metrics", ssl=trust, headers=right) as response:
                assert response.status == 200 and "vaultbundle_syncs_total" in await response.text()
            with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served on a TLS port
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    await response.text()
    finally:
        await runner.cleanup()


async def test_without_options_metrics_are_open_plain_http() -> None:
    port = free_port()
    runner = await serve("127.0.0.1", port, lambda: False)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 503
    finally:
        await runner.cleanup()


async def test_name_filter_renders_only_the_named_samples_and_still_needs_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    metrics.READY.values[("team-a", "app")] = 1.0
    port = free_port()
    runner = await serve("127.0.0.1", port, lambda: True, MetricsSecurity(token_file=str(token_file)))
    url = f"http://127.0.0.1:{port}/metrics"
    right = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers=right) as response:
                everything = await response.text()
            assert 'vaultbundle_ready{name="app",namespace="team-a"} 1.0' in everything
            query = "?name[]=vaultbundle_syncs_total&name[]=vaultbundle_leader"
            async with session.get(url + query, headers=right) as response:
                assert response.status == 200
                some = await response.text()
            samples = {line.split("{")[0].split(" ")[0] for line in some.splitlines() if not line.startswith("#")}
            assert samples <= {"vaultbundle_syncs_total", "vaultbundle_leader"} and "vaultbundle_leader" in samples
            assert "vaultbundle_ready" not in some and "process_" not in some
            async with session.get(url + "?name[]=no_such_metric", headers=right) as response:
                assert response.status == 200 and await response.text() == ""
            async with session.get(url + query) as response:  # a filter is no way around the token
                assert response.status == 401 and "vaultbundle_" not in await response.text()
    finally:
        metrics.READY.values.pop(("team-a", "app"), None)
        await runner.cleanup()


def test_unusable_files_are_typed_errors_naming_the_flag(tmp_path: Path) -> None:
    cert_file, key_file, _ = server_cert(tmp_path / "pki")
    short = tmp_path / "short"
    short.write_text("abc")
    cases = {
        MetricsSecurity(tls_cert_file=str(cert_file)): "needs both --metrics-tls-cert-file and --metrics-tls-key-file",
        MetricsSecurity(str(cert_file), str(cert_file)): "cannot load the metrics TLS certificate",
        MetricsSecurity(token_file=str(tmp_path / "absent")): "cannot read --metrics-token-file",
        MetricsSecurity(token_file=str(short)): "must hold a token of 16\\+ characters",
    }
    for security, message in cases.items():
        with pytest.raises(MetricsConfigError, match=message) as raised:
            security.ssl_context()
            security.token()
        assert raised.value.reason is Reason.INVALID_OPERATOR_FLAG
    assert MetricsSecurity(str(cert_file), str(key_file)).ssl_context() is not None


def test_run_refuses_a_bad_metrics_flag_before_starting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["run", "--all-namespaces", "--metrics-token-file", str(tmp_path / "absent")], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "cannot read --metrics-token-file" in result.output
