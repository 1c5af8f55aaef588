"""The ClusterTargetStore CRD (``crds/vaultbundle.io_clustertargetstores.yaml``) and its examples, without a cluster.

Same method as ``test_crd.py``: the schema becomes a JSON Schema, every CEL rule has a Python twin keyed by its
exact text, and the examples in ``examples/stores/`` must pass both the schema and ``vaultbundle.stores.parse_store``
(the CRD and the operator's parser agree on them). The real apiserver runs the real rules in
``tests/e2e/test_crd_stores_apiserver.py``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.unit.test_crd import cel_keyword, python_pattern, to_json_schema, walk
from vaultbundle import stores
from vaultbundle.errors import StoreInvalidError

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "crds" / "vaultbundle.io_clustertargetstores.yaml"
EXAMPLES = sorted((REPO_ROOT / "examples" / "stores").glob("*.yaml"))
DOC = REPO_ROOT / "docs" / "cluster-target-store.md"

(CRD,) = [doc for doc in yaml.safe_load_all(CRD_PATH.read_text()) if doc]
VERSION = CRD["spec"]["versions"][0]
SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]
KINDS = list(stores.KINDS)


def _one_of(obj: dict[str, Any], names: list[str]) -> bool:
    return sum(1 for name in names if name in obj) == 1


def _prefix_chars(kind: str, chars: str) -> Callable[[Any], bool]:
    def twin(spec: dict[str, Any]) -> bool:
        prefix = spec["scope"].get("namePrefix")
        return kind not in spec or prefix is None or re.fullmatch(rf"([{chars}]|\{{namespace\}}|\{{name\}})+", prefix)

    return twin


def _vault_scope(spec: dict[str, Any]) -> bool:
    scope = spec["scope"]
    return ("mount" in scope and "pathPrefix" in scope) == ("hashicorpVault" in spec) and (
        ("mount" in scope) == ("pathPrefix" in scope)
    )


CEL_TWINS: dict[str, Callable[[Any], bool]] = {
    "[has(self.awsSecretsManager), has(self.gcpSecretManager), has(self.azureKeyVault), has(self.hashicorpVault), "
    "has(self.githubActions), has(self.awsKms)].filter(x, x).size() == 1": lambda s: _one_of(s, KINDS),
    "has(self.scope.keys) == has(self.awsKms)": lambda s: ("keys" in s["scope"]) == ("awsKms" in s),
    "!has(self.awsKms) || !has(self.allow) || !has(self.allow.adopt) || !self.allow.adopt": lambda s: (
        "awsKms" not in s or not s.get("allow", {}).get("adopt")
    ),
    "has(self.scope.namePrefix) == (has(self.awsSecretsManager) || has(self.gcpSecretManager) || "
    "has(self.azureKeyVault))": lambda s: (
        ("namePrefix" in s["scope"]) == any(k in s for k in ("awsSecretsManager", "gcpSecretManager", "azureKeyVault"))
    ),
    "(has(self.scope.mount) && has(self.scope.pathPrefix)) == has(self.hashicorpVault) && "
    "(has(self.scope.mount) == has(self.scope.pathPrefix))": _vault_scope,
    "(has(self.scope.repositories) || has(self.scope.organization)) == has(self.githubActions)": lambda s: (
        ("repositories" in s["scope"] or "organization" in s["scope"]) == ("githubActions" in s)
    ),
    "!has(self.scope.environments) || (has(self.githubActions) && has(self.scope.repositories))": lambda s: (
        "environments" not in s["scope"] or ("githubActions" in s and "repositories" in s["scope"])
    ),
    '!has(self.awsSecretsManager) || !has(self.scope.namePrefix) || self.scope.namePrefix.matches("^([A-Za-z0-9/_+=.@-]'
    '|\\\\{namespace\\\\}|\\\\{name\\\\})+$")': _prefix_chars("awsSecretsManager", "A-Za-z0-9/_+=.@-"),
    '!has(self.gcpSecretManager) || !has(self.scope.namePrefix) || self.scope.namePrefix.matches("^([A-Za-z0-9_-]'
    '|\\\\{namespace\\\\}|\\\\{name\\\\})+$")': _prefix_chars("gcpSecretManager", "A-Za-z0-9_-"),
    '!has(self.azureKeyVault) || !has(self.scope.namePrefix) || self.scope.namePrefix.matches("^([A-Za-z0-9-]'
    '|\\\\{namespace\\\\}|\\\\{name\\\\})+$")': _prefix_chars("azureKeyVault", "A-Za-z0-9-"),
    "!has(self.allow) || !has(self.allow.forceDeleteWithoutRecovery) || !self.allow.forceDeleteWithoutRecovery || "
    "has(self.awsSecretsManager)": lambda s: (
        not s.get("allow", {}).get("forceDeleteWithoutRecovery") or "awsSecretsManager" in s
    ),
    '!has(self.scope.namePrefix) || !self.scope.namePrefix.endsWith("}")': lambda s: (
        not s["scope"].get("namePrefix", "").endswith("}")
    ),
    "!has(self.externalId) || has(self.roleArn)": lambda s: "externalId" not in s or "roleArn" in s,
    "[has(self.ambient), has(self.secretRef)].filter(x, x).size() == 1": lambda s: _one_of(s, ["ambient", "secretRef"]),
    "[has(self.tokenSecretRef), has(self.kubernetes), has(self.appRole)].filter(x, x).size() == 1": lambda s: _one_of(
        s, ["tokenSecretRef", "kubernetes", "appRole"]
    ),
    "[has(self.tokenSecretRef), has(self.app)].filter(x, x).size() == 1": lambda s: _one_of(
        s, ["tokenSecretRef", "app"]
    ),
    "(self.operator == 'In' || self.operator == 'NotIn') == (has(self.values) && self.values.size() > 0)": lambda s: (
        (s["operator"] in ("In", "NotIn")) == bool(s.get("values"))
    ),
    'self.matches("^([^{}]|\\\\{namespace\\\\}|\\\\{name\\\\})*$")': lambda s: bool(
        re.fullmatch(r"([^{}]|\{namespace\}|\{name\})*", s)
    ),
    '!self.matches("\\\\{namespace\\\\}.*\\\\{namespace\\\\}") && !self.matches("\\\\{name\\\\}.*\\\\{name\\\\}")': (
        lambda s: s.count("{namespace}") <= 1 and s.count("{name}") <= 1
    ),
    '!self.matches("[}*][{*]")': lambda s: re.search(r"[}*][{*]", s) is None,
    '!self.matches("(^|/)[.][.]?(/|$)") && !self.contains("//") && !self.startsWith("/")': lambda s: (
        re.search(r"(^|/)[.][.]?(/|$)", s) is None and "//" not in s and not s.startswith("/")
    ),
    '!self.matches("[*].*[*]")': lambda s: s.count("*") <= 1,
}


Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"x-kubernetes-validations": cel_keyword(CEL_TWINS)}
)
JSON_SCHEMA = to_json_schema(SCHEMA)


def errors(obj: dict[str, Any]) -> list[str]:
    found = Validator(JSON_SCHEMA).iter_errors(obj)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found)


# --- structure -------------------------------------------------------------------------------------------------------
def test_names_and_scope() -> None:
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == "clustertargetstores.vaultbundle.io"
    assert (spec["group"], spec["scope"]) == ("vaultbundle.io", "Cluster")
    names = spec["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "ClusterTargetStore",
        "clustertargetstores",
        ["cts"],
    )
    assert [v["name"] for v in spec["versions"]] == ["v1alpha1"] and VERSION["served"] and VERSION["storage"]
    # kubectl expands categories before resource names: sharing VaultBundle's category "vaultbundle" would make
    # `kubectl get vaultbundle NAME` fail ("you must specify only one resource")
    assert "categories" not in names


def test_printer_columns() -> None:
    columns = {c["name"]: c["jsonPath"] for c in VERSION["additionalPrinterColumns"]}
    assert columns == {
        "Name Prefix": ".spec.scope.namePrefix",
        "Path Prefix": ".spec.scope.pathPrefix",
        "Adopt": ".spec.allow.adopt",
        "Prune": ".spec.allow.prune",
        "Age": ".metadata.creationTimestamp",
    }


def test_every_field_has_a_description_and_a_type() -> None:
    missing = [p for p, node in walk(SCHEMA) if p != "metadata" and not str(node.get("description", "")).strip()]
    assert not missing, missing
    untyped = [p for p, node in walk(SCHEMA) if "type" not in node and not node.get("x-kubernetes-int-or-string")]
    assert not untyped
    assert not [p for p, node in walk(SCHEMA) if node.get("x-kubernetes-preserve-unknown-fields")]


def test_every_cel_rule_has_a_python_twin() -> None:
    rules = {v["rule"] for _, node in walk(SCHEMA) for v in node.get("x-kubernetes-validations", [])}
    rules |= {v["rule"] for v in SCHEMA["properties"]["spec"].get("x-kubernetes-validations", [])}
    assert len(rules) >= 15
    assert sorted(rules - set(CEL_TWINS)) == []


def test_patterns_compile_and_strings_are_bounded() -> None:
    for path, node in walk(SCHEMA):
        re.compile(python_pattern(node.get("pattern", "")))
        if node.get("type") == "string" and path not in ("apiVersion", "kind"):
            assert "maxLength" in node or "enum" in node, f"{path}: CEL cost needs a bound"
        if node.get("type") == "array":
            assert "maxItems" in node, path


def test_defaults() -> None:
    allow = SCHEMA["properties"]["spec"]["properties"]["allow"]["properties"]
    assert {k: v["default"] for k, v in allow.items()} == {
        "adopt": False,
        "prune": True,
        "forceDeleteWithoutRecovery": False,
    }
    assert stores.Allow() == stores.Allow(adopt=False, prune=True, force_delete_without_recovery=False)


def test_conditions_document_deny_by_default() -> None:
    description = SCHEMA["properties"]["spec"]["properties"]["conditions"]["description"]
    assert "Deny by default" in description and "OR" in description


# --- examples --------------------------------------------------------------------------------------------------------
def test_one_example_per_kind() -> None:
    kinds = sorted(next(k for k in KINDS if k in yaml.safe_load(p.read_text())["spec"]) for p in EXAMPLES)
    assert kinds == sorted(KINDS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid_for_the_crd_and_the_operator(path: Path) -> None:
    assert path.read_text().startswith("#"), "each example starts with an explanatory comment"
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert (doc["apiVersion"], doc["kind"]) == ("vaultbundle.io/v1alpha1", "ClusterTargetStore")
    assert errors(doc) == []
    store = stores.parse_store(doc)
    assert store.conditions.namespaces or store.conditions.namespace_selector is not None


def test_docs_name_every_field() -> None:
    text = DOC.read_text()
    leaves = {p.rsplit(".", 1)[-1].removesuffix("[]").removesuffix("{}") for p, _ in walk(SCHEMA)}
    missing = sorted(leaf for leaf in leaves - {"apiVersion", "kind", "metadata", "spec", ""} if f"`{leaf}" not in text)
    assert not missing, f"docs/cluster-target-store.md does not mention: {missing}"


# --- broken objects (the CRD and the parser refuse the same things) --------------------------------------------------
BASE: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / "stores" / "aws-secrets-manager.yaml").read_text())


def change(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    node = obj
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last)
    else:
        node[last] = value
    return obj


BROKEN: dict[str, tuple[dict[str, Any], str]] = {
    "two kinds": (
        change("spec.gcpSecretManager", {"project": "acme-prod", "identity": {"ambient": {}}}),
        "exactly one store kind",
    ),
    "no kind": (change("spec.awsSecretsManager", None), "exactly one store kind"),
    "no scope prefix": (change("spec.scope.namePrefix", None), "scope.namePrefix is required"),
    "vault scope on aws": (change("spec.scope.pathPrefix", "x"), "only used by it"),
    "github environments on aws": (change("spec.scope.environments", ["x"]), "only used by githubActions"),
    "unknown placeholder": (change("spec.scope.namePrefix", "t/{tenant}/"), "only the placeholders"),
    "stray brace": (change("spec.scope.namePrefix", "t/{namespace/"), "only the placeholders"),
    "placeholder twice": (change("spec.scope.namePrefix", "{namespace}/{namespace}/"), "at most once"),
    "adjacent placeholders": (change("spec.scope.namePrefix", "t/{namespace}{name}/"), "separated by a literal"),
    "dot-dot segment": (change("spec.scope.namePrefix", "t/../{namespace}/"), "no '.' or '..' segments"),
    "empty segment": (change("spec.scope.namePrefix", "t//{namespace}/"), "no '.' or '..' segments"),
    "prefix ends with a placeholder": (change("spec.scope.namePrefix", "tenants/{namespace}"), "must not end with a"),
    "bad aws chars": (change("spec.scope.namePrefix", "t/{namespace}/*"), "awsSecretsManager: scope.namePrefix"),
    "no identity": (change("spec.awsSecretsManager.identity", None), "'identity' is a required property"),
    "two identities": (
        change("spec.awsSecretsManager.identity", {"ambient": {}, "secretRef": {"name": "x"}}),
        "exactly one of identity.ambient or identity.secretRef",
    ),
    "plain http endpoint": (change("spec.awsSecretsManager.endpoint", "http://169.254.169.254"), "does not match"),
    "external id without role": (change("spec.awsSecretsManager.roleArn", None), "externalId needs roleArn"),
    "force delete on gcp": (
        {
            **change("spec.awsSecretsManager", None),
            "spec": {
                "gcpSecretManager": {"project": "acme-prod", "identity": {"ambient": {}}},
                "scope": {"namePrefix": "{namespace}_"},
                "allow": {"forceDeleteWithoutRecovery": True},
            },
        },
        "only applies to awsSecretsManager",
    ),
    "In without values": (
        change("spec.conditions.namespaceSelector", {"matchExpressions": [{"key": "a", "operator": "In"}]}),
        "values must be non-empty for In and NotIn",
    ),
    "Exists with values": (
        change(
            "spec.conditions.namespaceSelector",
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        ),
        "values must be non-empty for In and NotIn, and empty",
    ),
    "bad operator": (
        change("spec.conditions.namespaceSelector", {"matchExpressions": [{"key": "a", "operator": "Equals"}]}),
        "is not one of",
    ),
    "bad namespace name": (change("spec.conditions.namespaces", ["Team_A"]), "does not match"),
    "unknown field": (change("spec.awsSecretsManager.credentialsSecretRef", {"name": "x"}), "Additional properties"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_store_is_rejected(case: str) -> None:
    obj, expected = BROKEN[case]
    found = errors(obj)
    assert any(expected in message for message in found), found


@pytest.mark.parametrize("case", [c for c in BROKEN if c != "unknown field"])  # the apiserver prunes unknown fields
def test_the_parser_refuses_what_the_crd_refuses(case: str) -> None:
    """Defence in depth: the operator does not rely on the apiserver having run the CEL rules."""
    with pytest.raises(StoreInvalidError):
        stores.parse_store(BROKEN[case][0])
