"""The operator image in real pods: `helm install` of the chart on the test bed's kubelet node.

Needs `make test-node` (the bed with NODE=1, and `make image`): containerd + runc run the image built from the
root Dockerfile, the kubelet mounts the chart's ServiceAccount token, digest key Secret and /tmp emptyDir,
probes /healthz and /readyz, and the pods reach the kube-apiserver through the `kubernetes` Service address and
S3 (moto) through the node's bridge. Checked: both replicas become Ready, the leader syncs a VaultBundle to a
Secret (the apiserver's audit log shows the write coming from the leader pod's IP), a `kubectl delete pod` of
the leader hands the Lease to another pod which syncs the next push (written from that pod's IP), the
container process runs as 65532 with no capabilities and a read-only root filesystem (read from /proc of the
real process, and tried with `kubectl exec`), and `kubectl logs` (debug level) carry neither the bundle's canary
value nor the passphrase.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from tests.conftest import REPO
from tests.e2e.helpers import wait_for
from tests.e2e.test_chart_rbac import PASSPHRASE, Scenario, audit_entries, create_namespace, helm, kubectl

pytestmark = [pytest.mark.testbed, pytest.mark.node]
CHART = REPO / "charts" / "vaultbundle-operator"
CANARY = "NODE-CANARY-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def node_bed(testbed: dict[str, str]) -> dict[str, str]:
    """The bed's env with the node's values; skipped without the node unless VAULTBUNDLE_REQUIRE_NODE=1."""
    if "NODE_NAME" not in testbed:
        message = "the test bed runs no kubelet node: make test-node (or make testbed-up NODE=1 && make image)"
        if os.environ.get("VAULTBUNDLE_REQUIRE_NODE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    images = ctr(testbed, "images", "ls", "--quiet").split()
    if testbed["NODE_OPERATOR_IMAGE"] not in images:
        pytest.fail(f"{testbed['NODE_OPERATOR_IMAGE']} is not in the node's containerd: run make image")
    return testbed


@pytest.fixture(scope="module")
def admin(node_bed: dict[str, str]) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=node_bed["KUBECONFIG"])


@pytest.fixture
def system_and_app(admin: k8s.ApiClient) -> Iterator[tuple[str, str]]:
    """The release namespace and the watched one (it must exist before the install), deleted afterwards."""
    names = [create_namespace(admin, f"{prefix}-{uuid.uuid4().hex[:6]}") for prefix in ("vbnode", "vbapp")]
    yield names[0], names[1]
    for name in names:
        k8s.CoreV1Api(admin).delete_namespace(name)


def ctr(testbed: dict[str, str], *args: str) -> str:
    argv = ["ctr", "--address", testbed["NODE_CONTAINERD_ADDRESS"], "--namespace", "k8s.io", *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, f"ctr {' '.join(args)}: {result.stderr}"
    return result.stdout


class Release:
    """The chart installed into one namespace, with helpers to look at its pods."""

    def __init__(self, testbed: dict[str, str], admin: k8s.ApiClient, namespace: str, watched: str) -> None:
        self.testbed, self.namespace = testbed, namespace
        self.name = f"vb{uuid.uuid4().hex[:6]}"
        self.core = k8s.CoreV1Api(admin)
        self.coordination = k8s.CoordinationV1Api(admin)
        repository, tag = testbed["NODE_OPERATOR_IMAGE"].rsplit(":", 1)
        helm(
            testbed, "install", self.name, str(CHART), "-n", namespace,
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", "image.pullPolicy=Never", "--set", "replicas=2", "--set", f"watchNamespaces={{{watched}}}",
            "--set", "leaderElection.leaseDuration=4s", "--set", "operator.verbose=true",
            "--set", "operator.minRefreshInterval=1s",
        )  # fmt: skip
        self.selector = f"app.kubernetes.io/instance={self.name}"

    def pods(self) -> list[k8s.V1Pod]:
        items = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        return [p for p in items if p.metadata.deletion_timestamp is None]

    def ready_pods(self) -> list[k8s.V1Pod]:
        def ready(pod: k8s.V1Pod) -> bool:
            conditions = pod.status.conditions or []
            return any(c.type == "Ready" and c.status == "True" for c in conditions)

        return [p for p in self.pods() if ready(p)]

    def leader(self) -> str:
        """The pod whose operator holds the Lease ('' while nobody does). Identity = <hostname>-<pid>-<hex>."""
        try:
            lease = self.coordination.read_namespaced_lease("vaultbundle-operator", self.namespace)
        except k8s.ApiException:
            return ""
        holder = lease.spec.holder_identity or ""
        return next((p.metadata.name for p in self.pods() if holder.startswith(p.metadata.name + "-")), "")

    def logs(self, pod: str) -> str:
        return kubectl(self.testbed, "-n", self.namespace, "logs", pod)

    def secret_writers(self, namespace: str) -> list[str]:
        """Source IPs of this release's Secret writes in *namespace* (audit log): which pod wrote, in order.
        The pods reach the apiserver through DNAT without SNAT, so the apiserver sees each pod's own IP."""
        user = f"system:serviceaccount:{self.namespace}:{self.name}-vaultbundle-operator"
        return [
            e["sourceIPs"][0]
            for e in audit_entries(self.testbed, user)
            if e["verb"] in ("create", "patch", "update", "delete")
            and e["objectRef"].get("resource") == "secrets"
            and e["objectRef"].get("namespace") == namespace
        ]

    def pod_ip(self, name: str) -> str:
        return str(self.core.read_namespaced_pod(name, self.namespace).status.pod_ip)


def container_pid(testbed: dict[str, str], pod: k8s.V1Pod) -> int:
    """The host PID of the pod's container process, from containerd's task list (TASK PID STATUS)."""
    container_id = pod.status.container_statuses[0].container_id
    assert container_id.startswith("containerd://"), container_id
    for line in ctr(testbed, "tasks", "ls").splitlines()[1:]:
        task, pid, status = line.split()
        if task == container_id.removeprefix("containerd://") and status == "RUNNING":
            return int(pid)
    pytest.fail(f"no running task for {container_id}")


def mount_options(pid: int) -> dict[str, set[str]]:
    """Mount point → its per-mount options, as the container process sees them."""
    result = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        result[fields[4]] = set(fields[5].split(","))
    return result


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict (Uid, Gid, CapEff, NoNewPrivs, Seccomp, ...)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def test_the_image_runs_the_chart_on_a_real_node(
    node_bed: dict[str, str], admin: k8s.ApiClient, system_and_app: tuple[str, str]
) -> None:
    testbed = node_bed
    system, app = system_and_app
    release = Release(testbed, admin, system, watched=app)
    wait_for(lambda: len(release.ready_pods()) == 2, "both operator pods Ready (readiness probe /readyz)", 180)
    for pod in release.pods():
        assert pod.spec.node_name == testbed["NODE_NAME"]
        status = pod.status.container_statuses[0]
        assert status.image.endswith(testbed["NODE_OPERATOR_IMAGE"].split("/", 1)[1]), status.image
        assert status.restart_count == 0, f"{pod.metadata.name} restarted (liveness probe /healthz?)"

    # non-root, read-only root filesystem, only /tmp writable: what the real container process has
    pod = release.ready_pods()[0]
    pid = container_pid(testbed, pod)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:3] == [b"/opt/venv/bin/vaultbundle", b"run"], argv  # the image's ENTRYPOINT (a venv script)
    status = proc_status(pid)
    assert status["Uid"].split() == ["65532"] * 4 and status["Gid"].split() == ["65532"] * 4, status
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, status  # capabilities: drop ALL
    assert status["NoNewPrivs"] == "1"  # allowPrivilegeEscalation: false
    assert status["Seccomp"] == "2"  # seccompProfile RuntimeDefault: a filter is installed
    mounts = mount_options(pid)
    assert "ro" in mounts["/"], mounts["/"]
    assert "rw" in mounts["/tmp"], mounts["/tmp"]
    assert "ro" in mounts["/etc/vaultbundle/digest-key"], mounts["/etc/vaultbundle/digest-key"]
    # and in practice (kubectl exec through the kubelet): / refuses a write, /tmp takes one, the key is readable
    probe = (
        "import errno, os\n"
        "try:\n    open('/probe', 'w')\nexcept OSError as exc:\n    print('root', errno.errorcode[exc.errno])\n"
        "open('/tmp/probe', 'w').write('x'); print('tmp ok', os.getuid())\n"
        "print('key', len(open('/etc/vaultbundle/digest-key/digest-key', 'rb').read()) >= 16)\n"
    )
    out = kubectl(testbed, "-n", release.namespace, "exec", pod.metadata.name, "--", "python", "-c", probe)
    assert out.split("\n")[:3] == ["root EROFS", "tmp ok 65532", "key True"], out

    # a VaultBundle synced by the leader: S3 through the node's bridge, the Secret through the Service address
    scenario = Scenario({**testbed, "AWS_ENDPOINT_URL": testbed["NODE_S3_ENDPOINT"]}, admin, app)
    first = scenario.push({".env.prod": f"API_KEY={CANARY}\nMODE=one\n".encode()})
    scenario.apply("web", {"name": "web-env"})
    wait_for(lambda: scenario.data("web-env") == {"API_KEY": CANARY, "MODE": "one"}, "the Secret from the pod", 90)
    wait_for(lambda: scenario.reason("web") == "Synced", "Ready=Synced")
    assert scenario.vb("web")["status"]["bundle"]["timestamp"] == first

    # kubectl delete pod of the leader: another pod takes the Lease (the standby, or the Deployment's replacement
    # pod if it asks first once the old leader lets go) and syncs the next push
    leader = wait_for(release.leader, "a leader among the pods")
    standby = next(p.metadata.name for p in release.pods() if p.metadata.name != leader)
    leader_ip = release.pod_ip(leader)
    writers = wait_for(lambda: release.secret_writers(scenario.ns), "the leader's Secret write in the audit log")
    assert set(writers) == {leader_ip}, (writers, leader_ip)  # the leader pod wrote it, nobody else did
    logs = {leader: release.logs(leader), standby: release.logs(standby)}
    kubectl(testbed, "-n", release.namespace, "delete", "pod", leader, "--wait=false")
    successor = wait_for(
        lambda: next((name for name in [release.leader()] if name and name != leader), ""),
        f"a pod other than {leader} to take the Lease over",
        90,
    )
    successor_ip = release.pod_ip(successor)
    scenario.push({".env.prod": f"API_KEY={CANARY}-2\nMODE=two\n".encode()})
    wait_for(lambda: (scenario.data("web-env") or {}).get("MODE") == "two", "the next push, from the new leader", 90)
    after = wait_for(lambda: release.secret_writers(scenario.ns)[len(writers) :], "the new leader's write (audit)")
    assert set(after) == {successor_ip}, (after, successor_ip)
    wait_for(lambda: len(release.ready_pods()) == 2, "the Deployment's replacement pod Ready", 180)

    # no value in kubectl logs (debug level), of the old leader before it went and of every pod now
    logs |= {p.metadata.name: release.logs(p.metadata.name) for p in release.pods()}
    assert any(scenario.ns in text for text in logs.values()), "the logs never name the synced VaultBundle"
    for name, text in logs.items():
        assert text.strip(), f"no logs from {name}"
        for value in (CANARY, PASSPHRASE):
            assert value not in text, f"{name}'s log contains a secret value"
