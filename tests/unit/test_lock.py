"""requirements/operator.lock: the hashed runtime closure the image installs must agree with pyproject.toml and
with the venv the tests run in (so CI tests exactly what ships)."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

LOCK = REPO / "requirements" / "operator.lock"
STORE_EXTRAS = ("gcp", "azure", "vault", "github")


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) from the lock's `name==version \\ --hash=sha256:...` entries."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        head = block.split("\\", 1)[0].strip()
        if not head or head.startswith("#"):
            continue
        name, sep, version = head.partition("==")
        assert sep, f"{head!r}: every lock entry must be pinned with =="
        entries[canonicalize_name(name)] = (version.strip(), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return entries


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in STORE_EXTRAS:
        lines += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for line in lines:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{line}: runtime dependencies are pinned exactly"
        pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def test_every_entry_is_pinned_and_hashed() -> None:
    entries = locked()
    assert len(entries) > 30
    for name, (version, hashes) in entries.items():
        assert version and hashes, f"{name}: no version or no sha256 hash (pip --require-hashes would refuse it)"
    assert "vaultbundle" not in entries, "the project itself is installed from its wheel, not from the lock"


def test_lock_matches_pyproject() -> None:
    entries = locked()
    for name, version in pyproject_pins().items():
        assert name in entries, f"{name} is in pyproject.toml but not in the lock: run `make lock`"
        assert entries[name][0] == version, (
            f"{name}: pyproject.toml pins {version}, the lock {entries[name][0]}: run `make lock`"
        )


def test_test_venv_runs_exactly_the_locked_versions() -> None:
    """`make venv` installs the lock first; the test tools installed afterwards must not have moved any of it."""
    moved = {}
    for name, (version, _) in locked().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            moved[name] = (version, installed)
    assert not moved, f"locked vs installed (run `make venv`, or `make lock` after changing pins): {moved}"
