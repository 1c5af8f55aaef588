"""awsSecretsManager and azureKeyVault specs: parsed without network, every error names its field path."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from vaultbundle.errors import CrossNamespaceError, SpecError
from vaultbundle.selection import SelectionError
from vaultbundle.spec import parse_selection
from vaultbundle.targets import aws_secrets_manager as aws
from vaultbundle.targets import azure_key_vault as azure
from vaultbundle.targets import parse_spec as parse
from vaultbundle.vault import Vault


def bundle_spec(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": {"configSecretRef": {"name": "cfg"}, "passphraseSecretRef": {"name": "pass"}},
        "targets": [{"name": "ext", kind: body}],
    }


def test_aws_defaults() -> None:
    target = parse(bundle_spec("awsSecretsManager", {"region": "eu-west-1"})).targets[0]
    body = target.body
    assert isinstance(body, aws.AwsSecretsManagerSpec)
    assert (body.mode, body.recovery_window_days, body.credentials) == ("PerKey", 7, None)
    assert not body.adopt and not body.prune and not body.force_delete_without_recovery
    assert target.selection.include_keys == ("*",)


def test_aws_credentials_defaults() -> None:
    body = aws.KIND.parse({"credentialsSecretRef": {"name": "aws"}}, "p")
    assert body.credentials == aws.CredentialsRef("aws", "access-key-id", "secret-access-key", "")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"region": "Mars"}, "spec.targets[0].awsSecretsManager.region 'Mars' is not an AWS region"),
        ({"mode": "Yaml"}, "spec.targets[0].awsSecretsManager.mode must be one of PerKey, Json"),
        ({"mode": "Json"}, "spec.targets[0].awsSecretsManager.name is required when mode is Json"),
        ({"name": "x"}, "spec.targets[0].awsSecretsManager.name is only used with mode: Json"),
        ({"mode": "Json", "name": "a b"}, "spec.targets[0].awsSecretsManager.name: 'a b'"),
        ({"namePrefix": "prod web/"}, "spec.targets[0].awsSecretsManager.namePrefix"),
        ({"endpoint": "localhost:4566"}, "spec.targets[0].awsSecretsManager.endpoint must be an http(s) URL"),
        ({"tags": {"managed-by": "me"}}, "spec.targets[0].awsSecretsManager.tags: 'managed-by' is reserved"),
        ({"tags": {"vaultbundle.io/owner": "x"}}, "'vaultbundle.io/owner' is reserved"),
        ({"tags": {"aws:cost": "x"}}, "'aws:cost' is reserved"),
        ({"tags": {"team": 1}}, "spec.targets[0].awsSecretsManager.tags must map strings to strings"),
        ({"recoveryWindowDays": 3}, "spec.targets[0].awsSecretsManager.recoveryWindowDays must be between 7 and 30"),
        ({"recoveryWindowDays": True}, "recoveryWindowDays must be an integer"),
        ({"credentialsSecretRef": {}}, "spec.targets[0].awsSecretsManager.credentialsSecretRef.name is required"),
        ({"roleArn": "admin"}, "spec.targets[0].awsSecretsManager.roleArn must be an IAM role ARN"),
        ({"externalId": "x"}, "spec.targets[0].awsSecretsManager.externalId needs roleArn"),
        ({"naming": {"case": "Title"}}, "spec.targets[0].awsSecretsManager.naming.case must be one of"),
        ({"adopt": "yes"}, "spec.targets[0].awsSecretsManager.adopt must be true or false"),
        ({"keys": {"include": "A"}}, "spec.targets[0].awsSecretsManager.keys.include must be a list of strings"),
    ],
)
def test_aws_errors_name_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as error:
        parse(bundle_spec("awsSecretsManager", body))
    assert message in str(error.value)


def test_aws_credentials_from_another_namespace_are_refused() -> None:
    with pytest.raises(CrossNamespaceError, match=r"credentialsSecretRef\.namespace"):
        parse(bundle_spec("awsSecretsManager", {"credentialsSecretRef": {"name": "a", "namespace": "other"}}))


def test_aws_names_are_transformed_then_prefixed() -> None:
    raw = {"namePrefix": "Prod/Web/", "naming": {"prefix": "app_", "case": "Upper", "underscoresToDashes": True}}
    body = aws.KIND.parse(raw, "p")
    desired = aws.KIND.desired(Vault(kv={"db_pass": "x"}), parse_selection(raw, "p"), body)
    assert desired == {"Prod/Web/APP-DB-PASS": b"x"}  # namePrefix verbatim, naming transformed


def test_aws_rejects_too_large_values() -> None:
    body = aws.KIND.parse({}, "p")
    with pytest.raises(SelectionError, match="BIG"):
        aws.KIND.desired(Vault(kv={"BIG": "x" * 70_000}), parse_selection({}, "p"), body)


def test_azure_defaults() -> None:
    body = parse(bundle_spec("azureKeyVault", {"vaultURL": "https://v.vault.azure.net/"})).targets[0].body
    assert isinstance(body, azure.AzureKeyVaultSpec)
    assert body.vault_url == "https://v.vault.azure.net" and body.content_type == "text/plain"
    assert body.client_secret is None and body.verify_challenge_resource and not body.prune and not body.adopt


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"vaultURL": ""}, "spec.targets[0].azureKeyVault.vaultURL is required"),
        ({"vaultURL": "http://v.vault.azure.net"}, "spec.targets[0].azureKeyVault.vaultURL must be an https URL"),
        ({"tags": {"vaultbundle-owner": "x"}}, "spec.targets[0].azureKeyVault.tags: 'vaultbundle-owner' is reserved"),
        ({"tags": {"Managed-By": "x"}}, "'Managed-By' is reserved"),
        ({"tags": {f"t{i}": "x" for i in range(13)}}, "at most 12 tags"),
        ({"auth": {"clientSecretRef": {}}}, "spec.targets[0].azureKeyVault.auth.clientSecretRef.name is required"),
        ({"auth": {"managedIdentityClientID": "abc"}}, "auth.managedIdentityClientID must be a client id"),
        ({"auth": {"authorityHost": "login"}}, "spec.targets[0].azureKeyVault.auth.authorityHost must be an https"),
        ({"apiVersion": "latest"}, "spec.targets[0].azureKeyVault.apiVersion must look like 7.6"),
        ({"caBundleSecretRef": {"key": "ca"}}, "spec.targets[0].azureKeyVault.caBundleSecretRef.name is required"),
        # left the spec (issue #13): always verified, token scope pinned; refused so a one-shot run says so
        ({"verifyChallengeResource": False}, "azureKeyVault.verifyChallengeResource was removed"),
        ({"naming": {"underscoresToDashes": True, "dashesToUnderscores": True}}, "exclude each other"),
        ({"prune": 1}, "spec.targets[0].azureKeyVault.prune must be true or false"),
    ],
)
def test_azure_errors_name_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as error:
        parse(bundle_spec("azureKeyVault", {"vaultURL": "https://v.vault.azure.net", **body}))
    assert message in str(error.value)


def test_azure_secret_refs_from_another_namespace_are_refused() -> None:
    for body in (
        {"auth": {"clientSecretRef": {"name": "sp", "namespace": "x"}}},
        {"caBundleSecretRef": {"name": "ca", "namespace": "x"}},
    ):
        with pytest.raises(CrossNamespaceError):
            parse(bundle_spec("azureKeyVault", {"vaultURL": "https://v.vault.azure.net", **body}))


def test_azure_binary_values_count_base64_size() -> None:
    body = azure.KIND.parse({"vaultURL": "https://v.vault.azure.net", "files": {"include": ["*"]}}, "p")
    selection = parse_selection({"files": {"include": ["*"]}}, "p")
    with pytest.raises(SelectionError, match=r"'k.bin': only letters"):  # '.' is not allowed in Key Vault names
        azure.KIND.desired(Vault(files={"k.bin": b"x"}), selection, body)
    selection = parse_selection({"files": {"include": ["*"], "rename": {"k.bin": "k-bin"}}}, "p")
    assert list(azure.KIND.desired(Vault(files={"k.bin": b"\xff" * 19_000}), selection, body)) == ["k-bin"]
    with pytest.raises(SelectionError, match="after base64"):  # 19,500 bytes -> 26,000 base64 characters > 25 KiB
        azure.KIND.desired(Vault(files={"k.bin": b"\xff" * 19_500}), selection, body)


def test_azure_module_imports_no_azure_sdk() -> None:
    code = (
        "import sys, vaultbundle.targets.azure_key_vault as m; m.KIND.parse({'vaultURL': 'https://v.vault.azure.net'},"
        " 'p'); bad = [n for n in sys.modules if n.startswith('azure')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_key_vault_token_scope_is_pinned_whatever_the_challenge_asks() -> None:
    """C2: a hostile vaultURL answering `resource="https://management.azure.com"` got an ARM token; now only
    Key Vault's own scope (per cloud, from vaultURL's host) is ever handed out."""
    from vaultbundle.targets.azure_key_vault import PinnedScope, key_vault_scope

    asked: list[tuple[str, ...]] = []

    class Inner:
        def get_token(self, *scopes: str, **_: Any) -> Any:
            asked.append(scopes)
            return type("T", (), {"token": "t", "expires_on": 1})()

    assert key_vault_scope("https://x.vault.azure.net") == "https://vault.azure.net/.default"
    assert key_vault_scope("https://x.vault.azure.cn:443/") == "https://vault.azure.cn/.default"
    assert key_vault_scope("https://127.0.0.1:8443") == "https://vault.azure.net/.default"
    pinned = PinnedScope(Inner(), key_vault_scope("https://x.vault.azure.net"))
    for hostile in (("https://management.azure.com/.default",), ("https://graph.microsoft.com/.default",), ()):
        with pytest.raises(ValueError, match="challenge resource"):
            pinned.get_token(*hostile)
        with pytest.raises(ValueError, match="challenge resource"):
            pinned.get_token_info(*hostile)
    assert asked == []
    assert pinned.get_token_info("https://vault.azure.net/.default").token == "t"
    assert asked == [("https://vault.azure.net/.default",)]
