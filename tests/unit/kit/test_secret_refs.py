"""One Secret-reference parser for the source refs and every store: name and key checked, a namespace refused
with one wording, wherever the ref sits."""

from __future__ import annotations

from typing import Any

import pytest

from vaultbundle.errors import CrossNamespaceError, Reason, SpecError
from vaultbundle.fields import SecretRef, secret_key, secret_object, secret_ref
from vaultbundle.targets import parse_spec

WORDING = "is refused: a VaultBundle reads Secrets only from its own namespace"


def test_name_and_default_key() -> None:
    assert secret_ref({"name": "web-token"}, "p", "token") == SecretRef("web-token", "token")
    assert secret_ref({"name": "a.b", "key": "ca.crt"}, "p", "token") == SecretRef("a.b", "ca.crt")


@pytest.mark.parametrize("name", ["Upper", "under_score", "-lead", "trail-", "x" * 254, "a/b"])
def test_names_must_be_dns_subdomains(name: str) -> None:
    with pytest.raises(SpecError, match=r"p\.name must be a Secret name \(a DNS subdomain"):
        secret_ref({"name": name}, "p", "k")


@pytest.mark.parametrize("key", ["a/b", "sp ace", "é", "k" * 254])
def test_keys_must_be_secret_keys(key: str) -> None:
    with pytest.raises(SpecError, match=r"p\.key must be a Secret key"):
        secret_ref({"name": "s", "key": key}, "p", "k")


def test_missing_ref_or_name_is_named() -> None:
    with pytest.raises(SpecError, match=r"^p is required$"):
        secret_ref(None, "p", "k")
    with pytest.raises(SpecError, match=r"^p\.name is required$"):
        secret_ref({"key": "k"}, "p", "k")


def test_optional_key_may_stay_empty_but_is_checked_when_set() -> None:
    assert secret_key(None, "p.sessionTokenKey", default="") == ""
    with pytest.raises(SpecError, match=r"p\.sessionTokenKey must be a Secret key"):
        secret_key("bad key", "p.sessionTokenKey", default="")


def test_a_namespace_is_refused_unless_it_is_the_own_one() -> None:
    with pytest.raises(CrossNamespaceError) as caught:
        secret_object({"name": "s", "namespace": "other"}, "p")
    assert caught.value.reason is Reason.CROSS_NAMESPACE_REFERENCE
    assert str(caught.value).startswith(f"p.namespace 'other' {WORDING}")
    ref, name = secret_object({"name": "s", "namespace": "web"}, "p", namespace="web")  # the source refs
    assert name == "s" and ref["namespace"] == "web"


def _bundle(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": {"configSecretRef": {"name": "cfg"}, "passphraseSecretRef": {"name": "pass"}},
        "targets": [{"name": "t", kind: body}],
    }


# every place a Secret is referenced, with the path its error must name
REFS: list[tuple[str, dict[str, Any], str]] = [
    ("githubActions", {"repository": "a/b", "auth": {"tokenSecretRef": {"name": "gh"}}}, "auth.tokenSecretRef"),
    (
        "githubActions",
        {"repository": "a/b", "auth": {"app": {"appID": 1, "installationID": 2, "privateKeySecretRef": {"name": "k"}}}},
        "auth.app.privateKeySecretRef",
    ),
    ("gcpSecretManager", {"project": "acme-prod", "credentialsSecretRef": {"name": "sa"}}, "credentialsSecretRef"),
    ("awsSecretsManager", {"region": "us-east-1", "credentialsSecretRef": {"name": "ak"}}, "credentialsSecretRef"),
    (
        "azureKeyVault",
        {"vaultURL": "https://v.vault.azure.net", "auth": {"clientSecretRef": {"name": "sp"}}},
        "auth.clientSecretRef",
    ),
    (
        "azureKeyVault",
        {"vaultURL": "https://v.vault.azure.net", "caBundleSecretRef": {"name": "ca"}},
        "caBundleSecretRef",
    ),
    (
        "hashicorpVault",
        {"address": "https://v:8200", "path": "a", "auth": {"tokenSecretRef": {"name": "t"}}},
        "auth.tokenSecretRef",
    ),
]


def _with(body: dict[str, Any], where: str, **fields: str) -> dict[str, Any]:
    """*body* with the ref at dotted *where* updated by *fields*."""
    copy: dict[str, Any] = {**body}
    node = copy
    parts = where.split(".")
    for part in parts[:-1]:
        node[part] = {**node[part]}
        node = node[part]
    node[parts[-1]] = {**node[parts[-1]], **fields}
    return copy


@pytest.mark.parametrize(("kind", "body", "where"), REFS)
def test_every_store_ref_refuses_a_namespace_with_the_same_words(kind: str, body: dict[str, Any], where: str) -> None:
    parse_spec(_bundle(kind, body))  # valid as it is
    with pytest.raises(CrossNamespaceError) as caught:
        parse_spec(_bundle(kind, _with(body, where, namespace="kube-system")))
    assert str(caught.value).startswith(f"spec.targets[0].{kind}.{where}.namespace 'kube-system' {WORDING}")


@pytest.mark.parametrize(("kind", "body", "where"), REFS)
def test_every_store_ref_checks_the_secret_name(kind: str, body: dict[str, Any], where: str) -> None:
    with pytest.raises(SpecError, match=rf"spec\.targets\[0\]\.{kind}\.{where}\.name must be a Secret name"):
        parse_spec(_bundle(kind, _with(body, where, name="Not_A_Name")))


def test_source_refs_use_the_same_parser() -> None:
    bad = {"configSecretRef": {"name": "cfg", "key": "no/slash"}, "passphraseSecretRef": {"name": "pass"}}
    with pytest.raises(SpecError, match=r"spec\.source\.configSecretRef\.key must be a Secret key"):
        parse_spec({**_bundle("kubernetesSecret", {"name": "x"}), "source": bad})
