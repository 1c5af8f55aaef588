"""Credential resolution is one choke point: every store's credentials, from a tenant Secret or the ambient
identity, pass through `Credentials.admit` before anything is read or any client is built."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import REPO
from vaultbundle.digest import Digester
from vaultbundle.errors import PolicyDeniedError, Reason, TargetError
from vaultbundle.fields import SecretRef
from vaultbundle.stores import Grant
from vaultbundle.targets import KINDS
from vaultbundle.targets.base import Owner, TargetContext
from vaultbundle.targets.credentials import Credentials, Source, credentials_for

# one spec per credential path of every store that has credentials
PATHS: list[tuple[str, dict[str, Any], Source]] = [
    ("githubActions", {"repository": "a/b", "auth": {"tokenSecretRef": {"name": "gh"}}}, Source.TENANT),
    (
        "githubActions",
        {"repository": "a/b", "auth": {"app": {"appID": 1, "installationID": 2, "privateKeySecretRef": {"name": "k"}}}},
        Source.TENANT,
    ),
    ("gcpSecretManager", {"project": "acme-prod", "credentialsSecretRef": {"name": "sa"}}, Source.TENANT),
    ("gcpSecretManager", {"project": "acme-prod"}, Source.AMBIENT),
    ("awsSecretsManager", {"region": "us-east-1", "credentialsSecretRef": {"name": "ak"}}, Source.TENANT),
    ("awsSecretsManager", {"region": "us-east-1"}, Source.AMBIENT),
    (
        "azureKeyVault",
        {"vaultURL": "https://v.vault.azure.net", "auth": {"clientSecretRef": {"name": "sp"}}},
        Source.TENANT,
    ),
    ("azureKeyVault", {"vaultURL": "https://v.vault.azure.net"}, Source.AMBIENT),
    (
        "hashicorpVault",
        {"address": "https://v:8200", "path": "a", "auth": {"tokenSecretRef": {"name": "t"}}},
        Source.TENANT,
    ),
    (
        "hashicorpVault",
        {
            "address": "https://v:8200",
            "path": "a",
            "auth": {"appRole": {"roleIdSecretRef": {"name": "r"}, "secretIdSecretRef": {"name": "s"}}},
        },
        Source.TENANT,
    ),
    (
        "hashicorpVault",
        {"address": "https://v:8200", "path": "a", "auth": {"kubernetes": {"role": "r", "serviceAccountName": "sa"}}},
        Source.SERVICE_ACCOUNT,
    ),
]


def _context(reads: list[tuple[str, str]], grant: Grant | None = None) -> TargetContext:
    async def read_secret(name: str, key: str) -> str:
        reads.append((name, key))
        return "value"

    return TargetContext(
        kube=None,  # type: ignore[arg-type]  # no store here may reach Kubernetes: the policy refuses first
        owner=Owner("web", "app", "uid"),
        digester=Digester(b"k" * 32),
        previous={},
        read_secret=read_secret,
        grant=grant,
    )


@pytest.mark.parametrize(("kind", "body", "source"), PATHS)
async def test_every_credential_path_passes_the_policy_first(
    kind: str, body: dict[str, Any], source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[Credentials, Source, str]] = []

    def deny(self: Credentials, source: Source, detail: str) -> None:
        asked.append((self, source, detail))
        raise TargetError(Reason.POLICY_DENIED, f"{self.kind}: {source.value} refused by policy")

    monkeypatch.setattr(Credentials, "admit", deny)
    reads: list[tuple[str, str]] = []
    target_kind = KINDS[kind]
    with pytest.raises(TargetError) as caught:
        await target_kind.connect(target_kind.parse(body, "p"), _context(reads))
    assert caught.value.reason is Reason.POLICY_DENIED
    assert reads == []  # refused before any tenant Secret was read
    ((credentials, asked_source, _),) = asked
    assert asked_source is source and credentials.kind == kind


async def test_admitted_reads_go_to_the_tenant_secret() -> None:
    # behaviour changed on purpose (#13): ambient() used to be admitted too; a tenant grant now refuses it
    reads: list[tuple[str, str]] = []
    tenant = Grant("githubActions", None, None, None)
    credentials = credentials_for(_context(reads, tenant), "githubActions", "https://api.github.com")
    assert await credentials.secret(SecretRef("gh", "token")) == "value"
    assert await credentials.secret_keys("sp", ["tenant-id", "client-id"]) == ["value", "value"]
    credentials.service_account("vault-writer")
    with pytest.raises(PolicyDeniedError, match="no ambient identity for tenants"):
        credentials.ambient()
    assert reads == [("gh", "token"), ("sp", "tenant-id"), ("sp", "client-id")]
    assert credentials.endpoint == "https://api.github.com"


async def test_without_a_grant_nothing_is_admitted() -> None:
    reads: list[tuple[str, str]] = []
    credentials = credentials_for(_context(reads), "githubActions")
    with pytest.raises(PolicyDeniedError):
        await credentials.secret(SecretRef("gh", "token"))
    with pytest.raises(PolicyDeniedError):
        credentials.ambient()
    assert reads == []


def test_no_store_reads_a_tenant_secret_around_the_choke_point() -> None:
    """Only credentials.py may call TargetContext.read_secret (a new store cannot bypass the policy)."""
    targets = REPO / "operator" / "vaultbundle" / "targets"
    readers = sorted(p.name for p in targets.glob("*.py") if "read_secret" in p.read_text())
    assert readers == ["base.py", "credentials.py"]  # base.py declares the field
