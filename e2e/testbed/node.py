"""The test bed's optional node (``make testbed-up NODE=1``): a real kubelet with containerd and runc, and a
kube-scheduler, registered with the bed's kube-apiserver, so that the chart's Deployment runs the operator image
in real pods.

This module decides the order; the files and argv are in ``node_config.py``, the certs in ``node_pki.py``, the
pod network in ``node_network.py`` and the teardown in ``node_cleanup.py``. Prebuilt pieces are cached like the
rest of the bed in ``~/.cache/vaultbundle-testbed``: kubelet and kube-scheduler next to kube-apiserver, the
pause image archive and the operator image archive (``make image``) under ``node/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import vaultbundle

from . import node_cleanup, node_network
from .artifacts import tail
from .components import ComponentSpec
from .config import BUILD_SCRIPTS, Binaries, Layout
from .node_config import CNI_BIN_DIR, NODE_NAME, NODE_PORT_NAMES, NodeLayout, node_specs, write_node_files
from .node_pki import create_node_pki
from .node_progress import NodeError, run_step
from .processes import ProcessRecord, free_ports, is_ours, stop

Say = Callable[[str], None]
NODE_COMPONENTS = ("kubelet", "kube-scheduler", "containerd", "cluster-dns")
NODE_RBAC = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "testbed:nodes"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:node"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:nodes"}]
"""


def operator_image() -> str:
    """The tag ``make image`` builds and the node test installs (the chart's appVersion)."""
    return f"localhost/vaultbundle:{vaultbundle.__version__}"


def pause_archive(binaries: Binaries) -> Path:
    return binaries.cache / "node" / "pause-image.tar"


def image_archive(binaries: Binaries) -> Path:
    """Where ``make image`` saves the operator image (imported into the node's containerd on every up)."""
    return binaries.cache / "node" / "vaultbundle-image.tar"


def ensure_node_artifacts(binaries: Binaries, logs: Path, say: Say) -> None:
    """Debian packages, kubelet + kube-scheduler and the pause image: whatever is missing, with progress."""
    steps = [
        ("installing the node's Debian packages", "install-node-packages.sh", _packages_present),
        ("building kubelet and kube-scheduler", "build-kubelet.sh", lambda: _node_binaries_present(binaries)),
        ("building the pause image", "build-pause-image.sh", lambda: pause_archive(binaries).is_file()),
    ]
    env = dict(os.environ, VAULTBUNDLE_TESTBED_CACHE=str(binaries.cache))
    for what, script, done in steps:
        if done():
            continue
        run_step(what, ["bash", str(BUILD_SCRIPTS / script)], logs / f"build-{script[:-3]}.log", say, env=env)


def _packages_present() -> bool:
    """A quick look (install-node-packages.sh checks the full list, and installs)."""
    return all(shutil.which(p) for p in ("containerd", "runc", "iptables", "dnsmasq", "buildah")) and os.access(
        f"{CNI_BIN_DIR}/bridge", os.X_OK
    )


def _node_binaries_present(binaries: Binaries) -> bool:
    return all(os.access(binaries.k8s_bin / name, os.X_OK) for name in ("kubelet", "kube-scheduler"))


def has_node(records: list[ProcessRecord]) -> bool:
    return any(r.name in NODE_COMPONENTS for r in records)


class NodeStarter:
    """Start the node into a bed whose servers are healthy; ``run_specs`` is the bed's own starter."""

    def __init__(
        self, layout: Layout, binaries: Binaries, run_specs: Callable[[list[ComponentSpec]], None], say: Say
    ) -> None:
        self.layout = layout
        self.node = NodeLayout.of(layout)
        self.binaries = binaries
        self.run_specs = run_specs
        self.say = say

    def start(self, apiserver_url: str, moto_port: int) -> dict[str, str]:
        started = time.monotonic()
        net = node_network.network()
        node_network.set_up(int(apiserver_url.rsplit(":", 1)[1]), [moto_port])
        pki = create_node_pki(self.layout.pki, self.node.pki, NODE_NAME, net["gateway"])
        flat = iter(free_ports(sum(len(names) for names in NODE_PORT_NAMES.values())))
        ports = {name: {port: next(flat) for port in names} for name, names in NODE_PORT_NAMES.items()}
        write_node_files(self.node, pki, ports, apiserver_url, net)
        self.kubectl("apply", "--server-side", "-f", "-", stdin=NODE_RBAC)
        env = dict(os.environ)
        specs = {s.name: s for s in node_specs(self.node, self.binaries, pki, ports, net["gateway"], env)}
        self.run_specs([specs["containerd"]])
        # Images first, so the kubelet never asks for a sandbox image that is not there yet.
        for archive in (pause_archive(self.binaries), image_archive(self.binaries)):
            if archive.is_file():
                import_image(self.node, archive, self.layout.logs, self.say)
        self.run_specs([specs["cluster-dns"], specs["kube-scheduler"], specs["kubelet"]])
        self._wait_ready()
        self.say(f"  node {NODE_NAME} Ready after {time.monotonic() - started:.1f}s")
        return {
            "NODE_NAME": NODE_NAME,
            "NODE_CONTAINERD_ADDRESS": str(self.node.containerd_socket),
            "NODE_HOST_ADDRESS": net["gateway"],
            "NODE_S3_ENDPOINT": f"http://{net['gateway']}:{moto_port}",  # moto, from pods and from the host
            "NODE_OPERATOR_IMAGE": operator_image(),
            "NODE_POD_SUBNET": net["subnet"],
            "NODE_KUBELET_ROOT": str(self.node.kubelet_root),
        }

    def _wait_ready(self, timeout: float = 120) -> None:
        """Registered, Ready, and without the not-ready taint (the node lifecycle controller lifts it)."""
        deadline = time.monotonic() + timeout
        query = 'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.taints}'
        state = "not registered"
        while time.monotonic() < deadline:
            result = self.kubectl("get", "node", NODE_NAME, "-o", query, "--ignore-not-found", check=False)
            state = result.strip() or "not registered"
            if state == "True":
                return
            time.sleep(0.5)
        log = self.layout.log_file("kubelet")
        raise NodeError(f"node {NODE_NAME} not Ready after {timeout:.0f}s ({state}); see {log}:\n{tail(log)}")

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        argv = [str(self.binaries.kubectl), "--kubeconfig", str(self.layout.kubeconfig), *args]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=60)
        if check and result.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args[:3])} failed: {result.stderr.strip()}")
        return result.stdout


def import_image(node: NodeLayout, archive: Path, logs: Path, say: Say) -> None:
    """``ctr -n k8s.io images import`` into the node's containerd (where the kubelet's CRI looks)."""
    argv = ["ctr", "--address", str(node.containerd_socket), "--namespace", "k8s.io", "images", "import"]
    run_step(f"importing {archive.name} into the node", [*argv, str(archive)], logs / "node-images.log", say)


def tear_down(layout: Layout, records: list[ProcessRecord], kubectl: Path, say: Say) -> list[str]:
    """Stop the node's pods, processes, shims, mounts, cgroups and network; returns what was left behind."""
    node = NodeLayout.of(layout)
    by_name = {r.name: r for r in records}
    # No scheduler first: a Deployment's replacement pods must not land on the node while its pods go.
    if "kube-scheduler" in by_name:
        say(f"  kube-scheduler (pid {by_name['kube-scheduler'].pid}): {stop(by_name['kube-scheduler'])}")
    kubelet = by_name.get("kubelet")
    apiserver = by_name.get("kube-apiserver")
    api_up = bool(kubelet and apiserver and is_ours(kubelet) and is_ours(apiserver))
    if api_up and not node_cleanup.delete_pods_through_the_kubelet(node, str(kubectl), str(layout.kubeconfig)):
        say("  some pods did not stop through the kubelet in time: killing their containers")
    for name in ("kubelet", "cluster-dns"):
        if name in by_name:
            say(f"  {name} (pid {by_name[name].pid}): {stop(by_name[name])}")
    netns = node_cleanup.sandbox_netns(node)
    killed = node_cleanup.kill_tasks(node)
    if killed:
        say(f"  killed {killed} container task(s) left in containerd")
    if "containerd" in by_name:
        say(f"  containerd (pid {by_name['containerd'].pid}): {stop(by_name['containerd'])}")
    shims = node_cleanup.kill_shims(node)
    if shims:
        say(f"  killed {shims} containerd shim(s) left running")
    left = [f"netns {n}" for n in node_cleanup.remove_netns(netns)]
    left += [f"mount {m}" for m in node_cleanup.unmount_all(node.root)]
    left += [f"cgroup {c}" for c in node_cleanup.remove_kubepods_cgroups()]
    left += node_network.tear_down()
    return left
