"""Make sure every prebuilt program the test bed runs is in the cache; build or download what is missing.

Each artifact has a project-owned script in ``e2e/build/`` that is idempotent on its own; this module only
decides which scripts to run, serialises them with a lock file (two ``up`` runs must not build at once) and
logs and times them.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .config import BUILD_SCRIPTS, Binaries


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Artifact:
    name: str
    script: str
    outputs: tuple[Path, ...]

    def present(self) -> bool:
        return all(os.access(p, os.X_OK) for p in self.outputs)


def artifacts(binaries: Binaries) -> list[Artifact]:
    """In build order: the cheap download first, then the two Go builds (kube first: it is the longest)."""
    return [
        Artifact("kubectl-helm", "fetch-kubectl-helm.sh", (binaries.kubectl, binaries.helm)),
        Artifact("kube", "build-kube.sh", (binaries.etcd, binaries.kube_apiserver, binaries.kube_controller_manager)),
        Artifact("openbao", "build-openbao.sh", (binaries.bao,)),
    ]


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_script(script: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHON=sys.executable)
    with log.open("ab") as out:
        return subprocess.Popen(
            ["bash", str(BUILD_SCRIPTS / script), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def ensure_artifacts(binaries: Binaries, logs: Path, say: Callable[[str], None] = print) -> dict[str, float]:
    """Build or fetch whatever is missing. Returns the seconds spent per artifact that had to be made."""
    logs.mkdir(parents=True, exist_ok=True)
    missing = [a for a in artifacts(binaries) if not a.present()]
    if not missing:
        return {}
    timings: dict[str, float] = {}
    with _lock(binaries.cache / ".build.lock"):
        names = {a.name for a in missing if not a.present()}
        # Module downloads are network-bound: fetch OpenBao's while the kube build compiles.
        prefetch = None
        if "openbao" in names and "kube" in names:
            prefetch = _run_script("build-openbao.sh", logs / "build-openbao.log", "--download-only")
        try:
            for artifact in missing:
                if artifact.present():
                    continue
                log = logs / f"build-{artifact.name}.log"
                if artifact.name == "openbao" and prefetch is not None:
                    prefetch.wait()
                say(f"building {artifact.name} (log: {log}) ...")
                started = time.monotonic()
                proc = _run_script(artifact.script, log)
                if proc.wait() != 0 or not artifact.present():
                    raise BuildError(f"{artifact.script} failed (exit {proc.returncode}); see {log}:\n" + tail(log))
                timings[artifact.name] = time.monotonic() - started
                say(f"built {artifact.name} in {timings[artifact.name]:.0f}s")
        finally:
            if prefetch is not None and prefetch.poll() is None:
                prefetch.wait()
    return timings


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])
