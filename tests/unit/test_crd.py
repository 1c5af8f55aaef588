"""The VaultBundle CRD (``crds/``) and its examples (``examples/``), checked without a cluster.

The CRD's ``openAPIV3Schema`` is turned into a JSON Schema (close enough: same keywords for what we use) and every
``VaultBundle`` in ``examples/*.yaml`` is validated against it. Kubernetes CEL rules (``x-kubernetes-validations``)
cannot run here, so each rule has a Python twin in ``CEL_TWINS``, keyed by the exact rule text: a rule added to the
CRD without a twin fails ``test_every_cel_rule_has_a_python_twin``. The real apiserver checks the real rules in
``tests/e2e/test_crd_apiserver.py``.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from vaultbundle import stores

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "crds" / "vaultbundle.io_vaultbundles.yaml"
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))

Schema = dict[str, Any]


# --- loading ---------------------------------------------------------------------------------------------------------
def load_crd() -> dict[str, Any]:
    docs = [doc for doc in yaml.safe_load_all(CRD_PATH.read_text()) if doc]
    assert len(docs) == 1, "crds/vaultbundle.io_vaultbundles.yaml must hold exactly one document"
    return docs[0]


CRD = load_crd()
VERSION = CRD["spec"]["versions"][0]
SCHEMA: Schema = VERSION["schema"]["openAPIV3Schema"]


def at(path: str) -> Schema:
    """The schema node at a dotted path, e.g. ``spec.targets.kubernetesSecret`` (list items are stepped through)."""
    node = SCHEMA
    for part in path.split("."):
        if node.get("type") == "array":
            node = node["items"]
        node = node["properties"][part]
    return node


def walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node below *node*, with a readable path (``[]`` for list items, ``{}`` for map values)."""
    for name, child in node.get("properties", {}).items():
        child_path = f"{path}.{name}" if path else name
        yield child_path, child
        yield from walk(child, child_path)
    if isinstance(node.get("items"), dict):
        yield f"{path}[]", node["items"]
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield f"{path}{{}}", node["additionalProperties"]
        yield from walk(node["additionalProperties"], f"{path}{{}}")


# --- CEL twins -------------------------------------------------------------------------------------------------------
TARGET_KINDS = [
    "kubernetesSecret",
    "hashicorpVault",
    "githubActions",
    "gcpSecretManager",
    "awsSecretsManager",
    "azureKeyVault",
]


def _one_of(obj: dict[str, Any], names: list[str]) -> bool:
    return sum(1 for name in names if name in obj) == 1


def _unique_values(mapping: dict[str, str]) -> bool:
    return len(set(mapping.values())) == len(mapping)


def _no_dotdot(path: str) -> bool:
    return re.search(r"(^|/)[.][.](/|$)", path) is None


def _store_ref_alone(target: dict[str, Any], kind: str) -> bool:
    """With storeRef, none of the kind's connection fields (vaultbundle.stores.CONNECTION_FIELDS) is set."""
    defaults = stores.CONNECTION_DEFAULTS.get(kind, {})
    return "storeRef" not in target or not any(
        f in target and (f not in defaults or target[f] != defaults[f]) for f in stores.CONNECTION_FIELDS[kind]
    )


def _targets_avoid_source(spec: dict[str, Any]) -> bool:
    if "configSecretRef" not in spec["source"] or "passphraseSecretRef" not in spec["source"]:
        return True
    source = {spec["source"]["configSecretRef"]["name"], spec["source"]["passphraseSecretRef"]["name"]}
    return all(t["kubernetesSecret"]["name"] not in source for t in spec["targets"] if "kubernetesSecret" in t)


def _distinct_secret_targets(targets: list[dict[str, Any]]) -> bool:
    names = [t["kubernetesSecret"]["name"] for t in targets if "kubernetesSecret" in t]
    return len(names) == len(set(names))


CEL_TWINS: dict[str, Callable[[Any], bool]] = {
    "!has(self.source.configSecretRef) || !has(self.source.passphraseSecretRef) || "
    "self.targets.all(t, !has(t.kubernetesSecret) || (t.kubernetesSecret.name != self.source.configSecretRef.name && "
    "t.kubernetesSecret.name != self.source.passphraseSecretRef.name))": _targets_avoid_source,
    "!has(self.configSecretRef) || !has(self.passphraseSecretRef) || "
    "self.configSecretRef.name != self.passphraseSecretRef.name": lambda s: (
        "configSecretRef" not in s
        or "passphraseSecretRef" not in s
        or s["configSecretRef"]["name"] != s["passphraseSecretRef"]["name"]
    ),
    "has(self.dotsec) != (has(self.configSecretRef) || has(self.passphraseSecretRef))": lambda s: (
        ("dotsec" in s) != ("configSecretRef" in s or "passphraseSecretRef" in s)
    ),
    "has(self.dotsec) || (has(self.configSecretRef) && has(self.passphraseSecretRef))": lambda s: (
        "dotsec" in s or ("configSecretRef" in s and "passphraseSecretRef" in s)
    ),
    "has(self.configMapRef) != has(self.s3)": lambda s: ("configMapRef" in s) != ("s3" in s),
    "has(self.identitySecretRef) != has(self.kms)": lambda s: ("identitySecretRef" in s) != ("kms" in s),
    "[has(self.credentialsSecretRef), has(self.auth) && has(self.auth.serviceAccountRef), has(self.storeRef)]"
    ".filter(x, x).size() == 1": lambda s: (
        ["credentialsSecretRef" in s, "serviceAccountRef" in s.get("auth", {}), "storeRef" in s].count(True) == 1
    ),
    "has(self.storeRef) || has(self.region)": lambda s: "storeRef" in s or "region" in s,
    "!has(self.storeRef) || (!has(self.region) && (!has(self.endpoint) || self.endpoint == '') && "
    "!has(self.stsEndpoint) && !has(self.credentialsSecretRef) && !has(self.auth))": lambda s: (
        "storeRef" not in s
        or not ({"region", "stsEndpoint", "credentialsSecretRef", "auth"} & set(s) or s.get("endpoint"))
    ),
    "!has(self.stsEndpoint) || (has(self.auth) && has(self.auth.serviceAccountRef))": lambda s: (
        "stsEndpoint" not in s or "serviceAccountRef" in s.get("auth", {})
    ),
    "!self.matches('(^|/)[.][.](/|$)')": _no_dotdot,
    "self.all(t, !has(t.kubernetesSecret) || self.exists_one(u, has(u.kubernetesSecret) && "
    "u.kubernetesSecret.name == t.kubernetesSecret.name))": _distinct_secret_targets,
    "[has(self.kubernetesSecret), has(self.hashicorpVault), has(self.githubActions), has(self.gcpSecretManager), "
    "has(self.awsSecretsManager), has(self.azureKeyVault)]"
    ".filter(x, x).size() == 1": lambda s: _one_of(s, TARGET_KINDS),
    "!has(self.insecure) || !self.insecure || (has(self.endpoint) && "
    "self.endpoint.matches('^(localhost|127\\\\.[0-9.]+|\\\\[::1\\\\]):[0-9]+$'))": lambda s: (
        not s.get("insecure") or bool(re.search(r"^(localhost|127\.[0-9.]+|\[::1\]):[0-9]+$", s.get("endpoint", "")))
    ),
    "!(has(self.insecure) && self.insecure && has(self.credentialsSecretRef))": lambda s: (
        not (s.get("insecure") and "credentialsSecretRef" in s)
    ),
    "self.all(k, k.size() <= 63 && k.matches('^[a-z][a-z0-9_-]*$') && k != 'managed-by' && "
    "k != 'vaultbundle-owner')": lambda s: all(
        len(k) <= 63 and re.search(r"^[a-z][a-z0-9_-]*$", k) and k not in ("managed-by", "vaultbundle-owner") for k in s
    ),
    "[has(self.automatic), has(self.userManaged)].filter(x, x).size() <= 1": lambda s: (
        not ("automatic" in s and "userManaged" in s)
    ),
    "!(has(self.underscoresToDashes) && self.underscoresToDashes && has(self.dashesToUnderscores) && "
    "self.dashesToUnderscores)": lambda s: not (s.get("underscoresToDashes") and s.get("dashesToUnderscores")),
    "[has(self.repository), has(self.organization)].filter(x, x).size() == 1": lambda s: _one_of(
        s, ["repository", "organization"]
    ),
    "!has(self.environment) || has(self.repository)": lambda s: "environment" not in s or "repository" in s,
    "!has(self.visibility) || has(self.organization)": lambda s: "visibility" not in s or "organization" in s,
    "!has(self.selectedRepositoryIds) || (has(self.visibility) && self.visibility == 'selected')": lambda s: (
        "selectedRepositoryIds" not in s or s.get("visibility") == "selected"
    ),
    "self.startsWith('https://') || "
    "self.matches('^http://(localhost|127\\\\.[0-9.]+|\\\\[::1\\\\])(:[0-9]+)?(/.*)?$')": lambda s: (
        s.startswith("https://") or bool(re.search(r"^http://(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?(/.*)?$", s))
    ),
    "[has(self.tokenSecretRef), has(self.app)].filter(x, x).size() == 1": lambda s: _one_of(
        s, ["tokenSecretRef", "app"]
    ),
    "!self.matches('(^|/)[.][.]?(/|$)')": lambda s: re.search(r"(^|/)[.][.]?(/|$)", s) is None,
    "self.all(k, !(k.lowerAscii() in ['managed-by', 'vaultbundle-owner', 'file-encoding']))": lambda s: (
        not any(k.lower() in ("managed-by", "vaultbundle-owner", "file-encoding") for k in s)
    ),
    "self.all(k, k.size() >= 1 && k.size() <= 512)": lambda s: all(1 <= len(k) <= 512 for k in s),
    "self.all(k, k.size() >= 1 && k.size() <= 128)": lambda s: all(1 <= len(k) <= 128 for k in s),
    "!(has(self.clientSecretRef) && has(self.managedIdentityClientID))": lambda s: (
        not ("clientSecretRef" in s and "managedIdentityClientID" in s)
    ),
    "!has(self.mode) || self.mode != 'Json' || (has(self.name) && self.name != '')": lambda s: (
        s.get("mode") != "Json" or bool(s.get("name"))
    ),
    "!has(self.name) || self.name == '' || (has(self.mode) && self.mode == 'Json')": lambda s: (
        not s.get("name") or s.get("mode") == "Json"
    ),
    "!has(self.externalId) || self.externalId == '' || (has(self.roleArn) && self.roleArn != '')": lambda s: (
        not s.get("externalId") or bool(s.get("roleArn"))
    ),
    "self.all(k, k != 'managed-by' && !k.startsWith('vaultbundle.io/') && !k.lowerAscii().startsWith('aws:'))": (
        lambda s: all(
            k != "managed-by" and not k.startswith("vaultbundle.io/") and not k.lower().startswith("aws:") for k in s
        )
    ),
    "[has(self.tokenSecretRef), has(self.kubernetes), has(self.appRole)].filter(x, x).size() == 1": lambda s: _one_of(
        s, ["tokenSecretRef", "kubernetes", "appRole"]
    ),
    "self != 'kubernetes.io/service-account-token' && self != 'bootstrap.kubernetes.io/token' && "
    "self != 'helm.sh/release.v1'": lambda s: (
        s not in ("kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token", "helm.sh/release.v1")
    ),
    "self.all(k, !k.startsWith('vaultbundle.io/'))": lambda s: not any(k.startswith("vaultbundle.io/") for k in s),
    "self.all(a, self.exists_one(b, self[b] == self[a]))": _unique_values,
    "self.all(k, k.size() <= 253 && k.matches('^[-._a-zA-Z0-9]+$'))": lambda s: all(
        len(k) <= 253 and re.fullmatch(r"[-._a-zA-Z0-9]+", k) for k in s
    ),
    "[has(self.fromKey), has(self.fromFile)].filter(x, x).size() == 1": lambda s: _one_of(s, ["fromKey", "fromFile"]),
    # storeRef: the connection comes from a ClusterTargetStore (fields at their CRD default count as unset)
    "!has(self.storeRef) || !(has(self.region) || has(self.endpoint) || has(self.stsEndpoint) || has(self.roleArn) || "
    "has(self.externalId) || has(self.credentialsSecretRef) || has(self.auth))": lambda s: _store_ref_alone(
        s, "awsSecretsManager"
    ),
    "!has(self.auth) || !(has(self.credentialsSecretRef) || (has(self.roleArn) && self.roleArn != ''))": lambda s: (
        "auth" not in s or ("credentialsSecretRef" not in s and not s.get("roleArn"))
    ),
    "!has(self.storeRef) || !(has(self.project) || has(self.endpoint) || (has(self.insecure) && self.insecure) || "
    "has(self.credentialsSecretRef) || has(self.auth))": lambda s: _store_ref_alone(s, "gcpSecretManager"),
    "!has(self.auth) || !(has(self.credentialsSecretRef) || (has(self.insecure) && self.insecure))": lambda s: (
        "auth" not in s or ("credentialsSecretRef" not in s and s.get("insecure") is not True)
    ),
    "!(has(self.serviceAccountRef) && (has(self.clientSecretRef) || has(self.managedIdentityClientID)))": lambda s: (
        "serviceAccountRef" not in s or not ("clientSecretRef" in s or "managedIdentityClientID" in s)
    ),
    "has(self.serviceAccountRef) == (has(self.tenantID) && has(self.clientID))": lambda s: (
        ("serviceAccountRef" in s) == ("tenantID" in s and "clientID" in s)
    ),
    "!has(self.storeRef) || !(has(self.vaultURL) || has(self.auth) || has(self.caBundleSecretRef))": lambda s: (
        _store_ref_alone(s, "azureKeyVault")
    ),
    "!has(self.storeRef) || !(has(self.address) || (has(self.namespace) && self.namespace != '') || "
    "has(self.caBundleSecretRef) || has(self.auth))": lambda s: _store_ref_alone(s, "hashicorpVault"),
    "!has(self.storeRef) || !((has(self.apiURL) && self.apiURL != 'https://api.github.com') || has(self.auth))": (
        lambda s: _store_ref_alone(s, "githubActions")
    ),
    "has(self.storeRef) || has(self.project)": lambda s: "storeRef" in s or "project" in s,
    "has(self.storeRef) || has(self.vaultURL)": lambda s: "storeRef" in s or "vaultURL" in s,
    "has(self.storeRef) || (has(self.address) && has(self.auth))": lambda s: (
        "storeRef" in s or ("address" in s and "auth" in s)
    ),
    "has(self.storeRef) || has(self.auth)": lambda s: "storeRef" in s or "auth" in s,
}


def cel_keyword(twins: dict[str, Callable[[Any], bool]]) -> Callable[..., Iterator[Any]]:
    """A jsonschema keyword for `x-kubernetes-validations` that runs each rule's Python twin."""
    return lambda validator, rules, instance, schema: _cel(twins, rules, instance)


def _cel(twins: dict[str, Callable[[Any], bool]], rules: list[dict[str, str]], instance: Any) -> Iterator[Any]:
    for rule in rules:
        twin = twins.get(rule["rule"])
        if twin is None:
            yield jsonschema.ValidationError(f"CEL rule without a Python twin: {rule['rule']}")
            continue
        try:
            ok = twin(instance)
        except (KeyError, TypeError, AttributeError):
            continue  # a required field is missing or mistyped: the schema keywords already report that
        if not ok:
            yield jsonschema.ValidationError(rule["message"])


def _list_map(validator: Any, keys: list[str], instance: Any, schema: Schema) -> Iterator[Any]:
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    seen = [tuple(item.get(key) for key in keys) for item in instance if isinstance(item, dict)]
    if len(seen) != len(set(seen)):
        yield jsonschema.ValidationError(f"duplicate entries for list-map keys {keys}")


def to_json_schema(node: Any) -> Any:
    """OpenAPI v3 (structural, Kubernetes flavour) -> JSON Schema.

    Drops the x-kubernetes-* keys except the two emulated above, and closes every object that lists its properties
    (``additionalProperties: false``) as ``kubectl``'s strict field validation would reject unknown fields.
    """
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: to_json_schema(value)
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") or key in ("x-kubernetes-validations", "x-kubernetes-list-map-keys")
    }
    if "x-kubernetes-list-type" in node:
        out["x-kubernetes-list-type"] = node["x-kubernetes-list-type"]
    if "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"x-kubernetes-validations": cel_keyword(CEL_TWINS), "x-kubernetes-list-map-keys": _list_map},
)
JSON_SCHEMA = to_json_schema(SCHEMA)


def errors(obj: dict[str, Any]) -> list[str]:
    validator = Validator(JSON_SCHEMA)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj))


# --- structure -------------------------------------------------------------------------------------------------------
def test_names_scope_and_version() -> None:
    assert CRD["apiVersion"] == "apiextensions.k8s.io/v1"
    assert CRD["kind"] == "CustomResourceDefinition"
    assert CRD["metadata"]["name"] == "vaultbundles.vaultbundle.io"
    spec = CRD["spec"]
    assert spec["group"] == "vaultbundle.io"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"]) == ("VaultBundle", "vaultbundles", "vaultbundle")
    assert names["shortNames"] == ["vb"]
    assert names["categories"] == ["vaultbundle", "secrets"]
    assert [v["name"] for v in spec["versions"]] == ["v1alpha1"]
    assert VERSION["served"] is True
    assert VERSION["storage"] is True
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in VERSION["additionalPrinterColumns"]}
    assert list(columns) == ["Ready", "Reason", "Bundle", "Generation", "Last Sync", "Age"]
    assert columns["Ready"] == ("string", '.status.conditions[?(@.type=="Ready")].status')
    assert columns["Reason"] == ("string", '.status.conditions[?(@.type=="Ready")].reason')
    assert columns["Bundle"] == ("string", ".status.bundle.timestamp")
    assert columns["Generation"] == ("integer", ".status.bundle.generation")
    assert columns["Last Sync"] == ("date", ".status.lastSyncTime")
    assert columns["Age"] == ("date", ".metadata.creationTimestamp")


def test_every_field_has_a_description() -> None:
    # The apiserver forbids anything but `type` on the root `metadata`, so it is the one exception.
    missing = [
        path for path, node in walk(SCHEMA) if path != "metadata" and not str(node.get("description", "")).strip()
    ]
    assert not missing, "schema nodes without a description:\n  " + "\n  ".join(missing)
    assert SCHEMA.get("description")


def test_schema_is_closed_and_structural() -> None:
    """No preserve-unknown-fields anywhere; every node has a type (a structural schema needs one), except
    int-or-string nodes, which Kubernetes types itself."""
    open_nodes = [path for path, node in walk(SCHEMA) if node.get("x-kubernetes-preserve-unknown-fields")]
    assert not open_nodes
    untyped = [path for path, node in walk(SCHEMA) if "type" not in node and not node.get("x-kubernetes-int-or-string")]
    assert not untyped, f"nodes without a type: {untyped}"


def test_targets_list_is_a_bounded_map_with_one_of_rule() -> None:
    targets = at("spec.targets")
    assert targets["x-kubernetes-list-type"] == "map"
    assert targets["x-kubernetes-list-map-keys"] == ["name"]
    assert (targets["minItems"], targets["maxItems"]) == (1, 32)
    item = targets["items"]
    assert item["required"] == ["name"]
    assert item["properties"]["name"]["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    assert item["properties"]["name"]["maxLength"] == 63
    one_of = [v for v in item["x-kubernetes-validations"] if "kubernetesSecret" in v["rule"]]
    assert one_of
    assert "kubernetesSecret" in one_of[0]["message"]
    # Every target kind (every property besides `name`) must appear in the one-of rule.
    for kind in set(item["properties"]) - {"name"}:
        assert f"has(self.{kind})" in one_of[0]["rule"], kind


@pytest.mark.parametrize(
    ("path", "default"),
    [
        ("spec.source.configSecretRef.key", "config"),
        ("spec.source.passphraseSecretRef.key", "passphrase"),
        ("spec.source.layout", "auto"),
        ("spec.source.version", ""),
        ("spec.refreshInterval", "1m"),
        ("spec.suspend", False),
        ("spec.dryRun", False),
        ("spec.rollbackPolicy", "Refuse"),
        ("spec.targets.kubernetesSecret.type", "Opaque"),
        ("spec.targets.kubernetesSecret.template.mergeSelected", False),
        ("spec.targets.kubernetesSecret.deletionPolicy", "Retain"),
        ("spec.targets.kubernetesSecret.adopt", False),
        ("spec.targets.kubernetesSecret.prune", True),
    ],
)
def test_defaults(path: str, default: object) -> None:
    node = at(path)
    assert node["default"] == default
    if "enum" in node:
        assert default in node["enum"]
    if "pattern" in node:
        assert re.search(node["pattern"], str(default))


def test_enums() -> None:
    assert at("spec.source.layout")["enum"] == ["auto", "cli", "runtime"]
    assert at("spec.rollbackPolicy")["enum"] == ["Refuse", "Allow"]
    assert at("spec.targets.kubernetesSecret.deletionPolicy")["enum"] == ["Retain", "Delete"]
    assert at("status.conditions.status")["enum"] == ["True", "False", "Unknown"]


def test_only_source_refs_take_a_namespace_and_it_is_documented_as_refused() -> None:
    """A namespace on a ref is accepted by the schema so the operator can refuse it with a clear condition."""
    for path in ("spec.source.configSecretRef", "spec.source.passphraseSecretRef"):
        assert "CrossNamespaceReference" in at(path)["properties"]["namespace"]["description"], path
    assert "namespace" not in at("spec.targets.kubernetesSecret")["properties"]
    assert "tenant isolation" in at("spec.source")["description"]


def test_status_shape() -> None:
    status = at("status")["properties"]
    for name in (
        "observedGeneration",
        "bundle",
        "lastAppliedTimestamp",
        "pointerETag",
        "lastSyncTime",
        "lastAttemptTime",
        "conditions",
        "targets",
    ):
        assert name in status, name
    assert set(status["bundle"]["properties"]) == {"layout", "timestamp", "generation", "digest"}
    assert "HMAC" in status["bundle"]["properties"]["digest"]["description"]
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert status["targets"]["x-kubernetes-list-map-keys"] == ["name"]
    target = status["targets"]["items"]["properties"]
    expected = {
        "name",
        "kind",
        "state",
        "reason",
        "message",
        "lastSyncTime",
        "lastChangeTime",
        "keys",
        "plan",
        "remote",  # stores without ownership metadata (Vault KV v1)
        "remoteOwned",
        "remoteScope",  # GitHub: which repository/environment/organization the record is for
        "remoteDigests",  # GitHub (write-only): keyed digest per secret
        "managedSecrets",  # names this target created (GitHub, GCP prune)
    }
    assert set(target) == expected
    assert set(target["plan"]["properties"]) == {"create", "update", "delete", "unchanged", "omitted"}
    condition = status["conditions"]["items"]["properties"]
    assert set(condition) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}


def test_every_cel_rule_has_a_python_twin() -> None:
    rules = [v["rule"] for _, node in walk(SCHEMA) for v in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 8
    assert [r for r in rules if r not in CEL_TWINS] == []


def python_pattern(pattern: str) -> str:
    """The apiserver's RE2 knows Unicode classes (\\p{L}, \\p{N}, \\p{Z}); Python's re does not: approximate them
    with the nearest Python classes (letters become word characters, a superset) for compile checks."""
    return pattern.replace(r"\p{L}", r"\w").replace(r"\p{N}", r"\d").replace(r"\p{Z}", r"\s")


def test_regex_patterns_compile() -> None:
    bad = []
    for path, node in walk(SCHEMA):
        try:
            re.compile(python_pattern(node.get("pattern", "")))
        except re.error:
            bad.append(path)
    assert not bad


# --- examples --------------------------------------------------------------------------------------------------------
def example_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_there_are_examples() -> None:
    names = [p.name for p in EXAMPLES]
    for expected in (
        "01-basic.yaml",
        "02-key-selection.yaml",
        "03-tls-template.yaml",
        "04-dockerconfigjson.yaml",
        "05-pinned-dry-run.yaml",
    ):
        assert expected in names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    assert path.read_text().lstrip().startswith("#"), "each example starts with an explanatory comment"
    docs = example_docs(path)
    bundles = [d for d in docs if d.get("kind") == "VaultBundle"]
    assert bundles, "no VaultBundle in the file"
    for doc in docs:
        assert "namespace" not in doc["metadata"], "examples are applied with -n; no hard-coded namespace"
        if doc["kind"] == "VaultBundle":
            assert doc["apiVersion"] == "vaultbundle.io/v1alpha1"
            assert errors(doc) == [], doc["metadata"]["name"]
        else:
            assert (doc["apiVersion"], doc["kind"]) in {("v1", "Secret"), ("v1", "ConfigMap")}  # sources only


def test_basic_example_matches_the_issue() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in example_docs(REPO_ROOT / "examples" / "01-basic.yaml")}
    assert ("Secret", "web-vsync") in docs
    assert ("Secret", "web-passphrase") in docs
    spec = docs["VaultBundle", "web"]["spec"]
    assert spec["source"]["configSecretRef"]["name"] == "web-vsync"
    assert spec["source"]["passphraseSecretRef"]["name"] == "web-passphrase"
    assert spec["targets"] == [{"name": "web-env", "kubernetesSecret": {"name": "web-env"}}]


def test_tls_example_uses_files_for_cert_and_key() -> None:
    (bundle,) = [d for d in example_docs(REPO_ROOT / "examples" / "03-tls-template.yaml") if d["kind"] == "VaultBundle"]
    secret = bundle["spec"]["targets"][0]["kubernetesSecret"]
    assert secret["type"] == "kubernetes.io/tls"
    assert "fromFile" in secret["template"]["data"]["tls.crt"]
    assert "fromFile" in secret["template"]["data"]["tls.key"]


def test_globs_in_examples_are_fnmatch_patterns() -> None:
    """The documented glob semantics: fnmatch, case-sensitive, `*` crosses '/' in file paths."""
    assert fnmatch.fnmatchcase("DB_PASSWORD", "DB_*")
    assert not fnmatch.fnmatchcase("db_password", "DB_*")
    assert fnmatch.fnmatchcase("certs/www.example.com/privkey.pem", "certs/*")


# --- broken objects --------------------------------------------------------------------------------------------------
BASE: dict[str, Any] = {
    "apiVersion": "vaultbundle.io/v1alpha1",
    "kind": "VaultBundle",
    "metadata": {"name": "x"},
    "spec": {
        "source": {"configSecretRef": {"name": "cfg"}, "passphraseSecretRef": {"name": "pass"}},
        "targets": [{"name": "out", "kubernetesSecret": {"name": "out"}}],
    },
}


def broken(mutate: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    mutate(obj)
    return obj


def test_base_object_is_valid() -> None:
    assert errors(BASE) == []


BROKEN: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "missing target kind": (lambda o: o["spec"]["targets"][0].pop("kubernetesSecret"), "exactly one target kind"),
    "bad version pattern": (lambda o: o["spec"]["source"].update(version="2025-01-31"), "does not match"),
    "bad target name": (lambda o: o["spec"]["targets"][0].update(name="Web_Env"), "does not match"),
    "bad secret name": (lambda o: o["spec"]["targets"][0]["kubernetesSecret"].update(name="-x"), "does not match"),
    "target name too long": (lambda o: o["spec"]["targets"][0].update(name="a" * 64), "is too long"),
    "no targets": (lambda o: o["spec"].update(targets=[]), "should be non-empty"),
    "too many targets": (
        lambda o: o["spec"].update(
            targets=[{"name": f"t{i}", "kubernetesSecret": {"name": f"s{i}"}} for i in range(33)]
        ),
        "is too long",
    ),
    "missing source": (lambda o: o["spec"].pop("source"), "'source' is a required property"),
    "two source kinds": (
        lambda o: o["spec"]["source"].update(
            dotsec={"configMapRef": {"name": "c"}, "identitySecretRef": {"name": "i"}}
        ),
        "exactly one source kind",
    ),
    "dotsec without a key": (
        lambda o: o["spec"].update(source={"dotsec": {"configMapRef": {"name": "c"}}}),
        "exactly one of identitySecretRef",
    ),
    "dotsec bad plaintext": (
        lambda o: o["spec"].update(
            source={"dotsec": {"configMapRef": {"name": "c"}, "identitySecretRef": {"name": "i"}, "plaintext": "no"}}
        ),
        "is not one of",
    ),
    "bad layout": (lambda o: o["spec"]["source"].update(layout="s3"), "is not one of"),
    "bad refresh interval": (lambda o: o["spec"].update(refreshInterval="1 minute"), "does not match"),
    "bad rollback policy": (lambda o: o["spec"].update(rollbackPolicy="refuse"), "is not one of"),
    "ref namespace not a DNS label": (
        lambda o: o["spec"]["source"]["configSecretRef"].update(namespace="x" * 64),
        "is too long",
    ),
    "unknown target field": (lambda o: o["spec"]["targets"][0].update(github={}), "Additional properties"),
    "same secret for config and passphrase": (
        lambda o: o["spec"]["source"]["passphraseSecretRef"].update(name="cfg"),
        "separate leak channels",
    ),
    "target overwrites the passphrase secret": (
        lambda o: o["spec"]["targets"][0]["kubernetesSecret"].update(name="pass"),
        "must not name the Secret that holds the source",
    ),
    "duplicate target names": (
        lambda o: o["spec"]["targets"].append({"name": "out", "kubernetesSecret": {"name": "other"}}),
        "duplicate entries",
    ),
    "two targets write one secret": (
        lambda o: o["spec"]["targets"].append({"name": "out2", "kubernetesSecret": {"name": "out"}}),
        "name the same Secret",
    ),
    "template entry with both sources": (
        lambda o: o["spec"]["targets"][0]["kubernetesSecret"].update(
            template={"data": {"tls.crt": {"fromKey": "A", "fromFile": "b"}}}
        ),
        "exactly one of fromKey or fromFile",
    ),
    "template entry with no source": (
        lambda o: o["spec"]["targets"][0]["kubernetesSecret"].update(template={"data": {"tls.crt": {}}}),
        "exactly one of fromKey or fromFile",
    ),
    "template key not a secret key": (
        lambda o: o["spec"]["targets"][0]["kubernetesSecret"].update(template={"data": {"a/b": {"fromKey": "A"}}}),
        "template.data keys must be valid Secret keys",
    ),
    "fromFile escapes the bundle": (
        lambda o: o["spec"]["targets"][0]["kubernetesSecret"].update(
            template={"data": {"k": {"fromFile": "certs/../../etc/passwd"}}}
        ),
        "without '..' segments",
    ),
    "envFile escapes the bundle": (lambda o: o["spec"]["source"].update(envFile=".."), "without '..' segments"),
    "service account token type": (
        lambda o: o["spec"]["targets"][0]["kubernetesSecret"].update(type="kubernetes.io/service-account-token"),
        "not allowed",
    ),
    "helm release type": (
        lambda o: o["spec"]["targets"][0]["kubernetesSecret"].update(type="helm.sh/release.v1"),
        "not allowed",
    ),
    "reserved label": (
        lambda o: o["spec"]["targets"][0]["kubernetesSecret"].update(labels={"vaultbundle.io/owner": "me"}),
        "reserved for the operator",
    ),
    "storeRef with credentials": (
        lambda o: o["spec"]["targets"].append(
            {"name": "aws", "awsSecretsManager": {"storeRef": {"name": "s"}, "credentialsSecretRef": {"name": "c"}}}
        ),
        "with storeRef the connection and credentials come from the ClusterTargetStore",
    ),
    "vault without address or storeRef": (
        lambda o: o["spec"]["targets"].append(
            {"name": "v", "hashicorpVault": {"path": "a", "auth": {"tokenSecretRef": {"name": "t"}}}}
        ),
        "address and auth are required (or storeRef)",
    ),
    "rename collision": (
        lambda o: o["spec"]["targets"][0]["kubernetesSecret"].update(keys={"rename": {"A": "X", "B": "X"}}),
        "maps two bundle keys to the same Secret key",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_object_is_rejected(case: str) -> None:
    mutate, expected = BROKEN[case]
    found = errors(broken(mutate))
    assert found, f"{case}: accepted"
    assert any(expected in message for message in found), found


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1].removesuffix("[]").removesuffix("{}")


def test_reference_doc_names_every_field() -> None:
    # the reference, plus one page per external store kind (docs/targets/<kind>.md)
    doc = "\n".join(
        p.read_text()
        for p in [REPO_ROOT / "docs" / "crd-reference.md", *sorted((REPO_ROOT / "docs" / "targets").glob("*.md"))]
    )
    missing = sorted(
        {
            path
            for path, _ in walk(SCHEMA)
            if path not in ("apiVersion", "kind", "metadata", "spec", "status")
            and not path.endswith(("[]", "{}"))
            and not re.search(rf"[`{{,.\s]{re.escape(_leaf(path))}[`:,.}}\s\[]", doc)
        }
    )
    assert not missing, f"docs/crd-reference.md and docs/targets/*.md do not mention: {missing}"


STORE_KINDS = ["hashicorpVault", "githubActions", "gcpSecretManager", "awsSecretsManager", "azureKeyVault"]


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_every_store_kind_takes_a_store_ref_whose_rule_lists_the_connection_fields(kind: str) -> None:
    node = at(f"spec.targets.{kind}")
    ref = node["properties"]["storeRef"]
    assert ref["required"] == ["name"] and set(ref["properties"]) == {"name"}
    assert "ClusterTargetStore" in ref["description"] and "PolicyDenied" in ref["description"]
    (rule,) = [v for v in node["x-kubernetes-validations"] if v["rule"].startswith("!has(self.storeRef)")]
    named = set(re.findall(r"has\(self\.(\w+)\)", rule["rule"])) - {"storeRef"}
    assert named == set(stores.CONNECTION_FIELDS[kind]), "the CRD rule and vaultbundle.stores must list the same fields"
    for name in named:
        assert name in rule["message"]
        assert name in node["properties"], f"{kind}.{name} is not a field"
        if "default" in node["properties"][name]:  # a defaulted field may only be compared, never just has()
            assert stores.CONNECTION_DEFAULTS[kind][name] == node["properties"][name]["default"]


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_a_target_with_only_a_store_ref_is_valid(kind: str) -> None:
    extra = {"hashicorpVault": {"path": "tenants/x/app"}, "githubActions": {"repository": "acme/web"}}.get(kind, {})
    obj = broken(lambda o: o["spec"]["targets"].append({"name": "ext", kind: {"storeRef": {"name": "s"}, **extra}}))
    assert errors(obj) == []
