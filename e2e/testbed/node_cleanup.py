"""Taking the node down without leaving anything behind: containers, containerd shims, mounts, cgroups.

A container outlives its containerd (each runs under its own ``containerd-shim-runc-v2``, in a session of its
own), and the kubelet leaves tmpfs and overlay mounts under its root. So ``down`` first lets the kubelet stop
the pods (they are force-deleted in the API, which makes it stop their sandboxes through the CRI, CNI teardown
included), then kills whatever containerd still runs (and deletes those sandboxes' network namespaces), then
the shims that served *our* containerd (recognised by its socket in their argv), then unmounts what is left
below the node's directory and removes the empty cgroups the kubelet made.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from .node_config import NODE_NAME, NodeLayout

KUBEPODS = "kubepods"
_NETNS_DIR = "/var/run/netns/"  # where containerd 1.6's CRI pins pod network namespaces
_CNI_CACHE = Path("/var/lib/cni/results")  # libcni's cache of ADD results (not configurable in containerd 1.6)


def _ctr(node: NodeLayout, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    argv = ["ctr", "--address", str(node.containerd_socket), "--namespace", "k8s.io", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)


def running_tasks(node: NodeLayout) -> list[str]:
    if not node.containerd_socket.exists():
        return []
    result = _ctr(node, "tasks", "ls", "-q")
    return result.stdout.split() if result.returncode == 0 else []


def delete_pods_through_the_kubelet(node: NodeLayout, kubectl: str, kubeconfig: str, timeout: float = 45) -> bool:
    """Force-delete every pod bound to the node and wait until containerd runs no task. False if some remain."""
    subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "delete", "pods", "--all-namespaces", "--force", "--grace-period=0",
         f"--field-selector=spec.nodeName={NODE_NAME}", "--wait=false", "--request-timeout=10s"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running_tasks(node):
            return True
        time.sleep(0.5)
    return False


def kill_tasks(node: NodeLayout) -> int:
    """SIGKILL and delete every task and container containerd still has. Returns how many tasks there were."""
    tasks = running_tasks(node)
    for task in tasks:
        _ctr(node, "tasks", "kill", "--all", "--signal", "SIGKILL", task)
    for task in tasks:
        for _ in range(50):
            if _ctr(node, "tasks", "delete", "--force", task).returncode == 0:
                break
            time.sleep(0.1)
    if node.containerd_socket.exists():
        listed = _ctr(node, "containers", "ls", "-q")
        for container in listed.stdout.split():
            _ctr(node, "containers", "delete", container)
    return len(tasks)


def sandbox_netns(node: NodeLayout) -> dict[str, str]:
    """Container id → the network namespace file its spec joins (the CRI makes one per pod sandbox)."""
    found: dict[str, str] = {}
    if not node.containerd_socket.exists():
        return found
    for container in _ctr(node, "containers", "ls", "-q").stdout.split():
        info = _ctr(node, "containers", "info", container)
        if info.returncode != 0:
            continue
        namespaces = json.loads(info.stdout).get("Spec", {}).get("linux", {}).get("namespaces", [])
        for namespace in namespaces:
            if namespace.get("type") == "network" and namespace.get("path", "").startswith(_NETNS_DIR):
                found[container] = namespace["path"]
    return found


def remove_netns(netns: dict[str, str]) -> list[str]:
    """Unmount and delete the namespaces (their veths go with them) and libcni's cached results for those
    sandboxes. Only needed when pods did not stop through the kubelet. Returns the files that stay."""
    for path in set(netns.values()):
        subprocess.run(["umount", path], capture_output=True, check=False)
        with contextlib.suppress(FileNotFoundError, OSError):
            Path(path).unlink()
    if _CNI_CACHE.is_dir():
        for cached in _CNI_CACHE.iterdir():
            if any(cached.name.endswith((f"-{container}-eth0", f"-{container}-lo")) for container in netns):
                cached.unlink(missing_ok=True)
    return [path for path in set(netns.values()) if Path(path).exists()]


def _our_shims(node: NodeLayout) -> list[int]:
    address = str(node.containerd_socket)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv:
            pids.append(int(entry.name))
    return pids


def kill_shims(node: NodeLayout) -> int:
    pids = _our_shims(node)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def _mounts_below(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return points


def unmount_all(root: Path) -> list[str]:
    """Unmount everything below ``root``, deepest first; returns mount points that would not go."""
    if not root.exists():
        return []
    for point in sorted(set(_mounts_below(root)), key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    return _mounts_below(root)


def remove_kubepods_cgroups(cgroup_root: Path = Path("/sys/fs/cgroup")) -> list[str]:
    """rmdir the kubelet's (empty) cgroups in every hierarchy, leaves first; returns those still there."""
    left = []
    for hierarchy in sorted(p for p in cgroup_root.iterdir() if p.is_dir()):
        top = hierarchy / KUBEPODS
        if not top.is_dir():
            continue
        for directory, _subdirs, _files in sorted(os.walk(top), key=lambda item: len(item[0]), reverse=True):
            try:
                os.rmdir(directory)
            except OSError:
                left.append(directory)
    return left
