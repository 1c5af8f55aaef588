"""A process under test (`vaultbundle run`, or the peer operator of bench/peer.py): start, scrape /metrics,
probe /healthz, read RSS and CPU, stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .stats import percentile


def http_get(url: str, timeout: float = 5.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum a Prometheus metric family over the samples whose labels include *labels*."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line[len(name)] not in " {":
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_by_label(text: str, name: str, label: str) -> dict[str, float]:
    found: dict[str, float] = {}
    marker = f'{label}="'
    for line in text.splitlines():
        if line.startswith(name + "{") and marker in line:
            value = line.split(marker, 1)[1].split('"', 1)[0]
            found[value] = found.get(value, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of *pid* so far (from /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every live descendant of *pid* (none since the crypto workers are threads; kept to prove it), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


class HealthProbe:
    """GET /healthz every 200 ms in a thread and record the response time: the operator's loop latency."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            ok = http_get(f"http://127.0.0.1:{self.port}/healthz", timeout=30) == "ok\n"
            self.samples.append((time.perf_counter() - started) * 1000 if ok else 30_000.0)
            self._stop.wait(0.2)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        return {
            "p50_ms": round(percentile(self.samples, 50), 1),
            "p99_ms": round(percentile(self.samples, 99), 1),
            "max_ms": round(max(self.samples), 1),
            "probes": len(self.samples),
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """A long-running program under test (an operator): started with its output in *log*, ready once *ready*
    returns True; its /metrics, RSS and CPU are read the same way whatever the program."""

    def __init__(
        self,
        command: Sequence[str],
        log: Path,
        *,
        metrics_url: str,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 90.0,
    ) -> None:
        self.log = log
        self.command = list(command)
        self.metrics_url = metrics_url
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                self.command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        deadline = time.monotonic() + ready_timeout
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{Path(self.command[0]).name} did not become ready (log {log}):\n{tail}")
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        return self.process.pid

    def metrics(self, *names: str) -> str:
        """/metrics; with *names* only those samples (`?name[]=`; a checkout without the filter sends them all)."""
        query = "&".join(f"name[]={name}" for name in names)
        return http_get(f"{self.metrics_url}?{query}" if query else self.metrics_url, timeout=30)

    def rss(self) -> dict[str, float]:
        children = descendants(self.pid)
        main = _status_kib(self.pid, "VmRSS")
        kids = sum(_status_kib(child, "VmRSS") for child in children)
        return {
            "main_mib": round(main / 1024, 1),
            "main_peak_mib": round(_status_kib(self.pid, "VmHWM") / 1024, 1),
            "children_mib": round(kids / 1024, 1),
            "children": len(children),
            "total_mib": round((main + kids) / 1024, 1),
            "main_cpu_s": round(cpu_seconds(self.pid), 1),
            "children_cpu_s": round(sum(cpu_seconds(child) for child in children), 1),
        }

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 30 s. Returns the exit code (None when it had to be killed)."""
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return None


class OperatorProcess(ServerProcess):
    """`vaultbundle run --all-namespaces` against the test bed; *extra_args* are more flags (tuning)."""

    def __init__(
        self,
        kubeconfig: str,
        log: Path,
        *,
        shard: str | None = None,
        workers: int | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """*env*: extra environment, e.g. PYTHONPATH to run another checkout's operator code in this venv."""
        self.port = free_port()
        script = Path(sys.executable).parent / "vaultbundle"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "vaultbundle.cli"]
        command += [
            "run",
            "--all-namespaces",
            "--kubeconfig",
            kubeconfig,
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(self.port),
            "--min-refresh-interval",
            "1s",
            "--egress-allow-local",  # the test bed's S3 listens on loopback
        ]
        if shard:
            command += ["--shard", shard]
        if workers is not None:
            command += ["--workers", str(workers)]
        command += list(extra_args)
        base = f"http://127.0.0.1:{self.port}"
        super().__init__(
            command,
            log,
            metrics_url=f"{base}/metrics",
            ready=lambda: http_get(f"{base}/readyz", timeout=2) == "ready\n",
            env={"PYTHONUNBUFFERED": "1", **(env or {})},
        )
