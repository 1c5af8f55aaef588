"""The node's pod network: a Linux bridge made by us (so its address exists before any pod), the CNI bridge
plugin attaching pods to it, and two kinds of DNAT rule that stand in for kube-proxy and for "a service on the
host":

* ``10.0.0.1:443`` (the ``kubernetes`` Service, what in-cluster clients dial) → the bed's kube-apiserver on
  127.0.0.1, so the chart's pods use their ServiceAccount exactly as in a real cluster;
* ``<gateway>:<port>`` → ``127.0.0.1:<port>`` for the bed's services that pods need (moto's S3), from pods and
  from the host alike, so one S3 endpoint URL works in a pod's config blob and in the test that pushes.

The first only for packets coming in on our bridge (``route_localnet`` on that bridge lets them reach loopback).
One node per machine: the bridge and the nat chain have fixed names.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .node_progress import NodeError

BRIDGE = "vbnode0"
SUBNET = "10.244.0.0/24"
GATEWAY = "10.244.0.1"  # the host on the bridge; also the node's InternalIP
KUBERNETES_SERVICE = ("10.0.0.1", 443)  # first IP of the bed's service range, see components.py
CHAIN = "VAULTBUNDLE-NODE"
_JUMPS = (("PREROUTING", "-i", BRIDGE), ("OUTPUT", "-d", GATEWAY))  # from pods; from the host to the gateway


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _nat(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run("iptables", "-w", "-t", "nat", *args, check=check)


def network() -> dict[str, str]:
    return {"bridge": BRIDGE, "subnet": SUBNET, "gateway": GATEWAY}


def set_up(apiserver_port: int, host_ports: list[int]) -> None:
    """Create the bridge and (re)write our nat chain; idempotent."""
    if _run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    if GATEWAY not in _run("ip", "-4", "addr", "show", "dev", BRIDGE).stdout:
        _run("ip", "addr", "add", f"{GATEWAY}/{SUBNET.split('/')[1]}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet").write_text("1\n")
    if _nat("-L", CHAIN, "-n", check=False).returncode != 0:
        _nat("-N", CHAIN)
    _nat("-F", CHAIN)
    for hook in _JUMPS:
        if _nat("-C", *hook, "-j", CHAIN, check=False).returncode != 0:
            _nat("-A", *hook, "-j", CHAIN)
    service_ip, service_port = KUBERNETES_SERVICE
    rules = [(service_ip, service_port, apiserver_port)] + [(GATEWAY, port, port) for port in host_ports]
    for destination, port, target in rules:
        _nat("-A", CHAIN, "-d", destination, "-p", "tcp", "--dport", str(port), "-j", "DNAT",
             "--to-destination", f"127.0.0.1:{target}")  # fmt: skip


def tear_down() -> list[str]:
    """Remove the chain and the bridge; returns what could not be removed (nothing when all went well)."""
    problems = []
    for hook in _JUMPS:
        while _nat("-D", *hook, "-j", CHAIN, check=False).returncode == 0:
            pass
    if _nat("-L", CHAIN, "-n", check=False).returncode == 0:
        for args in (("-F", CHAIN), ("-X", CHAIN)):
            result = _nat(*args, check=False)
            if result.returncode != 0:
                problems.append(f"iptables {' '.join(args)}: {result.stderr.strip()}")
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        result = _run("ip", "link", "del", BRIDGE, check=False)
        if result.returncode != 0:
            problems.append(f"ip link del {BRIDGE}: {result.stderr.strip()}")
    return problems
