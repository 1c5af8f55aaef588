"""The Helm chart: lint, render every documented values combination, validate every object, check the schema.

Needs only the helm binary (no test bed): ``$HELM`` or the test bed's cache, which
``e2e/build/fetch-kubectl-helm.sh`` fills (idempotent). Every rendered object is validated offline against the
Kubernetes 1.34 OpenAPI schemas with ``kubernetes-validate`` (strict: unknown fields fail).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import vaultbundle
from tests.conftest import REPO

CHART = REPO / "charts" / "vaultbundle-operator"
KUBE_VERSION = "1.34.0"
FETCH = REPO / "e2e" / "build" / "fetch-kubectl-helm.sh"
CACHED_HELM = Path.home() / ".cache" / "vaultbundle-testbed" / "kubectl-helm-2.1.0" / "helm" / "helm"

# Every documented combination (values.yaml, chart README): name -> --set flags.
COMBINATIONS: dict[str, list[str]] = {
    "defaults": [],
    "cluster-wide": ["clusterWide=true"],
    "namespaced-two": ["watchNamespaces={team-a,team-b}"],
    "token-service-accounts": [
        "watchNamespaces={team-a,team-b}",
        "rbac.serviceAccountTokens[0].namespace=team-a",
        "rbac.serviceAccountTokens[0].name=vault-writer",
        "rbac.serviceAccountTokens[1].namespace=team-a",
        "rbac.serviceAccountTokens[1].name=ci-writer",
        "rbac.serviceAccountTokens[2].namespace=team-b",
        "rbac.serviceAccountTokens[2].name=vault-writer",
    ],
    "metrics-secured": [
        "metrics.tls.secretName=metrics-tls",
        "metrics.auth.tokenSecret.name=metrics-token",
        "serviceMonitor.enabled=true",
        "serviceMonitor.tlsConfig.serverName=rel-vaultbundle-operator-metrics.vb-system.svc",
        "serviceMonitor.tlsConfig.ca.secret.name=metrics-tls",
        "serviceMonitor.tlsConfig.ca.secret.key=ca.crt",
    ],
    "service-monitor": ["serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom"],
    "pdb": ["podDisruptionBudget.enabled=true"],
    "pdb-min-available": ["podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=1"],
    "network-policy": ["networkPolicy.enabled=true"],
    "rollout-restart": ["watchNamespaces={team-a,team-b}", "rbac.rolloutRestart=true"],
    "existing-digest-key": ["digestKey.existingSecret=my-digest-key", "digestKey.secretKey=key"],
    "egress-cidrs": [
        "egress.denyCIDRs={10.244.0.0/16,10.96.0.0/12}",
        "egress.allowCIDRs={10.96.12.34/32}",
    ],
    "everything": [
        "watchNamespaces={team-a,team-b}",
        "serviceMonitor.enabled=true",
        "podDisruptionBudget.enabled=true",
        "networkPolicy.enabled=true",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
        "digestKey.existingSecret=my-digest-key",
        "image.digest=sha256:" + "a" * 64,
        "operator.verbose=true",
        "operator.logFormat=text",
        "serviceAccount.annotations.example\\.com/role=vaultbundle",
        "rbac.kopfDiscovery=false",
        "rbac.rolloutRestart=true",
        "rbac.serviceAccountTokens[0].namespace=team-b",
        "rbac.serviceAccountTokens[0].name=vault-writer",
        "metrics.tls.secretName=metrics-tls",
        "metrics.auth.tokenSecret.name=metrics-token",
        "metrics.bindAddress=0.0.0.0",
    ],
}
# Kinds kubernetes-validate has no schema for (CRD-defined); checked by hand below.
NOT_BUILTIN = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def helm_binary() -> str:
    helm = os.environ.get("HELM")
    if helm and Path(helm).is_file():
        return helm
    if not CACHED_HELM.is_file():
        subprocess.run(["bash", str(FETCH)], check=True, capture_output=True, timeout=600)
    return str(CACHED_HELM)


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


def render(helm: str, *sets: str, include_crds: bool = False) -> list[dict[str, Any]]:
    command = [helm, "template", "rel", str(CHART), "--namespace", "vb-system", "--kube-version", KUBE_VERSION]
    if include_crds:
        command.append("--include-crds")
    for value in sets:
        command += ["--set", value]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_chart_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == chart["appVersion"] == vaultbundle.__version__
    assert chart["kubeVersion"] == ">=1.28.0-0"


def test_chart_crd_is_the_repo_crd() -> None:
    """crds/ at the repo root is the single source; the chart carries a byte-identical copy."""
    source = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    copied = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    fix = "run from the repo root: cp crds/*.yaml charts/vaultbundle-operator/crds/"
    assert copied == source, f"chart CRDs {copied} != repo CRDs {source}; {fix}"
    for name in source:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"charts/vaultbundle-operator/crds/{name} differs from crds/{name}; {fix}"
        )


def test_every_value_is_documented() -> None:
    """Every key in values.yaml has a comment: a comment line right above it, or a trailing one."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w]*):", line)
        if not match:
            continue
        above = lines[number - 1].strip() if number else ""
        if not above.startswith("#") and " # " not in line:
            undocumented.append(f"line {number + 1}: {match.group(2)}")
    assert not undocumented, "values.yaml keys without a comment: " + ", ".join(undocumented)


def test_schema_covers_every_value_and_rejects_unknown_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if not isinstance(value, dict) or node.get("additionalProperties") is not False:
            return
        missing = set(value) - set(node["properties"])
        assert not missing, f"{path or '.'}: values without a schema entry: {sorted(missing)}"
        for key, child in value.items():
            walk(node["properties"][key], child, f"{path}.{key}")

    assert schema["additionalProperties"] is False
    walk(schema, values, "")


def test_lint(helm: str) -> None:
    for name, sets in COMBINATIONS.items():
        command = [helm, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION]
        for value in sets:
            command += ["--set", value]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_render_and_validate(helm: str, name: str) -> None:
    objects = render(helm, *COMBINATIONS[name], include_crds=True)
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in NOT_BUILTIN:
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    kinds = {o["kind"] for o in objects}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "Service"} <= kinds


def test_defaults_are_secure(helm: str) -> None:
    objects = render(helm)
    deployment = by_kind(objects, "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert "--leader-election-namespace=$(POD_NAMESPACE)" in pod["containers"][0]["args"]
    assert {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in pod[
        "containers"
    ][0]["env"]
    # /metrics, /healthz and /readyz listen on the pod IP only (the kubelet's probes use it too)
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]
    assert "--metrics-host=$(POD_IP)" in container["args"]
    without = by_kind(render(helm, "leaderElection.enabled=false"), "Deployment")[0]
    assert without["spec"]["strategy"] == {"type": "Recreate"}  # never two operators at once without election
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is True
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]} and ctx["runAsUser"] == 65532 and ctx["runAsNonRoot"] is True
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert container["image"] == f"ghcr.io/vaultbundle/vaultbundle:{vaultbundle.__version__}"
    args = container["args"]
    # namespaced by default: the release namespace only, never cluster-wide unless clusterWide=true
    assert "--namespace=vb-system" in args and "--all-namespaces" not in args
    assert "--log-format=json" in args and "--metrics-port=8080" in args
    assert not any(a.startswith(("--metrics-tls", "--metrics-token")) for a in args)
    # the operator keeps its digest key in a Secret it creates once: no file, no mount, no chart-made Secret
    assert not any(arg.startswith("--digest-key-file") for arg in args)
    # the egress policy is on: no loopback for tenant URLs, no extra ranges unless the admin adds them
    assert not any(arg.startswith("--egress") for arg in args)
    assert {"name": "VAULTBUNDLE_DIGEST_KEY_SECRET", "value": "rel-vaultbundle-operator-digest-key"} in container["env"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"tmp"} and mounts["tmp"]["mountPath"] == "/tmp"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(volumes) == {"tmp"} and volumes["tmp"]["emptyDir"]["sizeLimit"] == "64Mi"
    assert not by_kind(objects, "Secret")
    assert not by_kind(objects, "ServiceMonitor") and not by_kind(objects, "PodDisruptionBudget")
    assert not by_kind(objects, "NetworkPolicy")
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in by_kind(objects, "Role")}
    assert roles == {
        ("vb-system", "rel-vaultbundle-operator"),
        ("vb-system", "rel-vaultbundle-operator-leader-election"),
        ("vb-system", "rel-vaultbundle-operator-digest-key"),
    }
    # nothing cluster-wide touches Secrets or ServiceAccounts; no token minting at all
    for cluster_role in by_kind(objects, "ClusterRole"):
        assert not {r for _, r, _ in _rules(cluster_role)} & {"secrets", "serviceaccounts", "serviceaccounts/token"}
    assert not any(r for role in by_kind(objects, "Role") for _, r, _ in _rules(role) if r.startswith("serviceacc"))


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


OPERATOR_RULES = {("", "secrets", verb) for verb in ("get", "list", "watch", "create", "patch", "delete")} | {
    ("", "configmaps", "get"),  # a dotsec source and spec.schema: read only
    ("", "configmaps", "list"),
    ("", "configmaps", "watch"),
    ("vaultbundle.io", "vaultbundles", "get"),
    ("vaultbundle.io", "vaultbundles", "list"),
    ("vaultbundle.io", "vaultbundles", "watch"),
    ("vaultbundle.io", "vaultbundles/status", "patch"),
    ("", "events", "create"),
}
CRD_RULES = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}


def operator_grants(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The chart's RBAC objects besides the ClusterTargetStore reads (`<release>-stores`, checked on their own)."""
    return [o for o in by_kind(objects, kind) if not o["metadata"]["name"].endswith("-stores")]


STORES_RULES = {("vaultbundle.io", "clustertargetstores", v) for v in ("get", "list", "watch")} | {
    ("", "namespaces", "get")  # one Namespace's labels at a time: no list/watch of every namespace
}


def test_rbac_cluster_target_stores_in_every_mode(helm: str) -> None:
    for sets in ([], ["watchNamespaces={team-a}"], ["watchNamespaces={team-a}", "rbac.kopfDiscovery=false"]):
        objects = render(helm, *sets)
        (role,) = [
            r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"] == "rel-vaultbundle-operator-stores"
        ]
        assert _rules(role) == STORES_RULES  # read-only, and nothing else
        (binding,) = [b for b in by_kind(objects, "ClusterRoleBinding") if b["metadata"]["name"].endswith("-stores")]
        assert binding["roleRef"]["name"] == "rel-vaultbundle-operator-stores"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "rel-vaultbundle-operator", "namespace": "vb-system"}
        ]
    assert not by_kind(render(helm, "rbac.create=false"), "ClusterRole")
    text = (CHART / "templates" / "rbac-stores.yaml").read_text()
    assert "clustertargetstores get/list/watch:" in text and "namespaces get:" in text


def test_rbac_cluster_wide(helm: str) -> None:
    objects = render(helm, "clusterWide=true")
    (role,) = operator_grants(objects, "ClusterRole")
    assert _rules(role) == OPERATOR_RULES | CRD_RULES
    (binding,) = operator_grants(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-vaultbundle-operator", "namespace": "vb-system"}
    ]
    roles = {r["metadata"]["name"].removeprefix("rel-vaultbundle-operator-"): r for r in by_kind(objects, "Role")}
    lease_role = roles["leader-election"]  # leader election: Leases in the release namespace only
    assert lease_role["metadata"]["namespace"] == "vb-system"
    assert _rules(lease_role) == {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
    key_role = roles["digest-key"]  # the digest key: get that one Secret, create (not limitable by name)
    assert key_role["metadata"]["namespace"] == "vb-system"
    assert key_role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["rel-vaultbundle-operator-digest-key"],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    assert len(by_kind(objects, "RoleBinding")) == 2  # leader election and the digest key
    args = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args and not [a for a in args if a.startswith("--namespace")]
    # token minting never rides on the ClusterRole: only a Role with resourceNames in the SA's namespace
    sets = ["clusterWide=true", "rbac.serviceAccountTokens[0].namespace=team-a"]
    with_tokens = render(helm, *sets, "rbac.serviceAccountTokens[0].name=vault-writer")
    (cluster_role,) = operator_grants(with_tokens, "ClusterRole")
    assert _rules(cluster_role) == OPERATOR_RULES | CRD_RULES
    (token_role,) = [r for r in by_kind(with_tokens, "Role") if r["metadata"]["name"].endswith("-tokens")]
    assert token_role["metadata"]["namespace"] == "team-a"
    assert [(r["resources"], r["verbs"], r["resourceNames"]) for r in token_role["rules"]] == [
        (["serviceaccounts"], ["get"], ["vault-writer"]),
        (["serviceaccounts/token"], ["create"], ["vault-writer"]),
    ]
    # every rule carries a comment saying why
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    block = text[text.index('define "vaultbundle.rules"') :]
    assert block.count("- apiGroups:") == 6 and block.count("\n#") >= 12


def test_rbac_namespaced(helm: str) -> None:
    objects = render(helm, "watchNamespaces={team-a,team-b}")
    roles = [r for r in by_kind(objects, "Role") if not r["metadata"]["name"].endswith(("-leader-election", "-key"))]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(_rules(r) == OPERATOR_RULES for r in roles)
    bindings = [
        b for b in by_kind(objects, "RoleBinding") if not b["metadata"]["name"].endswith(("-leader-election", "-key"))
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    # the only cluster-wide grant: kopf's reads of CRDs and Namespaces, never Secrets
    (cluster_role,) = operator_grants(objects, "ClusterRole")
    assert _rules(cluster_role) == CRD_RULES | {("", "namespaces", "list"), ("", "namespaces", "watch")}
    args = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args
    # without kopf discovery: nothing cluster-wide but the read-only ClusterTargetStore / Namespace reads
    bare = render(helm, "watchNamespaces={team-a}", "rbac.kopfDiscovery=false")
    assert not operator_grants(bare, "ClusterRole") and not operator_grants(bare, "ClusterRoleBinding")
    assert [r["metadata"]["name"] for r in by_kind(bare, "ClusterRole")] == ["rel-vaultbundle-operator-stores"]


def test_rbac_store_secrets_only_where_the_release_namespace_is_not_watched(helm: str) -> None:
    """`rbac.storeSecrets`: `get` on exactly the named Secrets of the release namespace, and only when no other
    grant covers that namespace (namespaced, release namespace not watched)."""
    sets = ("rbac.storeSecrets={aws-tenants,vault-approle}",)
    objects = render(helm, "watchNamespaces={team-a}", *sets)
    (role,) = [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-store-secrets")]
    assert role["metadata"]["namespace"] == "vb-system"
    assert [(r["apiGroups"], r["resources"], r["verbs"], r["resourceNames"]) for r in role["rules"]] == [
        ([""], ["secrets"], ["get"], ["aws-tenants", "vault-approle"])
    ]
    (binding,) = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"].endswith("-store-secrets")]
    assert binding["metadata"]["namespace"] == "vb-system" and binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-vaultbundle-operator", "namespace": "vb-system"}
    ]
    # cluster-wide, a watched release namespace (the default too): covered already; and nothing without names
    for other in (
        ("clusterWide=true", *sets),
        ("watchNamespaces={team-a,vb-system}", *sets),
        sets,
        ("watchNamespaces={team-a}",),
    ):
        names = [o["metadata"]["name"] for o in render(helm, *other)]
        assert not [n for n in names if n.endswith("-store-secrets")], other


ROLLOUT_RULES = {("apps", kind, "patch") for kind in ("deployments", "statefulsets", "daemonsets")}


def test_rbac_rollout_restart_only_when_asked(helm: str) -> None:
    """`rbac.rolloutRestart` adds `patch` (nothing else) on the three workload kinds, in both RBAC modes."""
    for sets in (["clusterWide=true"], ["watchNamespaces={team-a,team-b}"]):
        for role in operator_grants(render(helm, *sets), "ClusterRole") + by_kind(render(helm, *sets), "Role"):
            assert not {r for r in _rules(role) if r[0] == "apps"}, role["metadata"]["name"]
    (cluster_role,) = operator_grants(render(helm, "clusterWide=true", "rbac.rolloutRestart=true"), "ClusterRole")
    assert _rules(cluster_role) == OPERATOR_RULES | CRD_RULES | ROLLOUT_RULES
    namespaced = render(helm, "watchNamespaces={team-a,team-b}", "rbac.rolloutRestart=true")
    roles = [r for r in by_kind(namespaced, "Role") if r["metadata"]["name"] == "rel-vaultbundle-operator"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(_rules(r) == OPERATOR_RULES | ROLLOUT_RULES for r in roles)
    for cluster_role in by_kind(namespaced, "ClusterRole"):  # never cluster-wide in namespaced mode
        assert not {r for r in _rules(cluster_role) if r[0] == "apps"}


def test_token_minting_only_for_listed_service_accounts(helm: str) -> None:
    objects = render(helm, *COMBINATIONS["token-service-accounts"])
    token_roles = {
        r["metadata"]["namespace"]: r for r in by_kind(objects, "Role") if "-tokens" in r["metadata"]["name"]
    }
    assert sorted(token_roles) == ["team-a", "team-b"]
    for namespace, names in (("team-a", ["vault-writer", "ci-writer"]), ("team-b", ["vault-writer"])):
        rules = token_roles[namespace]["rules"]
        assert {r["resources"][0]: (r["verbs"], r["resourceNames"]) for r in rules} == {
            "serviceaccounts": (["get"], names),
            "serviceaccounts/token": (["create"], names),
        }
    bindings = [b for b in by_kind(objects, "RoleBinding") if "-tokens" in b["metadata"]["name"]]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    # the operator's own Roles carry no ServiceAccount rules
    for role in by_kind(objects, "Role"):
        if "-tokens" not in role["metadata"]["name"]:
            assert not [r for _, r, _ in _rules(role) if r.startswith("serviceaccounts")]


def test_metrics_tls_and_token(helm: str) -> None:
    objects = render(helm, *COMBINATIONS["metrics-secured"])
    pod = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "--metrics-tls-cert-file=/etc/vaultbundle/metrics-tls/tls.crt" in container["args"]
    assert "--metrics-tls-key-file=/etc/vaultbundle/metrics-tls/tls.key" in container["args"]
    assert "--metrics-token-file=/etc/vaultbundle/metrics-token/token" in container["args"]
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    assert volumes["metrics-tls"]["secretName"] == "metrics-tls"
    assert volumes["metrics-token"] == {
        "secretName": "metrics-token",
        "defaultMode": 0o440,
        "items": [{"key": "token", "path": "token"}],
    }
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["metrics-tls"]["readOnly"] is True and mounts["metrics-token"]["readOnly"] is True
    (endpoint,) = by_kind(objects, "ServiceMonitor")[0]["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["serverName"] == "rel-vaultbundle-operator-metrics.vb-system.svc"
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "metrics-token", "key": "token"}}
    bound = by_kind(render(helm, "metrics.bindAddress=0.0.0.0"), "Deployment")[0]
    assert "--metrics-host=0.0.0.0" in bound["spec"]["template"]["spec"]["containers"][0]["args"]


def test_scope_choices_fail_with_a_clear_message(helm: str) -> None:
    for sets, message in (
        (["clusterWide=true", "watchNamespaces={team-a}"], "clusterWide=true and watchNamespaces are exclusive"),
        (
            [
                "watchNamespaces={team-a}",
                "rbac.serviceAccountTokens[0].namespace=team-b",
                "rbac.serviceAccountTokens[0].name=x",
            ],
            "rbac.serviceAccountTokens: namespace team-b is not watched (team-a)",
        ),
    ):
        command = [helm, "template", "rel", str(CHART), "--kube-version", KUBE_VERSION]
        for value in sets:
            command += ["--set", value]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr


def test_a_stores_service_account_in_the_release_namespace_may_get_tokens(helm: str) -> None:
    """A ClusterTargetStore's Vault Kubernetes auth: its ServiceAccount lives in the operator's (release) namespace,
    which need not be watched; still only that account, by resourceNames."""
    sets = ["watchNamespaces={team-a}", "rbac.serviceAccountTokens[0].namespace=vb-system"]
    objects = render(helm, *sets, "rbac.serviceAccountTokens[0].name=vaultbundle-vault")
    (token_role,) = [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-tokens")]
    assert token_role["metadata"]["namespace"] == "vb-system"
    assert [(r["resources"], r["verbs"], r["resourceNames"]) for r in token_role["rules"]] == [
        (["serviceaccounts"], ["get"], ["vaultbundle-vault"]),
        (["serviceaccounts/token"], ["create"], ["vaultbundle-vault"]),
    ]


def test_optional_objects(helm: str) -> None:
    (monitor,) = by_kind(render(helm, *COMBINATIONS["service-monitor"]), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics" and monitor["metadata"]["labels"]["release"] == "prom"
    (pdb,) = by_kind(render(helm, *COMBINATIONS["pdb"]), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    (pdb,) = by_kind(render(helm, *COMBINATIONS["pdb-min-available"]), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    (policy,) = by_kind(render(helm, *COMBINATIONS["network-policy"]), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    objects = render(helm, *COMBINATIONS["existing-digest-key"])
    assert not by_kind(objects, "Secret")
    assert sorted(r["metadata"]["name"] for r in by_kind(objects, "Role")) == [
        "rel-vaultbundle-operator",  # namespaced by default
        "rel-vaultbundle-operator-leader-election",
    ]  # and no digest-key Role: the key comes from the mounted Secret
    container = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--digest-key-file=/etc/vaultbundle/digest-key/digest-key" in container["args"]
    assert not [e for e in container["env"] if e["name"] == "VAULTBUNDLE_DIGEST_KEY_SECRET"]
    assert {"name": "digest-key", "mountPath": "/etc/vaultbundle/digest-key", "readOnly": True} in container[
        "volumeMounts"
    ]
    volume = next(
        v for v in by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["volumes"] if v["name"] == "digest-key"
    )
    assert volume["secret"]["secretName"] == "my-digest-key"
    assert volume["secret"]["items"] == [{"key": "key", "path": "digest-key"}]


@pytest.mark.parametrize(
    ("sets", "error"),
    [
        (["bogus=1"], "additional properties 'bogus' not allowed"),
        (["image.bogus=1"], "additional properties 'bogus' not allowed"),
        (["serviceMonitor.bogus=1"], "additional properties 'bogus' not allowed"),
        (["replicas=2", "leaderElection.enabled=false"], "/leaderElection/enabled"),
        (["replicas=0"], "/replicas"),
        (["operator.logFormat=xml"], "/operator/logFormat"),
        (["watchNamespaces={Not_A_Namespace}"], "/watchNamespaces/0"),
        # before 0.2 a boolean that granted every ServiceAccount: now a list of namespace/name pairs
        (["rbac.serviceAccountTokens=true"], "/rbac/serviceAccountTokens"),
        (["rbac.serviceAccountTokens[0].name=vault-writer"], "missing property 'namespace'"),
        (["clusterWide=yes"], "/clusterWide"),
    ],
)
def test_schema_rejects(helm: str, sets: list[str], error: str) -> None:
    command = [helm, "template", "rel", str(CHART), "--kube-version", KUBE_VERSION]
    for value in sets:
        command += ["--set", value]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode != 0 and error in result.stderr, result.stderr
    lint = [helm, "lint", str(CHART), "--kube-version", KUBE_VERSION]
    for value in sets:
        lint += ["--set", value]
    assert subprocess.run(lint, capture_output=True, text=True, check=False).returncode != 0


def render_notes(helm: str, tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as `helm install` prints it, offline: a copy of the chart renders it into a YAML document."""
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    notes = (copy / "templates" / "NOTES.txt").read_text()
    (copy / "templates" / "NOTES.txt").unlink()
    (copy / "templates" / "_notes-under-test.tpl").write_text(
        '{{- define "notes-under-test" -}}\n' + notes + "{{- end }}\n"
    )
    (copy / "templates" / "notes-under-test.yaml").write_text(
        'notes: |\n{{ include "notes-under-test" . | indent 2 }}\n'
    )
    command = [helm, "template", "rel", str(copy), "-n", "vb-system", "--kube-version", KUBE_VERSION]
    command += ["--show-only", "templates/notes-under-test.yaml"]
    for value in sets:
        command += ["--set", value]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["notes"])


def test_notes_name_the_next_step(helm: str, tmp_path: Path) -> None:
    for namespace, sets in (("vb-system", []), ("team-a", ["watchNamespaces={team-a}"]), ("web", ["clusterWide=true"])):
        notes = render_notes(helm, tmp_path / namespace, *sets)
        assert f"kubectl -n {namespace} create secret generic web-vsync" in notes
        assert f"kubectl -n {namespace} create secret generic web-passphrase" in notes
        assert "kind: VaultBundle" in notes and f"kubectl -n {namespace} get vb" in notes
        assert "Leader election is on: 1 replica(s)" in notes
        assert ("watches only these namespaces: team-a" in notes) == (namespace == "team-a")
        assert ("watches only these namespaces: vb-system" in notes) == (namespace == "vb-system")
        assert ("It watches all namespaces (clusterWide" in notes) == (namespace == "web")
        assert f"kubectl -n {namespace} label secret web-vsync web-passphrase vaultbundle.io/source=true" in notes


def test_egress_values_become_flags(helm: str) -> None:
    args = by_kind(render(helm, *COMBINATIONS["egress-cidrs"], "egress.allowLocal=true"), "Deployment")[0]["spec"][
        "template"
    ]["spec"]["containers"][0]["args"]
    assert "--egress-allow-local" in args
    assert [a for a in args if a.startswith("--egress-deny-cidr")] == [
        "--egress-deny-cidr=10.244.0.0/16",
        "--egress-deny-cidr=10.96.0.0/12",
    ]
    assert "--egress-allow-cidr=10.96.12.34/32" in args
