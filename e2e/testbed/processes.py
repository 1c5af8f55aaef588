"""Start, identify and stop the test bed's server processes.

Every process is started in its own session (so a Ctrl-C in the shell that ran ``up`` does not reach it)
with its output in ``.testbed/logs/<name>.log``. A :class:`ProcessRecord` keeps what is needed to recognise
it later: its PID, its exact argv and its start time (from ``/proc``), so ``down`` never signals a PID that
has since been reused by another program.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ProcessRecord:
    name: str
    pid: int
    argv: list[str]
    start_ticks: int
    ports: dict[str, int] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessRecord:
        return cls(**data)


def _proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] if raw else []


def _proc_start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); fields after the parenthesised command name, which may contain spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] in ("Z", "X")


def is_ours(record: ProcessRecord) -> bool:
    """True while ``record.pid`` is still the very process we started (same argv and start time)."""
    if _is_zombie(record.pid):
        return False
    return _proc_cmdline(record.pid) == record.argv and _proc_start_ticks(record.pid) == record.start_ticks


# Handles of the processes started by this Python process, kept so that their exit status gets reaped
# (a long-lived parent such as a pytest session would otherwise collect zombies after ``down``).
_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn(
    name: str, argv: list[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> ProcessRecord:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    # The child may still be between fork and exec for a moment: wait until /proc shows the new program.
    # (A program can show another argv than the one given, e.g. a '#!' script; then record what it shows.)
    deadline = time.monotonic() + 2
    cmdline = _proc_cmdline(proc.pid)
    while cmdline != argv and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
        cmdline = _proc_cmdline(proc.pid)
    return ProcessRecord(
        name=name, pid=proc.pid, argv=cmdline or list(argv), start_ticks=_proc_start_ticks(proc.pid) or -1
    )


def stop(record: ProcessRecord, timeout: float = 15.0) -> str:
    """Stop the process if it is still ours: SIGTERM to its process group, then SIGKILL after ``timeout``."""
    if not is_ours(record):
        _reap(record.pid)
        return "not running"
    _signal_group(record, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not is_ours(record):
            return "stopped"
        time.sleep(0.1)
    _signal_group(record, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while is_ours(record) and time.monotonic() < deadline:
        _reap(record.pid)
        time.sleep(0.05)
    return "killed"


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def _signal_group(record: ProcessRecord, sig: signal.Signals) -> None:
    # The process is a session and group leader (start_new_session), so its group id is its PID; its
    # children (if any) are in the same group. We only get here after is_ours() confirmed the leader.
    try:
        os.killpg(record.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(record.pid, sig)


def free_ports(count: int, *, exclude: Collection[int] = ()) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (chosen by the kernel), none of them in ``exclude``."""
    sockets = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)  # held until the end, so the kernel never hands out the same port twice
            port = int(sock.getsockname()[1])
            if port not in exclude:
                ports.append(port)
        return ports
    finally:
        for sock in sockets:
            sock.close()


def free_port_pair() -> int:
    """A free port P on 127.0.0.1 whose neighbour P+1 is free too (OpenBao's dev server listens on both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no pair of adjacent free ports found on 127.0.0.1")


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process (by its socket inodes) listens on, read from /proc/net/tcp{,6}."""
    inodes: set[str] = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports
