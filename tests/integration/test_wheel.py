"""The wheel the Dockerfile builds: build it, install it into a fresh venv the way the image does, run it.

Same steps as the Dockerfile's builder stage (no Docker engine here): `pip wheel --no-deps` from a context that
holds only what `.dockerignore` lets through, then a venv created `--without-pip` into which pip (from outside)
installs requirements/operator.lock with `--require-hashes` and then the wheel with `--no-deps`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import vaultbundle
from tests.conftest import REPO
from vaultbundle.targets import KNOWN_KINDS

SDK_IMPORT = "import github, nacl, google.cloud.secretmanager, azure.keyvault.secrets, azure.identity, hvac"
STORE_SDKS = {"hvac", "pygithub", "pynacl", "google-cloud-secret-manager", "azure-keyvault-secrets", "azure-identity"}


def run(*command: str | Path, timeout: float = 600) -> str:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # build from a copy of the Docker build context, so no build/ or egg-info lands in the repo
    context = tmp_path_factory.mktemp("context")
    shutil.copy2(REPO / "pyproject.toml", context)
    shutil.copy2(REPO / "README.md", context)
    shutil.copytree(
        REPO / "operator", context / "operator", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc")
    )
    out = tmp_path_factory.mktemp("wheels")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", out, context)
    (built,) = out.glob("vaultbundle-*.whl")
    return built


def test_wheel_holds_only_the_package(wheel: Path) -> None:
    assert wheel.name == f"vaultbundle-{vaultbundle.__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"vaultbundle", f"vaultbundle-{vaultbundle.__version__}.dist-info"}, tops
    assert "vaultbundle/py.typed" in names and "vaultbundle/cli.py" in names


def test_fresh_venv_runs_the_cli(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python)
    lock = REPO / "requirements" / "operator.lock"
    run(*pip, "install", "--quiet", "--require-hashes", "--no-deps", "-r", lock)
    run(*pip, "install", "--quiet", "--no-deps", wheel)
    run(*pip, "check")  # the locked closure satisfies every requirement of the wheel and of each other

    version = run(venv / "bin" / "vaultbundle", "--version")
    assert version.strip() == f"vaultbundle, version {vaultbundle.__version__}"
    usage = run(venv / "bin" / "vaultbundle", "run", "--help")
    for flag in ("--all-namespaces", "--namespace", "--metrics-port", "--log-format", "--digest-key-file"):
        assert flag in usage, flag

    # the locked runtime closure with every store's SDK, and no pip/setuptools in the venv
    installed = run(
        python, "-c", "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"
    )
    names = {line.strip().lower() for line in installed.splitlines() if line.strip()}
    assert {"vaultbundle", "kopf", "kubernetes", "boto3", "cryptography"} <= names
    assert not names & {"pip", "setuptools", "wheel"}, names
    assert names >= STORE_SDKS, STORE_SDKS - names
    # the operator's modules import in the installed copy (not the repo's)
    where = run(python, "-c", "import vaultbundle.controller, vaultbundle; print(vaultbundle.__file__)")
    assert where.strip().startswith(str(venv))
    # every store's SDK imports, and so every target kind loads (the image can serve any VaultBundle)
    kinds = "from vaultbundle import targets; print(sorted(k for k in targets.KNOWN_KINDS if targets.load(k)))"
    assert run(python, "-c", SDK_IMPORT + "; " + kinds).strip() == str(sorted(KNOWN_KINDS))
