"""Cold builds say what they do: progress lines from e2e/build/progress.sh, relayed by the test bed's artifact
step with heartbeats, and durations kept in the cache for the next estimate.

The real builds take many minutes; here the real `progress.sh` and the real `ensure_artifacts` run stand-in
build scripts that take a few seconds and print `go build -v`-style package lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from e2e.testbed import artifacts
from e2e.testbed.config import BUILD_SCRIPTS, Binaries

from e2e import demo

PROGRESS = BUILD_SCRIPTS / "progress.sh"
# a stand-in "go build -v": one package per line, one per 0.5 s (4 s: room for two 1 s ticks on a loaded machine)
FAKE_GO_BUILD = 'sh -c "for i in 1 2 3 4 5 6 7 8; do echo example.com/pkg/p\\$i; sleep 0.5; done"'


def _bash(script: str, cache: Path, every: int = 1) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CACHE": str(cache), "PROGRESS_EVERY": str(every)}
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; . {PROGRESS}; {script}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_step_reports_packages_elapsed_and_an_estimate(tmp_path: Path) -> None:
    first = _bash(f"step thing 600 {FAKE_GO_BUILD}", tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("==> thing: starting, expected 10m00s (typical cold build on 2 cores)")
    ticks = [line for line in lines if "elapsed" in line]
    assert len(ticks) >= 2 and all("packages compiled" in t and "left" in t for t in ticks)
    assert lines[-1].startswith("==> thing: done in 0m0") and lines[-1].endswith("(8 packages)")
    assert (tmp_path / ".durations" / "thing").read_text().split()[1] == "8"
    second = _bash(f"step thing 600 {FAKE_GO_BUILD}", tmp_path)
    assert "(last build here)" in second.stdout.splitlines()[0]
    assert re.search(r"\d/8 packages compiled", second.stdout), second.stdout


def test_a_failing_step_says_so_and_shows_the_end_of_its_log(tmp_path: Path) -> None:
    result = _bash('step broken 60 sh -c "echo cannot find module; exit 7"', tmp_path)
    assert result.returncode == 7
    assert "==> broken: FAILED (exit 7)" in result.stdout and "cannot find module" in result.stdout
    assert not (tmp_path / ".durations" / "broken").exists()


def test_every_long_build_step_is_wrapped() -> None:
    for script in ("build-kube.sh", "build-openbao.sh", "fetch-kubectl-helm.sh", "build-eso.sh"):
        text = (BUILD_SCRIPTS / script).read_text()
        assert '. "$(dirname "$0")/progress.sh"' in text, script
        for line in text.splitlines():
            command = line.strip()
            if command.startswith(("go build", "go get", "go mod download", '"$PY" -m pip download')):
                pytest.fail(f"{script}: a long step without progress: {command}")
    assert "go build -v" in (BUILD_SCRIPTS / "build-kube.sh").read_text()
    assert "go build -v" in (BUILD_SCRIPTS / "build-eso.sh").read_text()


def test_the_peer_bench_builds_only_eso_and_the_bed_never_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "progress.sh").write_text(PROGRESS.read_text())
    binaries = Binaries(tmp_path / "cache")
    eso = artifacts.eso_artifact(binaries)
    assert eso.name not in {a.name for a in artifacts.artifacts(binaries)}  # `up` and `make demo` skip it
    (scripts / eso.script).write_text(
        'set -euo pipefail\nCACHE="$VAULTBUNDLE_TESTBED_CACHE"\n. "$(dirname "$0")/progress.sh"\n'
        f'echo "==> version $ESO_VERSION"\nstep eso-compile 60 {FAKE_GO_BUILD}\n'
        f"mkdir -p \"$(dirname '{binaries.eso}')\"; touch '{binaries.eso}'; chmod +x '{binaries.eso}'\n"
    )
    monkeypatch.setattr(artifacts, "BUILD_SCRIPTS", scripts)
    monkeypatch.setenv("PROGRESS_EVERY", "1")
    said: list[str] = []
    timings = artifacts.ensure_artifacts(binaries, tmp_path / "logs", said.append, wanted=[eso])
    assert set(timings) == {"eso"} and os.access(binaries.eso, os.X_OK)
    assert "  version v0.20.4" in said and any("packages compiled" in line for line in said)
    assert artifacts.ensure_artifacts(binaries, tmp_path / "logs", said.append, wanted=[eso]) == {}  # cached


def test_the_artifact_step_relays_progress_and_keeps_durations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "progress.sh").write_text(PROGRESS.read_text())
    binaries = Binaries(tmp_path / "cache")
    for artifact in artifacts.artifacts(binaries):
        outputs = " ".join(f"'{p}'" for p in artifact.outputs)
        (scripts / artifact.script).write_text(
            'set -euo pipefail\nCACHE="$VAULTBUNDLE_TESTBED_CACHE"\n. "$(dirname "$0")/progress.sh"\n'
            '[ "${1:-}" = --download-only ] && exit 0\n'
            f"sleep 1.2\nstep {artifact.name}-compile 60 {FAKE_GO_BUILD}\n"
            f'for f in {outputs}; do mkdir -p "$(dirname "$f")"; touch "$f"; chmod +x "$f"; done\n'
        )
    monkeypatch.setattr(artifacts, "BUILD_SCRIPTS", scripts)
    monkeypatch.setattr(artifacts, "HEARTBEAT_SECONDS", 1.0)
    monkeypatch.setenv("PROGRESS_EVERY", "1")
    assert artifacts.plan(binaries) == (["kubectl-helm", "kube", "openbao"], 30 + 660 + 480)
    said: list[str] = []
    timings = artifacts.ensure_artifacts(binaries, tmp_path / "logs", said.append)
    assert set(timings) == {"kubectl-helm", "kube", "openbao"}
    assert "building kube: expect about 11m00s (typical cold build on 2 cores)" in "\n".join(said)
    assert any(line.startswith("  kube-compile: ") and "packages compiled" in line for line in said)
    assert any("building kube: still running" in line for line in said)  # the silent first second
    assert any(line.startswith("built openbao in 0m0") for line in said)
    assert "example.com/pkg/p8" in (tmp_path / "logs" / "kube-compile.log").read_text()  # go's output: the log
    assert "==> kube-compile: done" in (tmp_path / "logs" / "build-kube.log").read_text()
    assert artifacts.plan(binaries) == ([], 0)
    for artifact in artifacts.artifacts(binaries):
        seconds, source = artifacts.expected_seconds(binaries, artifact)
        assert source == "last build here" and 1 <= seconds < 60


def test_the_demo_plan_needs_only_the_standard_library_and_counts_missing_builds(tmp_path: Path) -> None:
    env = {**os.environ, "VAULTBUNDLE_TESTBED_CACHE": str(tmp_path / "empty-cache")}
    result = subprocess.run(  # -S: no site-packages, as make runs it before the venv exists
        [sys.executable, "-S", "-m", "e2e.demo", "--plan"],
        cwd=BUILD_SCRIPTS.parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("make demo: build kubectl-helm, kube, openbao into ")
    assert "(~19m30s, progress shown)" in line and "a cold machine needs about" in line
    binaries = Binaries(tmp_path / "full-cache")
    for artifact in artifacts.artifacts(binaries):
        for output in artifact.outputs:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.touch(mode=0o755)
    assert demo.plan_line(binaries).startswith("make demo: no builds (all cached), start the test bed")
