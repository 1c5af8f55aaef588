"""Run one long step of the node's setup as a subprocess with its output in a log, and say (with the builds'
heartbeat, `artifacts.wait_saying`) that it is still running and for how long: a cold kubelet build or
debootstrap takes minutes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .artifacts import tail, wait_saying


class NodeError(RuntimeError):
    """The node (or the image) could not be set up; the message says which step and where its log is."""


def run_step(
    what: str, argv: list[str], log: Path, say: Callable[[str], None], *, env: dict[str, str] | None = None
) -> float:
    """Run ``argv`` (output appended to ``log``); raise :class:`NodeError` with the log's tail if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"{what} (log: {log}) ...")
    started = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        wait_saying(proc, what, say, [started])
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise NodeError(f"{what} failed (exit {proc.returncode}) after {elapsed:.0f}s; see {log}:\n{tail(log)}")
    say(f"  {what}: done in {elapsed:.1f}s")
    return elapsed
