"""Make sure every prebuilt program the test bed runs is in the cache; build or download what is missing.

Each artifact has a project-owned script in ``e2e/build/`` that is idempotent on its own; this module only
decides which scripts to run, serialises them with a lock file (two ``up`` runs must not build at once) and
logs and times them. A cold build takes minutes, so the user sees what is being built and how far it is: the
scripts' own progress lines (``==> …``: elapsed time, Go packages compiled, an estimate from the last build)
are passed through, and a heartbeat is printed whenever nothing was said for 15 s. Each artifact's duration is
kept in the cache (``.durations/artifact-<name>``) for the next estimate.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .config import BUILD_SCRIPTS, ESO_VERSION, Binaries

PROGRESS_MARK = "==> "
HEARTBEAT_SECONDS = 15.0


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Artifact:
    name: str
    script: str
    outputs: tuple[Path, ...]
    typical_seconds: int  # a cold build on 2 cores, for the estimate before this machine has built it once

    def present(self) -> bool:
        return all(os.access(p, os.X_OK) for p in self.outputs)


def artifacts(binaries: Binaries) -> list[Artifact]:
    """In build order: the cheap download first, then the two Go builds (kube first: it is the longest)."""
    return [
        Artifact("kubectl-helm", "fetch-kubectl-helm.sh", (binaries.kubectl, binaries.helm), 30),
        Artifact(
            "kube", "build-kube.sh", (binaries.etcd, binaries.kube_apiserver, binaries.kube_controller_manager), 660
        ),
        Artifact("openbao", "build-openbao.sh", (binaries.bao,), 480),
    ]


def eso_artifact(binaries: Binaries) -> Artifact:
    """The External Secrets Operator for the side-by-side bench (`make bench-peer`); not part of the bed."""
    return Artifact("eso", "build-eso.sh", (binaries.eso,), 960)


def minutes(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def _duration_file(binaries: Binaries, artifact: Artifact) -> Path:
    return binaries.cache / ".durations" / f"artifact-{artifact.name}"


def expected_seconds(binaries: Binaries, artifact: Artifact) -> tuple[float, str]:
    """The last build's duration on this machine, else the typical cold build; and where the number comes from."""
    try:
        return float(_duration_file(binaries, artifact).read_text().split()[0]), "last build here"
    except (OSError, ValueError, IndexError):
        return float(artifact.typical_seconds), "typical cold build on 2 cores"


def plan(binaries: Binaries) -> tuple[list[str], float]:
    """What `ensure_artifacts` would build now and roughly how long it takes (nothing is run)."""
    missing = [a for a in artifacts(binaries) if not a.present()]
    return [a.name for a in missing], sum(expected_seconds(binaries, a)[0] for a in missing)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _script_env(binaries: Binaries, logs: Path) -> dict[str, str]:
    return dict(
        os.environ,
        PYTHON=sys.executable,
        VAULTBUNDLE_TESTBED_CACHE=str(binaries.cache),
        STEP_LOGS=str(logs),
        ESO_VERSION=ESO_VERSION,
    )


def _run_script(script: str, log: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """Run a build script in the background, all its output appended to *log* (the OpenBao prefetch)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            ["bash", str(BUILD_SCRIPTS / script), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def wait_saying(proc: subprocess.Popen[bytes], what: str, say: Callable[[str], None], last: list[float]) -> int:
    """Wait for *proc*; whenever nothing was said for HEARTBEAT_SECONDS (since ``last[0]``), say that *what* is
    still running. The builds and the node's setup steps share it."""
    started = time.monotonic()
    while True:
        try:
            return proc.wait(timeout=min(1.0, HEARTBEAT_SECONDS / 4))
        except subprocess.TimeoutExpired:
            if time.monotonic() - last[0] >= HEARTBEAT_SECONDS:
                say(f"  {what}: still running, {minutes(time.monotonic() - started)} elapsed")
                last[0] = time.monotonic()


def _build(script: str, log: Path, env: dict[str, str], name: str, say: Callable[[str], None]) -> int:
    """Run a build script: output to *log*, its progress lines (``==> …``) also to the user, plus heartbeats."""
    last = [time.monotonic()]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["bash", str(BUILD_SCRIPTS / script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        assert proc.stdout is not None
        stream = proc.stdout

        def relay() -> None:
            for raw in stream:
                out.write(raw)
                out.flush()
                line = raw.decode(errors="replace").rstrip()
                if line.startswith(PROGRESS_MARK):
                    say(f"  {line[len(PROGRESS_MARK) :]}")
                    last[0] = time.monotonic()

        reader = threading.Thread(target=relay, name=f"build-{name}-output", daemon=True)
        reader.start()
        code = wait_saying(proc, f"building {name}", say, last)
        reader.join()
    return code


def ensure_artifacts(
    binaries: Binaries,
    logs: Path,
    say: Callable[[str], None] = print,
    wanted: Sequence[Artifact] | None = None,
) -> dict[str, float]:
    """Build or fetch whatever is missing of *wanted* (default: the bed's artifacts). Returns the seconds spent
    per artifact that had to be made."""
    logs.mkdir(parents=True, exist_ok=True)
    missing = [a for a in (artifacts(binaries) if wanted is None else wanted) if not a.present()]
    if not missing:
        return {}
    timings: dict[str, float] = {}
    env = _script_env(binaries, logs)
    with _lock(binaries.cache / ".build.lock"):
        names = {a.name for a in missing if not a.present()}
        # Module downloads are network-bound: fetch OpenBao's while the kube build compiles.
        prefetch = None
        if "openbao" in names and "kube" in names:
            prefetch = _run_script("build-openbao.sh", logs / "build-openbao.log", env, "--download-only")
        try:
            for artifact in missing:
                if artifact.present():
                    continue
                log = logs / f"build-{artifact.name}.log"
                if artifact.name == "openbao" and prefetch is not None:
                    wait_saying(prefetch, "downloading OpenBao's modules", say, [time.monotonic()])
                expected, source = expected_seconds(binaries, artifact)
                say(f"building {artifact.name}: expect about {minutes(expected)} ({source}); log: {log}")
                started = time.monotonic()
                code = _build(artifact.script, log, env, artifact.name, say)
                if code != 0 or not artifact.present():
                    raise BuildError(f"{artifact.script} failed (exit {code}); see {log}:\n" + tail(log))
                timings[artifact.name] = time.monotonic() - started
                _duration_file(binaries, artifact).parent.mkdir(parents=True, exist_ok=True)
                _duration_file(binaries, artifact).write_text(f"{timings[artifact.name]:.0f}\n")
                say(f"built {artifact.name} in {minutes(timings[artifact.name])}")
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
