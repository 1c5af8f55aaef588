"""The repository stands on its own: a clone with nothing beside it collects every test and passes the vectors.

A user's clone has no reference folder next to it, so the suite is run from a copy of the repository in a fresh
temporary directory (no sibling folders at all), with the copy's own package first on the import path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIBLING = ".." + "/shared"  # spelled in two parts so this file does not match its own scan
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".venv-tools", ".testbed*", "__pycache__", ".*_cache", ".hypothesis", "*.egg-info"
)
SKIPPED_PREFIXES = (".venv", ".testbed", ".git")
SKIPPED_SUFFIXES = ("_cache", ".egg-info")
TEXT_SUFFIXES = {".py", ".md", ".sh", ".yaml", ".yml", ".toml", ".txt", ".tpl", ".json", ".cfg", ""}


def _repo_text_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*"):
        parts = path.relative_to(REPO).parts
        if any(part.startswith(SKIPPED_PREFIXES) or part.endswith(SKIPPED_SUFFIXES) for part in parts):
            continue
        if path.is_file() and path.suffix in TEXT_SUFFIXES and path.stat().st_size < 2_000_000:
            files.append(path)
    return files


def test_nothing_in_the_repository_points_outside_it() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in _repo_text_files()
        if SIBLING in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert offenders == []


@pytest.fixture(scope="module")
def lone_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("lone") / "vaultbundle"
    shutil.copytree(REPO, copy, ignore=NOT_COPIED, symlinks=True)
    assert sorted(p.name for p in copy.parent.iterdir()) == ["vaultbundle"]
    return copy


def _pytest_in(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{copy / 'operator'}{os.pathsep}{copy}", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("VAULTBUNDLE_TESTBED_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_a_lone_clone_collects_the_whole_suite(lone_clone: Path) -> None:
    result = _pytest_in(lone_clone, "--collect-only", "-q")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "error" not in result.stdout.lower().splitlines()[-1]
    assert "tests/unit/test_vectors.py::test_rqe1_decrypt[rqe1-decrypt/hello-world]" in result.stdout


@pytest.mark.slow
def test_a_lone_clone_passes_the_vector_tests_from_its_own_copy(lone_clone: Path) -> None:
    probe = _pytest_in(lone_clone, "-q", "tests/unit/test_vectors.py")
    assert probe.returncode == 0, probe.stdout[-3000:] + probe.stderr[-3000:]
    assert " passed" in probe.stdout.splitlines()[-1]
    assert "skipped" not in probe.stdout.splitlines()[-1]
