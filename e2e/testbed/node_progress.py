"""Run one long step of the node's setup as a subprocess with its output in a log, and say every 15 s that it is
still running and for how long (a cold kubelet build or debootstrap takes minutes)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .artifacts import tail

TICK_SECONDS = 15.0


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
        next_tick = started + TICK_SECONDS
        while proc.poll() is None:
            time.sleep(0.2)
            if time.monotonic() >= next_tick:
                say(f"  ... {what}: {time.monotonic() - started:.0f}s")
                next_tick += TICK_SECONDS
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise NodeError(f"{what} failed (exit {proc.returncode}) after {elapsed:.0f}s; see {log}:\n{tail(log)}")
    say(f"  {what}: done in {elapsed:.1f}s")
    return elapsed
