"""The chart's RBAC is enough, and no more: the operator runs as the chart's own ServiceAccount.

The chart is rendered and applied to the real kube-apiserver (cluster-wide with `helm install`, namespaced with
`helm template | kubectl apply --server-side`); no pod runs (there is no kubelet). The operator then runs as a
local process whose only credential is a token issued for the chart's ServiceAccount (TokenRequest), and a
full VaultBundle sync must succeed with no 403 anywhere: not in the operator's log, not in the apiserver's
audit log. In namespaced mode the same identity must be refused Secrets in a namespace it does not watch.

The operator never streams every Secret: the audit log shows that each of its Secret list/watch requests
carries a label selector (its own targets, or sources labelled `vaultbundle.io/source=true`). A labelled source
Secret's change resyncs at once (refreshInterval 1h); an unlabelled one is not seen by the watch but is picked up
by the next refresh. Token minting works only for the ServiceAccounts listed in `rbac.serviceAccountTokens`.

As in the chart's Deployment, the operator keeps its digest key in a Secret it creates in the release namespace;
a restart reuses it and rewrites nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from tests.conftest import REPO
from tests.e2e.helpers import http_get, metric_sum, wait_for

from vaultbundle import bundles, secretwatch
from vaultbundle.bundles import Layout
from vaultbundle.crypto import configblob
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.pool import CryptoPool
from vaultbundle.remote import S3Objects

pytestmark = pytest.mark.testbed
CHART = REPO / "charts" / "vaultbundle-operator"
PASSPHRASE = "chart-rbac-passphrase-0123456789"
CANARY = "CANARY-" + uuid.uuid4().hex
SOURCE_SELECTOR = "labelSelector=vaultbundle.io%2Fsource%3Dtrue"
MANAGED_SELECTOR = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dvaultbundle"
# What kopf and our own client print when the apiserver refuses a request.
DENIED = re.compile(r"forbidden|not enough permissions|HTTP 403|code: 403|'code': 403|\"code\": 403", re.IGNORECASE)


def run(*command: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command[:4])} … failed ({result.returncode}): {result.stderr}{result.stdout}")
    return result


def kubectl(testbed: dict[str, str], *args: str, stdin: str | None = None, check: bool = True) -> str:
    return run(testbed["KUBECTL"], "--kubeconfig", testbed["KUBECONFIG"], *args, stdin=stdin, check=check).stdout


def helm(testbed: dict[str, str], *args: str) -> str:
    return run(testbed["HELM"], "--kubeconfig", testbed["KUBECONFIG"], *args).stdout


@pytest.fixture(scope="module")
def admin(testbed: dict[str, str]) -> k8s.ApiClient:
    # the CRD from the chart's own crds/ (byte-identical to the repo's, see tests/unit/test_chart.py)
    kubectl(testbed, "apply", "--server-side", "-f", str(CHART / "crds"))
    kubectl(testbed, "wait", "--for=condition=Established", "crd/vaultbundles.vaultbundle.io", "--timeout=30s")
    return k8s_config.new_client_from_config(config_file=testbed["KUBECONFIG"])


def token_kubeconfig(testbed: dict[str, str], namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig whose only credential is a TokenRequest token for the ServiceAccount (not the admin)."""
    token = kubectl(testbed, "-n", namespace, "create", "token", account, "--duration=1h").strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "bed",
                "cluster": {"server": testbed["KUBE_APISERVER_URL"], "certificate-authority": testbed["KUBE_CA_FILE"]},
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "bed", "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class Operator:
    process: subprocess.Popen[bytes]
    log: Path
    port: int

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def chart_key(system: str, account: str) -> dict[str, str]:
    """What the chart's Deployment sets when it mounts no digest key: its namespace and the key Secret's name."""
    return {"POD_NAMESPACE": system, "VAULTBUNDLE_DIGEST_KEY_SECRET": f"{account}-digest-key"}


def start_operator(kubeconfig: Path, digest_key: Path | dict[str, str], log: Path, *scope: str) -> Operator:
    """*digest_key*: a key file (`--digest-key-file`), or the chart's environment for an operator-kept key."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # nothing of the admin's identity leaks in: no in-cluster variables, only the token kubeconfig
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "KUBECONFIG", "POD_NAMESPACE"))}
    env |= {"KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "vaultbundle.cli", "run", *scope, "--kubeconfig", str(kubeconfig)]
    command += ["--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--min-refresh-interval", "1s"]
    command += ["--workers", "1", "--verbose", "--egress-allow-local"]  # the test bed listens on loopback
    if isinstance(digest_key, Path):
        command += ["--digest-key-file", str(digest_key)]
    else:
        env |= digest_key
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    operator = Operator(process, log, port)
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/readyz") == "ready\n", "the operator's /readyz", timeout=60)
    except BaseException:
        stop_operator(operator)
        raise
    return operator


def stop_operator(operator: Operator) -> None:
    operator.process.terminate()
    try:
        operator.process.wait(20)
    except subprocess.TimeoutExpired:
        operator.process.kill()
        operator.process.wait()


@dataclass
class Scenario:
    """A namespace with a bucket, the two source Secrets and a pushed bundle (written as the admin)."""

    testbed: dict[str, str]
    admin: k8s.ApiClient
    ns: str
    labelled: bool = True  # source Secrets carry vaultbundle.io/source=true (the documented setup)
    refresh: str = "1s"
    core: k8s.CoreV1Api = field(init=False)
    custom: k8s.CustomObjectsApi = field(init=False)

    def __post_init__(self) -> None:
        self.core, self.custom = k8s.CoreV1Api(self.admin), k8s.CustomObjectsApi(self.admin)
        endpoint = self.testbed["AWS_ENDPOINT_URL"]
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.testbed["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.testbed["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket=self.ns)
        self.config = BootstrapConfig(
            endpoint=endpoint,
            region="us-east-1",
            bucket=self.ns,
            access_key_id=self.testbed["AWS_ACCESS_KEY_ID"],
            secret_access_key=self.testbed["AWS_SECRET_ACCESS_KEY"],
            prefix="web/prod/",
            env="prod",
            salt="NvTGExRJ8+Kn8dwdXrPv0w",
            iterations=600_000,
        )
        for name, data in (
            ("web-vsync", {"config": configblob.encode(self.config) + "\n"}),
            ("web-passphrase", {"passphrase": PASSPHRASE}),
        ):
            labels = {"vaultbundle.io/source": "true"} if self.labelled else {}
            self.core.create_namespaced_secret(
                self.ns, {"metadata": {"name": name, "labels": labels}, "stringData": data}
            )

    def push(self, files: dict[str, bytes]) -> str:
        pool = CryptoPool(workers=0)
        try:
            pointer = bundles.push(S3Objects(self.config), self.config, PASSPHRASE, pool, files, layout=Layout.CLI)
        finally:
            pool.close()
        return pointer.timestamp

    def apply(self, name: str, target: dict[str, Any], **spec: Any) -> None:
        """A VaultBundle with one kubernetesSecret target `app`; *spec* adds or replaces spec fields."""
        body = {
            "apiVersion": "vaultbundle.io/v1alpha1",
            "kind": "VaultBundle",
            "metadata": {"name": name},
            "spec": {
                "source": {"configSecretRef": {"name": "web-vsync"}, "passphraseSecretRef": {"name": "web-passphrase"}},
                "refreshInterval": self.refresh,
                "targets": [{"name": "app", "kubernetesSecret": target}],
                **spec,
            },
        }
        self.custom.create_namespaced_custom_object("vaultbundle.io", "v1alpha1", self.ns, "vaultbundles", body)

    def patch_target(self, name: str, target: dict[str, Any]) -> None:
        vb = self.vb(name)
        vb["spec"]["targets"][0]["kubernetesSecret"] = target
        self.custom.replace_namespaced_custom_object("vaultbundle.io", "v1alpha1", self.ns, "vaultbundles", name, vb)

    def vb(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "vaultbundle.io", "v1alpha1", self.ns, "vaultbundles", name
        )
        return result

    def reason(self, name: str) -> str:
        conditions = self.vb(name).get("status", {}).get("conditions", [])
        return str(next((c.get("reason", "") for c in conditions if c["type"] == "Ready"), ""))

    def secret(self, name: str) -> k8s.V1Secret | None:
        try:
            return self.core.read_namespaced_secret(name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def data(self, name: str) -> dict[str, str] | None:
        secret = self.secret(name)
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def set_passphrase(self, passphrase: str) -> None:
        self.core.patch_namespaced_secret("web-passphrase", self.ns, {"stringData": {"passphrase": passphrase}})

    def events(self) -> set[tuple[str, str]]:
        return {(e.type, e.reason) for e in self.core.list_namespaced_event(self.ns).items}


def create_namespace(admin: k8s.ApiClient, name: str) -> str:
    k8s.CoreV1Api(admin).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture
def namespaces(admin: k8s.ApiClient) -> Iterator[Callable[[str], str]]:
    made: list[str] = []

    def make(prefix: str) -> str:
        made.append(create_namespace(admin, f"{prefix}-{uuid.uuid4().hex[:6]}"))
        return made[-1]

    yield make
    for name in made:
        k8s.CoreV1Api(admin).delete_namespace(name)


def audit_entries(
    testbed: dict[str, str], username: str, stages: tuple[str, ...] = ("ResponseComplete",)
) -> list[dict[str, Any]]:
    """The apiserver's audit entries (Metadata level: writes, and Secret list/watch by ServiceAccounts) made by
    *username*. A watch still open has only its ResponseStarted entry."""
    entries = []
    with open(testbed["KUBE_AUDIT_LOG"], encoding="utf-8") as log:
        for line in log:
            entry = json.loads(line)
            if entry.get("stage") in stages and entry.get("user", {}).get("username") == username:
                entries.append(entry)
    return entries


def assert_secret_reads_are_label_selected(testbed: dict[str, str], username: str, scope: set[str]) -> None:
    """Every Secret list/watch the operator made names one of its two label selectors; both were used, in
    every namespace of *scope* (or cluster-wide for an empty *scope*)."""
    reads = [
        e
        for e in audit_entries(testbed, username, ("ResponseStarted", "ResponseComplete"))
        if e["verb"] in ("list", "watch") and e["objectRef"]["resource"] == "secrets"
    ]
    unselected = [e["requestURI"] for e in reads if "labelSelector=" not in e["requestURI"]]
    assert not unselected, f"Secret list/watch without a label selector: {unselected}"
    seen = {
        (e["verb"], e["objectRef"].get("namespace", ""), sel)
        for e in reads
        for sel in (SOURCE_SELECTOR, MANAGED_SELECTOR)
        if sel in e["requestURI"]
    }
    for namespace in scope or {""}:
        for selector in (SOURCE_SELECTOR, MANAGED_SELECTOR):
            assert {("list", namespace, selector), ("watch", namespace, selector)} <= seen, (namespace, selector, seen)
    assert all(e["responseStatus"]["code"] == 200 for e in reads)


def full_sync(scenario: Scenario) -> None:
    """Create (server-side apply on a missing Secret), events, status, then a type change (delete + apply)."""
    first = scenario.push({".env.prod": f"API_KEY={CANARY}\ntls.crt=CERT\ntls.key=KEY\n".encode()})
    scenario.apply("web", {"name": "web-env"})
    expected = {"API_KEY": CANARY, "tls.crt": "CERT", "tls.key": "KEY"}
    wait_for(lambda: scenario.data("web-env") == expected, "the target Secret to hold the bundle")
    wait_for(lambda: scenario.reason("web") == "Synced", "Ready=Synced")
    status = scenario.vb("web")["status"]
    assert status["bundle"]["timestamp"] == first
    assert status["bundle"]["digest"].startswith("hmac-sha256:")
    wait_for(lambda: ("Normal", "Applied") in scenario.events(), "the Applied Event")
    # a Secret's type is immutable: the operator deletes and re-applies it
    before = scenario.secret("web-env")
    assert before is not None and before.type == "Opaque"
    uid = before.metadata.uid
    scenario.patch_target("web", {"name": "web-env", "type": "kubernetes.io/tls"})

    def replaced() -> bool:
        secret = scenario.secret("web-env")
        return secret is not None and secret.type == "kubernetes.io/tls" and secret.metadata.uid != uid

    wait_for(replaced, "the Secret re-created with type kubernetes.io/tls")
    wait_for(lambda: scenario.reason("web") == "Synced", "Ready=Synced after the type change")
    assert scenario.data("web-env") == expected


def assert_no_denials(testbed: dict[str, str], operator: Operator, username: str) -> set[tuple[str, str]]:
    text = operator.text()
    # a write into a namespace that a test is deleting is refused as NamespaceTerminating: not an RBAC denial
    denied = [line for line in text.splitlines() if DENIED.search(line) and "NamespaceTerminating" not in line]
    assert not denied, "the operator was refused something:\n" + "\n".join(denied[:10])
    assert CANARY not in text and PASSPHRASE not in text
    entries = audit_entries(testbed, username)
    # authorization refusals only: a namespace being deleted (403 NamespaceTerminating, then 404) is no denial
    refused = [
        e
        for e in entries
        if e.get("responseStatus", {}).get("code") in (401, 403)
        and "being terminated" not in e.get("responseStatus", {}).get("message", "")
    ]
    assert not refused, f"the apiserver refused writes: {[(e['verb'], e['objectRef']) for e in refused]}"
    writes = set()
    for entry in entries:
        if entry["verb"] in ("list", "watch", "get"):
            continue
        ref = entry["objectRef"]
        writes.add((entry["verb"], ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")))
    return writes


def cycles(operator: Operator) -> float:
    return metric_sum(http_get(f"http://127.0.0.1:{operator.port}/metrics"), "vaultbundle_syncs_total")


def can_i(testbed: dict[str, str], user: str, verb: str, resource: str, namespace: str) -> bool:
    result = run(
        testbed["KUBECTL"],
        "--kubeconfig",
        testbed["KUBECONFIG"],
        "auth",
        "can-i",
        verb,
        resource,
        "-n",
        namespace,
        f"--as={user}",
        check=False,
    )
    return result.stdout.strip() == "yes"


def source_changes_resync(testbed: dict[str, str], admin: k8s.ApiClient, namespaces: Callable[[str], str]) -> None:
    """Labelled sources: a change is seen at once (the watch). Unlabelled: the watch never sees it, the next
    refresh does (polling by name)."""
    labelled = Scenario(testbed, admin, namespaces("vblab"), labelled=True, refresh="1h")
    hidden = Scenario(testbed, admin, namespaces("vbunl"), labelled=False, refresh="1h")
    polled = Scenario(testbed, admin, namespaces("vbpoll"), labelled=False, refresh="4s")
    for scenario in (labelled, hidden, polled):
        scenario.push({".env.prod": f"API_KEY={CANARY}\n".encode()})
        scenario.apply("web", {"name": "web-env"})
    for scenario in (labelled, hidden, polled):
        wait_for(lambda s=scenario: s.reason("web") == "Synced", f"{scenario.ns} Synced")
    changed = time.monotonic()
    for scenario in (labelled, hidden, polled):
        scenario.set_passphrase("not-the-passphrase")
    # "at once": within seconds (a full cycle with a fresh PBKDF2 derivation), against a 1h refresh
    wait_for(lambda: labelled.reason("web") == "WrongPassphrase", "the labelled source's change", timeout=10)
    wait_for(lambda: polled.reason("web") == "WrongPassphrase", "the polled source's change", timeout=15)
    # refreshInterval 1h and no label: the watch never saw the change, and no refresh has come yet
    time.sleep(max(0.0, 3 - (time.monotonic() - changed)))
    assert hidden.reason("web") == "Synced"
    for scenario in (labelled, hidden, polled):
        assert scenario.data("web-env") == {"API_KEY": CANARY}  # a wrong passphrase writes nothing


def test_cluster_wide_install_syncs_with_only_the_charts_rbac(
    testbed: dict[str, str], admin: k8s.ApiClient, namespaces: Callable[[str], str], tmp_path: Path
) -> None:
    system = namespaces("vbop")
    release = f"vb{uuid.uuid4().hex[:6]}"
    notes = helm(testbed, "install", release, str(CHART), "-n", system, "--set", "clusterWide=true")
    assert "kubectl -n web get vb" in notes and "Leader election is on" in notes
    account = f"{release}-vaultbundle-operator"
    user = f"system:serviceaccount:{system}:{account}"
    core = k8s.CoreV1Api(admin)
    helm(testbed, "upgrade", release, str(CHART), "-n", system, "--reuse-values", "--set", "operator.verbose=true")
    key_name = f"{account}-digest-key"
    assert key_name not in {s.metadata.name for s in core.list_namespaced_secret(system).items}  # the operator's

    scenario = Scenario(testbed, admin, namespaces("vbapp"))
    for verb in ("get", "list", "watch", "create", "patch", "delete"):
        assert can_i(testbed, user, verb, "secrets", scenario.ns), verb
    for verb in ("update", "deletecollection"):
        assert not can_i(testbed, user, verb, "secrets", scenario.ns), verb
    # get: a drift repair reads the owner before it recreates a deleted Secret; nothing else is read by name
    assert can_i(testbed, user, "get", "vaultbundles.vaultbundle.io", scenario.ns)
    assert not can_i(testbed, user, "update", "vaultbundles.vaultbundle.io", scenario.ns)
    kubeconfig = token_kubeconfig(testbed, system, account, tmp_path / "sa.kubeconfig")

    def start(log: str) -> Operator:  # as the chart's Deployment runs it: leader election in the release namespace
        return start_operator(
            kubeconfig,
            chart_key(system, account),
            tmp_path / log,
            "--all-namespaces",
            "--leader-election-namespace",
            system,
        )

    operator = start("operator.log")
    try:
        full_sync(scenario)
        lease = k8s.CoordinationV1Api(admin).read_namespaced_lease("vaultbundle-operator", system)
        assert lease.spec.holder_identity  # the chart's Lease RBAC lets it take the Lease
        # the managed-Secret watch delivered our own target's changes to the drift-repair hook
        assert f"managed Secret {scenario.ns}/web-env changed (owner uid" in operator.text()
        source_changes_resync(testbed, admin, namespaces)
        time.sleep(2)  # a few idle refresh cycles, still no denial
    finally:
        stop_operator(operator)
    assert_secret_reads_are_label_selected(testbed, user, set())
    writes = assert_no_denials(testbed, operator, user)
    assert ("create", "secrets") in writes  # the digest key Secret, created on first start

    # a restart reuses the key Secret: its first full cycle (nothing cached) rewrites no annotation
    key_version = core.read_namespaced_secret(key_name, system).metadata.resource_version
    target = scenario.secret("web-env")
    assert target is not None
    annotations = dict(target.metadata.annotations)
    restarted = start("restarted.log")
    try:
        wait_for(lambda: cycles(restarted) >= 3, "three sync cycles after the restart")
    finally:
        stop_operator(restarted)
    after = scenario.secret("web-env")
    assert after is not None and after.metadata.resource_version == target.metadata.resource_version
    assert dict(after.metadata.annotations) == annotations
    assert core.read_namespaced_secret(key_name, system).metadata.resource_version == key_version
    assert_no_denials(testbed, restarted, user)

    # the negative control: a lost key means a new one, and the restart rewrites the digest annotation once
    core.delete_namespaced_secret(key_name, system)
    rekeyed = start("rekeyed.log")
    try:
        wait_for(
            lambda: (
                (scenario.secret("web-env") or target).metadata.resource_version != target.metadata.resource_version
            ),
            "the content-digest annotation rewritten under a new key",
        )
    finally:
        stop_operator(rekeyed)
    rewritten = scenario.secret("web-env")
    assert rewritten is not None and scenario.data("web-env") == {
        "API_KEY": CANARY,
        "tls.crt": "CERT",
        "tls.key": "KEY",
    }
    digest = "vaultbundle.io/content-digest"
    assert rewritten.metadata.annotations[digest] != annotations[digest]
    writes |= assert_no_denials(testbed, rekeyed, user)
    assert writes <= {
        ("create", "secrets"),
        ("patch", "secrets"),
        ("delete", "secrets"),
        ("patch", "vaultbundles/status"),
        ("create", "events"),
    }, writes
    assert {
        ("patch", "secrets"),
        ("delete", "secrets"),
        ("patch", "vaultbundles/status"),
        ("create", "events"),
    } <= writes

    # uninstall: the CRD (crds/) and the written Secret (deletionPolicy Retain) stay
    helm(testbed, "uninstall", release, "-n", system)
    assert kubectl(testbed, "get", "crd", "vaultbundles.vaultbundle.io", "-o", "name").strip()
    assert scenario.data("web-env") is not None


def test_namespaced_install_is_confined_to_its_namespaces(
    testbed: dict[str, str], admin: k8s.ApiClient, namespaces: Callable[[str], str], tmp_path: Path
) -> None:
    system, watched, also, other = namespaces("vbop"), namespaces("vbapp"), namespaces("vbapp2"), namespaces("other")
    release = f"vb{uuid.uuid4().hex[:6]}"
    rendered = helm(
        testbed,
        "template",
        release,
        str(CHART),
        "-n",
        system,
        "--kube-version",
        "1.34.0",
        "--set",
        f"watchNamespaces={{{watched},{also}}}",
        "--set",
        f"rbac.serviceAccountTokens[0].namespace={watched}",
        "--set",
        "rbac.serviceAccountTokens[0].name=vault-writer",
        "--set",
        "rbac.storeSecrets={vault-token}",  # a ClusterTargetStore's Secret in the (unwatched) release namespace
    )
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered) if doc}
    assert {"Role", "RoleBinding", "ClusterRole"} <= kinds
    kubectl(testbed, "apply", "--server-side", "-f", "-", stdin=rendered)
    account = f"{release}-vaultbundle-operator"
    user = f"system:serviceaccount:{system}:{account}"

    # RBAC says: Secrets in the watched namespaces, nothing in any other
    for namespace in (watched, also):
        assert can_i(testbed, user, "get", "secrets", namespace)
    for verb in ("get", "list", "watch", "patch", "delete", "create"):
        assert not can_i(testbed, user, verb, "secrets", other), verb
    # in its own namespace: get only its digest key Secret, and create it; nothing else
    assert can_i(testbed, user, "get", f"secrets/{account}-digest-key", system)
    assert can_i(testbed, user, "create", "secrets", system)
    for verb in ("get", "list", "watch", "patch", "delete"):
        assert not can_i(testbed, user, verb, "secrets", system), verb
    assert not can_i(testbed, user, "get", "secrets/web-passphrase", system)
    assert not can_i(testbed, user, "list", "secrets", "default")
    # rbac.storeSecrets: get on exactly the named store Secret of its own namespace, no other verb
    assert can_i(testbed, user, "get", "secrets/vault-token", system)
    for verb in ("patch", "delete", "update"):
        assert not can_i(testbed, user, verb, "secrets/vault-token", system), verb

    scenario = Scenario(testbed, admin, watched)
    outside = Scenario(testbed, admin, other)
    kubeconfig = token_kubeconfig(testbed, system, account, tmp_path / "sa.kubeconfig")
    # a real GET with the operator's token: 403 outside, 200 inside
    as_operator = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))
    with pytest.raises(ApiException) as refused:
        as_operator.read_namespaced_secret("web-passphrase", other)
    assert refused.value.status == 403
    assert as_operator.read_namespaced_secret("web-passphrase", watched).metadata.name == "web-passphrase"
    core = k8s.CoreV1Api(admin)
    for name in ("vault-token", "not-a-store-secret"):
        core.create_namespaced_secret(system, {"metadata": {"name": name}, "stringData": {"token": "t"}})
    assert as_operator.read_namespaced_secret("vault-token", system).metadata.name == "vault-token"
    with pytest.raises(ApiException) as refused:
        as_operator.read_namespaced_secret("not-a-store-secret", system)
    assert refused.value.status == 403
    # token minting: only the listed ServiceAccount (resourceNames), nowhere else
    for namespace, name in ((watched, "vault-writer"), (watched, "other-sa"), (also, "vault-writer")):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    request = {"spec": {"audiences": ["vault"], "expirationSeconds": 600}}
    minted = as_operator.create_namespaced_service_account_token("vault-writer", watched, request)
    assert minted.status.token
    assert as_operator.read_namespaced_service_account("vault-writer", watched).metadata.name == "vault-writer"
    for namespace, name in ((watched, "other-sa"), (also, "vault-writer")):
        with pytest.raises(ApiException) as refused:
            as_operator.create_namespaced_service_account_token(name, namespace, request)
        assert refused.value.status == 403, (namespace, name)
        with pytest.raises(ApiException) as refused:
            as_operator.read_namespaced_service_account(name, namespace)
        assert refused.value.status == 403, (namespace, name)

    operator = start_operator(
        kubeconfig, chart_key(system, account), tmp_path / "operator.log", "--namespace", watched, "--namespace", also
    )
    try:
        outside.push({".env.prod": f"API_KEY={CANARY}\n".encode()})
        outside.apply("web", {"name": "web-env"})
        full_sync(scenario)
        time.sleep(2)
        # the VaultBundle in the unwatched namespace is never touched
        assert "status" not in outside.vb("web") and outside.secret("web-env") is None
    finally:
        stop_operator(operator)
    assert_secret_reads_are_label_selected(testbed, user, {watched, also})
    writes = assert_no_denials(testbed, operator, user)
    assert {
        ("patch", "secrets"),
        ("delete", "secrets"),
        ("patch", "vaultbundles/status"),
        ("create", "events"),
    } <= writes
    outside_watched = [
        e for e in audit_entries(testbed, user) if e["objectRef"].get("namespace") not in (watched, also)
    ]
    # outside the watched namespaces only one write: its digest key Secret, created once in its own namespace
    assert [(e["verb"], e["objectRef"]["resource"], e["objectRef"]["namespace"]) for e in outside_watched] == [
        ("create", "secrets", system)
    ]


def test_missing_discovery_rbac_shows_in_the_log(
    testbed: dict[str, str], admin: k8s.ApiClient, namespaces: Callable[[str], str], tmp_path: Path
) -> None:
    """The negative control for the log check above: without kopf's discovery rules its 403s do show."""
    system, watched = namespaces("vbop"), namespaces("vbapp")
    release = f"vb{uuid.uuid4().hex[:6]}"
    rendered = helm(
        testbed,
        "template",
        release,
        str(CHART),
        "-n",
        system,
        "--kube-version",
        "1.34.0",
        "--set",
        f"watchNamespaces={{{watched}}}",
        "--set",
        "rbac.kopfDiscovery=false",
    )
    kubectl(testbed, "apply", "--server-side", "-f", "-", stdin=rendered)
    account = f"{release}-vaultbundle-operator"
    kubeconfig = token_kubeconfig(testbed, system, account, tmp_path / "sa.kubeconfig")
    digest_key = tmp_path / "digest-key"
    digest_key.write_bytes(b"0123456789abcdef0123456789abcdef")
    operator = start_operator(kubeconfig, digest_key, tmp_path / "operator.log", "--namespace", watched)
    try:
        wait_for(lambda: len(DENIED.findall(operator.text())) >= 2, "kopf's 403s in the log", timeout=15)
    finally:
        stop_operator(operator)
    text = operator.text()
    assert 'cannot list resource "namespaces"' in text
    assert 'cannot list resource "customresourcedefinitions"' in text


def test_secret_watch_streams_metadata_only(
    testbed: dict[str, str], admin: k8s.ApiClient, namespaces: Callable[[str], str]
) -> None:
    """What the real apiserver sends the operator's watch of its target Secrets: PartialObjectMetadata, never
    `data` (the labelled sources' watch asks for whole objects: their values are what its cache keeps)."""
    ns = namespaces("vbmeta")
    core = k8s.CoreV1Api(admin)
    loop = asyncio.new_event_loop()
    try:
        watch = secretwatch.SecretWatch(admin, secretwatch.MANAGED_SELECTOR, lambda *_: None, loop, namespace=ns)
        labels = {"app.kubernetes.io/managed-by": "vaultbundle"}
        core.create_namespaced_secret(
            ns, {"metadata": {"name": "before", "labels": labels}, "stringData": {"k": CANARY}}
        )
        core.create_namespaced_secret(ns, {"metadata": {"name": "unlabelled"}, "stringData": {"k": CANARY}})
        listed = json.loads(watch._request(secretwatch._LIST_ACCEPT).data)
        assert listed["kind"] == "PartialObjectMetadataList"
        assert [item["metadata"]["name"] for item in listed["items"]] == ["before"]
        assert CANARY not in json.dumps(listed)
        stream = watch._stream(resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=3)
        core.create_namespaced_secret(
            ns, {"metadata": {"name": "after", "labels": labels}, "stringData": {"k": CANARY}}
        )
        core.create_namespaced_secret(ns, {"metadata": {"name": "unlabelled-2"}, "stringData": {"k": CANARY}})
        raw = stream.read().decode()  # the server ends the watch after timeoutSeconds
        stream.release_conn()
    finally:
        loop.close()
    events = [json.loads(line) for line in raw.splitlines() if line.strip()]
    changed = [e for e in events if e["type"] != "BOOKMARK"]
    assert [(e["type"], e["object"]["kind"], e["object"]["metadata"]["name"]) for e in changed] == [
        ("ADDED", "PartialObjectMetadata", "after")
    ]
    assert CANARY not in raw and '"data"' not in raw
