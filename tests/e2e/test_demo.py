"""`make demo` (`python -m e2e.demo`) on the test bed: it exits 0, shows every step and its checks, leaks nothing.

The demo verifies its own results (Secret content, status, propagation of an update) and exits non-zero when a
check fails, so this test asserts the exit code and that the checks ran, not the details again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.demo import NS
from tests.conftest import REPO

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

STEPS = (
    "[1/8] Find the test bed",
    "[2/8] A sample vault folder",
    "[3/8] Seal the folder and upload it to S3",
    "[4/8] Install the CRD",
    "[5/8] Start the operator",
    "[6/8] What the operator did",
    "[7/8] Rotate API_TOKEN, remove FEATURE_FLAG",
    "[8/8] Stop the operator",
)
CHECKS = (
    "ok: the bucket's pointer names bundle ",
    "ok: the Secret holds exactly the pushed keys and file",
    "ok: the Secret holds exactly the new bundle",
    "ok: FEATURE_FLAG is gone",
    "ok: API_TOKEN changed",
    "ok: the operator exited cleanly on SIGTERM",
    "ok: the passphrase is not in the operator log",
    "demo OK: every step verified",
)


@pytest.fixture
def demo_namespace_removed(testbed: dict[str, str]) -> Iterator[None]:
    """`make demo` leaves its namespace for a look around; in the suite it goes, so its VaultBundle (refreshed
    by the next module's cluster-wide operator) adds nothing to another test's cluster-wide counters."""
    yield
    subprocess.run(
        [testbed["KUBECTL"], "--kubeconfig", testbed["KUBECONFIG"], "delete", "namespace", NS, "--wait=false"],
        check=False,
        capture_output=True,
    )


@pytest.mark.usefixtures("demo_namespace_removed")
def test_demo_runs_end_to_end(testbed: dict[str, str]) -> None:
    env_file = os.environ.get("VAULTBUNDLE_TESTBED_ENV") or str(Path(testbed["TESTBED_DIR"]) / "env")
    result = subprocess.run(
        [sys.executable, "-m", "e2e.demo"],
        check=False,
        cwd=REPO,
        env={**os.environ, "VAULTBUNDLE_TESTBED_ENV": env_file, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    lines = result.stdout.splitlines()
    for expected in STEPS:
        assert any(line.startswith(expected) for line in lines), f"missing step {expected!r} in:\n{output}"
    for expected in CHECKS:
        assert any(line.strip().startswith(expected) for line in lines), f"missing check {expected!r} in:\n{output}"
    assert "DEMO FAILED" not in output
    # the S3 credentials (inside the config blob) are never shown; the demo values are
    assert "vsync-cfg-v1:" not in output and testbed["AWS_SECRET_ACCESS_KEY"] not in output
    assert "demo-token-2222" in result.stdout
