"""hashicorpVault spec parsing and desired content: no network; every error names the field path."""

from __future__ import annotations

from typing import Any

import pytest

from vaultbundle.errors import CrossNamespaceError, SpecError
from vaultbundle.selection import SelectionError
from vaultbundle.spec import SecretRef, Selection
from vaultbundle.targets import hashicorp_vault, parse_spec
from vaultbundle.targets.hashicorp_vault import AppRoleAuth, HashicorpVaultSpec, KubernetesAuth, TokenAuth
from vaultbundle.targets.naming import Naming
from vaultbundle.vault import Vault

KIND = hashicorp_vault.KIND
WHERE = "spec.targets[0].hashicorpVault"
TOKEN = {"tokenSecretRef": {"name": "vault-token"}}


def _raw(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"address": "https://vault.example:8200", "path": "apps/web", "auth": TOKEN}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as caught:
        KIND.parse(raw, WHERE)
    return str(caught.value)


def test_defaults() -> None:
    parsed = KIND.parse(_raw(), WHERE)
    assert parsed == HashicorpVaultSpec(
        address="https://vault.example:8200",
        path="apps/web",
        auth=TokenAuth(SecretRef("vault-token", "token")),
        mount="secret",
        namespace="",
        kv_version=2,
        ca_bundle_ref=None,
        naming=Naming(),
        adopt=False,
        prune=True,
    )


def test_every_field() -> None:
    parsed = KIND.parse(
        _raw(
            address="http://127.0.0.1:8200/",
            namespace="team-a/apps",
            mount="kv/team",
            kvVersion=1,
            caBundleSecretRef={"name": "vault-ca", "key": "ca.pem"},
            naming={"prefix": "APP_", "case": "Upper"},
            adopt=True,
            prune=False,
        ),
        WHERE,
    )
    assert parsed.address == "http://127.0.0.1:8200"  # trailing '/' dropped
    assert (parsed.namespace, parsed.mount, parsed.kv_version) == ("team-a/apps", "kv/team", 1)
    assert parsed.ca_bundle_ref == SecretRef("vault-ca", "ca.pem")
    assert parsed.naming == Naming(prefix="APP_", case="Upper")
    assert parsed.adopt and not parsed.prune


def test_auth_kinds_and_their_defaults() -> None:
    kube = KIND.parse(_raw(auth={"kubernetes": {"role": "web", "serviceAccountName": "vault-writer"}}), WHERE)
    assert kube.auth == KubernetesAuth(role="web", service_account_name="vault-writer", mount="kubernetes")
    assert kube.auth.audiences == ("vault",)
    approle = KIND.parse(
        _raw(auth={"appRole": {"roleIdSecretRef": {"name": "ar"}, "secretIdSecretRef": {"name": "ar", "key": "s"}}}),
        WHERE,
    )
    assert approle.auth == AppRoleAuth(SecretRef("ar", "role-id"), SecretRef("ar", "s"), mount="approle")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"address": None}, f"{WHERE}.address is required"),
        ({"address": "vault:8200"}, f"{WHERE}.address must be an http(s) URL"),
        ({"address": "ftp://vault"}, f"{WHERE}.address must be an http(s) URL"),
        ({"address": "https://user:pw@vault"}, f"{WHERE}.address must be an http(s) URL"),
        ({"address": "https://vault?x=1"}, f"{WHERE}.address must be an http(s) URL"),
        ({"address": "https://vault:99999"}, f"{WHERE}.address must be an http(s) URL"),
        ({"path": None}, f"{WHERE}.path is required"),
        ({"path": "/apps/web"}, f"{WHERE}.path must be a relative Vault path"),
        ({"path": "apps/../web"}, f"{WHERE}.path must be a relative Vault path"),
        ({"path": ".."}, f"{WHERE}.path must be a relative Vault path"),
        ({"path": "apps//web"}, f"{WHERE}.path must be a relative Vault path"),
        ({"path": "apps/web/"}, f"{WHERE}.path must be a relative Vault path"),
        ({"path": "apps/web?version=1"}, f"{WHERE}.path must be a relative Vault path"),
        ({"path": "a" * 513}, f"{WHERE}.path must be a relative Vault path"),
        ({"path": 5}, f"{WHERE}.path must be a string"),
        ({"mount": "/secret"}, f"{WHERE}.mount must be a relative Vault path"),
        ({"namespace": "../root"}, f"{WHERE}.namespace must be a relative Vault path"),
        ({"kvVersion": 3}, f"{WHERE}.kvVersion must be 1 or 2"),
        ({"kvVersion": "2"}, f"{WHERE}.kvVersion must be 1 or 2"),
        ({"kvVersion": True}, f"{WHERE}.kvVersion must be 1 or 2"),
        ({"adopt": "yes"}, f"{WHERE}.adopt must be true or false"),
        ({"prune": 1}, f"{WHERE}.prune must be true or false"),
        ({"caBundleSecretRef": {}}, f"{WHERE}.caBundleSecretRef.name is required"),
        ({"naming": {"case": "Title"}}, f"{WHERE}.naming.case must be one of"),
        ({"auth": None}, f"{WHERE}.auth is required"),
        ({"auth": {}}, f"{WHERE}.auth must set exactly one of tokenSecretRef, kubernetes, appRole"),
        ({"auth": {**TOKEN, "appRole": {}}}, f"{WHERE}.auth must set exactly one of"),
        ({"auth": {"userpass": {}}}, f"{WHERE}.auth: unknown field(s) userpass"),
        ({"auth": {"tokenSecretRef": {"key": "t"}}}, f"{WHERE}.auth.tokenSecretRef.name is required"),
        ({"auth": {"tokenSecretRef": {"name": "Bad_Name"}}}, f"{WHERE}.auth.tokenSecretRef.name must be a Secret"),
        ({"auth": {"tokenSecretRef": {"name": "t", "key": "a/b"}}}, f"{WHERE}.auth.tokenSecretRef.key must be"),
        ({"auth": {"kubernetes": {"serviceAccountName": "sa"}}}, f"{WHERE}.auth.kubernetes.role is required"),
        ({"auth": {"kubernetes": {"role": "r"}}}, f"{WHERE}.auth.kubernetes.serviceAccountName is required"),
        (
            {"auth": {"kubernetes": {"role": "r", "serviceAccountName": "sa", "audiences": []}}},
            f"{WHERE}.auth.kubernetes.audiences must list 1 to 8",
        ),
        (
            {"auth": {"kubernetes": {"role": "r", "serviceAccountName": "sa", "mount": "a/../b"}}},
            f"{WHERE}.auth.kubernetes.mount must be a relative Vault path",
        ),
        (
            {"auth": {"appRole": {"secretIdSecretRef": {"name": "s"}}}},
            f"{WHERE}.auth.appRole.roleIdSecretRef is required",
        ),
        (
            {"auth": {"appRole": {"roleIdSecretRef": {"name": "r"}}}},
            f"{WHERE}.auth.appRole.secretIdSecretRef is required",
        ),
    ],
)
def test_errors_name_the_field(fields: dict[str, Any], needle: str) -> None:
    assert needle in _error(_raw(**fields))


@pytest.mark.parametrize(
    "auth",
    [
        {"tokenSecretRef": {"name": "t", "namespace": "other"}},
        {"kubernetes": {"role": "r", "serviceAccountName": "sa", "namespace": "other"}},
        {"appRole": {"roleIdSecretRef": {"name": "r", "namespace": "kube-system"}, "secretIdSecretRef": {"name": "s"}}},
    ],
)
def test_cross_namespace_references_are_refused(auth: dict[str, Any]) -> None:
    with pytest.raises(CrossNamespaceError) as caught:
        KIND.parse(_raw(auth=auth), WHERE)
    assert caught.value.reason == "CrossNamespaceReference" and WHERE in str(caught.value)


def test_whole_spec_parse_reaches_the_kind() -> None:
    """Through spec.parse, as the operator does: the path is spec.targets[i].hashicorpVault.<field>."""
    body = {
        "source": {"configSecretRef": {"name": "cfg"}, "passphraseSecretRef": {"name": "pp"}},
        "targets": [
            {"name": "k8s", "kubernetesSecret": {"name": "web"}},
            {"name": "vault", "hashicorpVault": _raw(path="apps/../x")},
        ],
    }
    with pytest.raises(SpecError, match=r"spec\.targets\[1\]\.hashicorpVault\.path"):
        parse_spec(body)
    body["targets"][1]["hashicorpVault"] = _raw(keys={"include": ["DB_*"]})
    parsed = parse_spec(body)
    assert parsed.targets[1].kind == "hashicorpVault"
    assert parsed.targets[1].selection.include_keys == ("DB_*",)


def test_desired_selection_naming_and_utf8() -> None:
    vault = Vault(kv={"db_password": "p", "api_key": "k"}, files={"certs/ca.pem": b"PEM", "bin/blob": b"\xff\x00"})
    spec = KIND.parse(_raw(naming={"prefix": "app_", "case": "Upper"}), WHERE)
    selection = Selection(include_files=("certs/*",))
    assert KIND.desired(vault, selection, spec) == {
        "APP_DB_PASSWORD": b"p",
        "APP_API_KEY": b"k",
        "APP_CERTS_CA.PEM": b"PEM",
    }
    with pytest.raises(SelectionError, match=r"not UTF-8.*'bin_blob'.*files\.exclude") as caught:
        KIND.desired(vault, Selection(include_files=("*",)), spec)
    assert caught.value.reason == "InvalidSelection"


def test_desired_reports_collisions_from_naming() -> None:
    vault = Vault(kv={"a": "1", "A": "2"})
    spec = KIND.parse(_raw(naming={"case": "Upper"}), WHERE)
    with pytest.raises(SelectionError, match="both map to 'A'"):
        KIND.desired(vault, Selection(), spec)
