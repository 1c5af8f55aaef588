"""azureKeyVault end to end through azure-keyvault-secrets against the test bed's Key Vault server (HTTPS,
challenge auth, api-version 7.6, soft delete).

The test bed's vault has no Azure AD. Tenants may no longer use the operator's ambient identity (#13), so the
tests use the tenant path (clientSecretRef): the bed's service principal gets a static bearer token from a
stand-in for ClientSecretCredential; any other principal goes to the real one (the AuthFailed test). The CA
comes from caBundleSecretRef, as a user would configure it. Each test uses its own naming.prefix and owner, so
tests share the vault safely.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import azure.identity
import pytest
from azure.core.credentials import AccessToken
from azure.keyvault.secrets import SecretClient
from tests.e2e.helpers import keyvault_admin
from tests.kit.policy import with_grant

from vaultbundle.digest import Digester
from vaultbundle.egress import EgressPolicy
from vaultbundle.errors import SpecError, TargetError
from vaultbundle.selection import SelectionError
from vaultbundle.spec import parse_selection
from vaultbundle.targets.azure_key_vault import KIND, OWNER_TAG, AzureKeyVaultTarget
from vaultbundle.targets.base import Owner, Plan, TargetContext
from vaultbundle.targets.ownership import ADOPT_KEY, MANAGED_BY_KEY
from vaultbundle.vault import Vault

pytestmark = pytest.mark.testbed

PATH = "spec.targets[0].azureKeyVault"
WRITES = ("set_secret", "update_secret_properties", "begin_delete_secret", "begin_recover_deleted_secret")


class StaticToken:
    """A bearer token for a vault that accepts any token (the test bed's); records the scopes asked for."""

    scopes: ClassVar[list[tuple[str, ...]]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("test-token", int(time.time()) + 3600)


BED_PRINCIPAL = {("sp", "tenant-id"): "bed-tenant", ("sp", "client-id"): "bed-client", ("sp", "client-secret"): "bed"}


@pytest.fixture
def bed(testbed: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The bed's vault has no Azure AD: the tenant's service principal (BED_PRINCIPAL, from its clientSecretRef)
    gets a static token; any other client secret goes to the real ClientSecretCredential. (Ambient identity is
    no longer open to tenants, #13, so these tests use the tenant-credentials path.)"""
    real = azure.identity.ClientSecretCredential

    def credential(tenant: str, client: str, secret: str, **options: Any) -> Any:
        if (tenant, client, secret) == ("bed-tenant", "bed-client", "bed"):
            return StaticToken()
        return real(tenant, client, secret, **options)

    monkeypatch.setattr(azure.identity, "ClientSecretCredential", credential)
    return testbed


@pytest.fixture
def admin(bed: dict[str, str]) -> Iterator[SecretClient]:
    with keyvault_admin(bed) as client:
        yield client


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def owner() -> Owner:
    return Owner("ns", f"web-{uuid.uuid4().hex[:6]}", "uid")


# Each target's status entry between syncs, as reconcile keeps it (keyed by owner and naming prefix).
STATUS: dict[tuple[Owner, str], dict[str, Any]] = {}


LOCAL = EgressPolicy(allow_local=True)  # the fake listens on loopback (and so is not on *.vault.azure.net)


def context(
    bed: dict[str, str],
    owner: Owner,
    secrets: dict[tuple[str, str], str] | None,
    previous: dict[str, Any],
    egress: EgressPolicy = LOCAL,
) -> TargetContext:
    values = {
        ("vault-ca", "ca.crt"): Path(bed["AZURE_KEYVAULT_CA_FILE"]).read_text(),
        **BED_PRINCIPAL,
        **(secrets or {}),
    }

    async def read_secret(name: str, key: str) -> str:
        return values[(name, key)]

    return TargetContext(
        kube=None,
        owner=owner,
        digester=Digester(b"k" * 32),
        previous=previous,
        read_secret=read_secret,
        egress=egress,
    )  # type: ignore[arg-type]


def spec(bed: dict[str, str], prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "vaultURL": bed["AZURE_KEYVAULT_URL"],
        "apiVersion": bed["AZURE_KEYVAULT_API_VERSION"],
        "caBundleSecretRef": {"name": "vault-ca"},
        "auth": {"clientSecretRef": {"name": "sp"}},
        "naming": {"prefix": prefix, "underscoresToDashes": True},
        **extra,
    }


class Run:
    def __init__(self) -> None:
        self.plan = Plan()
        self.writes: list[tuple[str, str]] = []  # (SDK method, secret name)


async def sync(
    raw: dict[str, Any],
    vault: Vault,
    bed: dict[str, str],
    owner: Owner,
    secrets: dict[tuple[str, str], str] | None = None,
    egress: EgressPolicy = LOCAL,
) -> Run:
    parsed = KIND.parse(raw, PATH)
    desired = KIND.desired(vault, parse_selection(raw, PATH), parsed)
    key = (owner, str(raw["naming"]["prefix"]))
    target = await KIND.connect(
        parsed, with_grant(context(bed, owner, secrets, STATUS.get(key, {}), egress), KIND.name, raw)
    )
    assert isinstance(target, AzureKeyVaultTarget)
    assert target.describe() == f"Azure Key Vault {bed['AZURE_KEYVAULT_URL']}"
    run = Run()
    client = target.client

    class Recording:
        """The target's client, recording every write method it calls."""

        def __getattr__(self, attribute: str) -> Any:
            method = getattr(client, attribute)
            if attribute not in WRITES:
                return method

            def record(name: str, *args: Any, **kwargs: Any) -> Any:
                run.writes.append((attribute, name))
                return method(name, *args, **kwargs)

            return record

    target.client = Recording()
    run.plan = await target.plan(desired)
    if run.plan.changed:
        await target.apply(run.plan, desired)
    STATUS[key] = target.status_extra()
    return run


def versions(admin: SecretClient, name: str) -> list[str]:
    return sorted(str(v.version) for v in admin.list_properties_of_secret_versions(name))


async def test_create_then_idle_then_update_one(
    bed: dict[str, str], admin: SecretClient, prefix: str, owner: Owner
) -> None:
    raw = spec(bed, prefix, tags={"team": "web"}, files={"include": ["certs/*"]})
    vault = Vault(kv={"DB_PASSWORD": "s3cret", "API_KEY": "k1"}, files={"certs/ca.der": b"\xff\x00\x81bin"})
    names = [f"{prefix}API-KEY", f"{prefix}DB-PASSWORD", f"{prefix}certs-ca.der".replace(".", "-")]

    with pytest.raises(SelectionError, match=r"certs_ca\.der"):  # '.' is not allowed in Key Vault names
        KIND.desired(vault, parse_selection(raw, PATH), KIND.parse(raw, PATH))
    raw["files"]["rename"] = {"certs/ca.der": "certs-ca-der"}

    first = await sync(raw, vault, bed, owner)
    assert sorted(first.plan.create) == sorted(names) and [w for w, _ in first.writes] == ["set_secret"] * 3
    db = admin.get_secret(f"{prefix}DB-PASSWORD")
    assert db.value == "s3cret" and db.properties.content_type == "text/plain"
    assert db.properties.tags == {"team": "web", MANAGED_BY_KEY: "vaultbundle", OWNER_TAG: owner.ref}
    ca = admin.get_secret(f"{prefix}certs-ca-der")
    assert ca.properties.content_type == "application/octet-stream"
    assert ca.value is not None and base64.b64decode(ca.value) == b"\xff\x00\x81bin"
    assert (ca.properties.tags or {})["file-encoding"] == "base64"
    before = {name: versions(admin, name) for name in names}

    second = await sync(raw, vault, bed, owner)  # unchanged: reads only, no new version
    assert not second.plan.changed and second.plan.unchanged == 3 and second.writes == []
    assert {name: versions(admin, name) for name in names} == before

    third = await sync(raw, Vault(kv={"DB_PASSWORD": "rotated", "API_KEY": "k1"}, files=vault.files), bed, owner)
    assert third.plan.update == [f"{prefix}DB-PASSWORD"] and third.writes == [("set_secret", f"{prefix}DB-PASSWORD")]
    after = {name: versions(admin, name) for name in names}
    assert len(after[f"{prefix}DB-PASSWORD"]) == 2 and set(before[f"{prefix}DB-PASSWORD"]) < set(
        after[f"{prefix}DB-PASSWORD"]
    )
    assert all(after[n] == before[n] for n in names if n != f"{prefix}DB-PASSWORD")
    assert admin.get_secret(f"{prefix}DB-PASSWORD").value == "rotated"


async def test_tag_or_content_type_change_is_no_new_value_version(
    bed: dict[str, str], admin: SecretClient, prefix: str, owner: Owner
) -> None:
    await sync(spec(bed, prefix), Vault(kv={"A": "1"}), bed, owner)
    retagged = await sync(spec(bed, prefix, tags={"env": "prod"}), Vault(kv={"A": "1"}), bed, owner)
    assert retagged.plan.metadata and retagged.writes == [("update_secret_properties", f"{prefix}A")]
    assert (
        len(versions(admin, f"{prefix}A")) == 1
        and (admin.get_secret(f"{prefix}A").properties.tags or {})["env"] == "prod"
    )
    typed = await sync(
        spec(bed, prefix, tags={"env": "prod"}, contentType="application/json"), Vault(kv={"A": "1"}), bed, owner
    )
    assert typed.plan.update == [f"{prefix}A"]  # the content type is part of the version: a new one
    assert admin.get_secret(f"{prefix}A").properties.content_type == "application/json"


async def test_prune_soft_deletes_only_ours_and_recovers(
    bed: dict[str, str], admin: SecretClient, prefix: str, owner: Owner
) -> None:
    raw = spec(bed, prefix)
    await sync(raw, Vault(kv={"A": "1", "B": "2"}), bed, owner)
    admin.set_secret(f"{prefix}THEIRS", "x")
    admin.set_secret(f"{prefix}OTHER", "y", tags={OWNER_TAG: "ns/another"})

    kept = await sync(raw, Vault(kv={"A": "1"}), bed, owner)  # prune defaults to false
    assert kept.plan.delete == [] and kept.writes == []

    pruned = await sync({**raw, "prune": True}, Vault(kv={"A": "1"}), bed, owner)
    assert pruned.plan.delete == [f"{prefix}B"] and pruned.writes == [("begin_delete_secret", f"{prefix}B")]
    assert admin.get_deleted_secret(f"{prefix}B").name == f"{prefix}B"  # soft-deleted, not purged
    for name in ("A", "THEIRS", "OTHER"):
        assert admin.get_secret(f"{prefix}{name}").value is not None

    back = await sync({**raw, "prune": True}, Vault(kv={"A": "1", "B": "two"}), bed, owner)
    assert back.plan.create == [f"{prefix}B"] and back.plan.delete == []
    assert back.writes == [("begin_recover_deleted_secret", f"{prefix}B"), ("set_secret", f"{prefix}B")]
    assert admin.get_secret(f"{prefix}B").value == "two"
    assert (await sync({**raw, "prune": True}, Vault(kv={"A": "1", "B": "two"}), bed, owner)).writes == []


async def test_two_targets_of_one_vaultbundle_never_prune_each_other(
    bed: dict[str, str], admin: SecretClient, prefix: str, owner: Owner
) -> None:
    """Nested naming prefixes on one vault, both with prune: each deletes only what it wrote itself."""
    outer, inner = spec(bed, prefix, prune=True), spec(bed, f"{prefix}db-", prune=True)
    await sync(outer, Vault(kv={"A": "1", "B": "2"}), bed, owner)
    await sync(inner, Vault(kv={"X": "3"}), bed, owner)
    again = await sync(outer, Vault(kv={"A": "1", "B": "2"}), bed, owner)  # {prefix}db-X: ours, under the prefix
    assert again.plan.delete == [] and again.writes == []
    assert STATUS[(owner, prefix)]["managedSecrets"] == [f"{prefix}a", f"{prefix}b"]
    shrunk = await sync(outer, Vault(kv={"A": "1"}), bed, owner)
    assert shrunk.plan.delete == [f"{prefix}B"]
    assert admin.get_secret(f"{prefix}db-X").value == "3"
    assert not (await sync(inner, Vault(kv={"X": "3"}), bed, owner)).plan.changed


async def test_unowned_secret_left_alone_unless_adopt(
    bed: dict[str, str], admin: SecretClient, prefix: str, owner: Owner
) -> None:
    admin.set_secret(f"{prefix}DB", "theirs", tags={"team": "ops"})
    admin.set_secret(f"{prefix}SAME", "equal", content_type="text/plain")
    raw = spec(bed, prefix)
    with pytest.raises(TargetError) as refused:
        await sync(raw, Vault(kv={"DB": "ours", "SAME": "equal", "NEW": "n"}), bed, owner)
    assert refused.value.reason == "SecretNotOwned" and f"{prefix}DB" in str(refused.value)
    assert "theirs" not in str(refused.value) and "ours" not in str(refused.value)
    assert admin.get_secret(f"{prefix}DB").value == "theirs"
    assert not any(p.name == f"{prefix}NEW" for p in admin.list_properties_of_secrets())

    # adopt: true alone is not enough: each secret's owner opts in with a tag naming this VaultBundle
    with pytest.raises(TargetError, match=r"does not opt in.*tag vaultbundle-adopt=") as unconsented:
        await sync({**raw, "adopt": True}, Vault(kv={"DB": "ours", "SAME": "equal", "NEW": "n"}), bed, owner)
    assert unconsented.value.reason == "SecretNotOwned" and admin.get_secret(f"{prefix}DB").value == "theirs"
    token = f"{owner.namespace}.{owner.name}"
    for name, tags in ((f"{prefix}DB", {"team": "ops", ADOPT_KEY: token}), (f"{prefix}SAME", {ADOPT_KEY: token})):
        admin.update_secret_properties(name, admin.get_secret(name).properties.version, tags=tags)

    # the values of secrets not ours are never compared (no equality oracle): an equal one is rewritten too
    adopted = await sync({**raw, "adopt": True}, Vault(kv={"DB": "ours", "SAME": "equal", "NEW": "n"}), bed, owner)
    assert adopted.plan.update == [f"{prefix}DB", f"{prefix}SAME"] and adopted.plan.create == [f"{prefix}NEW"]
    assert len(versions(admin, f"{prefix}SAME")) == 2
    db = admin.get_secret(f"{prefix}DB")
    assert db.value == "ours" and db.properties.tags == {
        "team": "ops",
        ADOPT_KEY: token,
        MANAGED_BY_KEY: "vaultbundle",
        OWNER_TAG: owner.ref,
    }


async def test_another_vaultbundles_secret_is_never_taken(
    bed: dict[str, str], admin: SecretClient, prefix: str, owner: Owner
) -> None:
    admin.set_secret(f"{prefix}DB", "x", tags={OWNER_TAG: "other/app"})
    with pytest.raises(TargetError) as refused:
        await sync(spec(bed, prefix, adopt=True), Vault(kv={"DB": "ours"}), bed, owner)
    assert refused.value.reason == "SecretNotOwned" and "managed by another VaultBundle" in str(refused.value)
    assert "other/app" not in str(refused.value)  # the other tenant's VaultBundle is not named (security review L2)


async def test_invalid_names_and_case_collisions_rejected(bed: dict[str, str], prefix: str) -> None:
    raw = spec(bed, prefix, naming={"prefix": prefix})
    with pytest.raises(SelectionError) as bad:
        KIND.desired(
            Vault(kv={"OK": "1", "NO_UNDERSCORE": "2", "x" * 130: "3"}),
            parse_selection(raw, PATH),
            KIND.parse(raw, PATH),
        )
    assert "'NO_UNDERSCORE'" in str(bad.value) and "length must be 1..127" in str(bad.value)
    with pytest.raises(SelectionError) as clash:
        KIND.desired(Vault(kv={"db-pass": "1", "DB-PASS": "2"}), parse_selection(raw, PATH), KIND.parse(raw, PATH))
    assert "case-insensitive" in str(clash.value) and f"'{prefix}DB-PASS' and '{prefix}db-pass'" in str(clash.value)


async def test_bad_credentials_are_auth_failed(bed: dict[str, str], prefix: str, owner: Owner) -> None:
    raw = spec(
        bed,
        prefix,
        auth={"clientSecretRef": {"name": "sp"}, "authorityHost": "https://127.0.0.1:9"},  # no Azure AD reachable
    )
    secrets = {("sp", "tenant-id"): "tenant", ("sp", "client-id"): "client", ("sp", "client-secret"): "hunter2"}
    with pytest.raises(TargetError) as failed:
        await sync(raw, Vault(kv={"A": "value-1"}), bed, owner, secrets)
    assert failed.value.reason == "AuthFailed"
    assert "hunter2" not in str(failed.value) and "value-1" not in str(failed.value)


async def test_unknown_ca_is_unavailable_and_challenge_is_verified(
    bed: dict[str, str], prefix: str, owner: Owner
) -> None:
    without_ca = {k: v for k, v in spec(bed, prefix).items() if k != "caBundleSecretRef"}
    with pytest.raises(TargetError) as tls:
        await sync(without_ca, Vault(kv={"A": "1"}), bed, owner)
    assert tls.value.reason == "Unavailable" and "TLS" in str(tls.value)

    # verification is relaxed only for a loopback vault with --egress-allow-local (a test bed); an admin who merely
    # re-opens loopback with --egress-allow-cidr keeps it: the fake's challenge names vault.azure.net, not 127.0.0.1
    StaticToken.scopes.clear()
    reopened = EgressPolicy.build(allow_cidrs=["127.0.0.0/8"])
    with pytest.raises(TargetError) as challenge:
        await sync(spec(bed, prefix), Vault(kv={"A": "1"}), bed, owner, egress=reopened)
    assert challenge.value.reason == "InvalidVaultURL"
    assert StaticToken.scopes == []  # no token was even requested


async def test_tokens_are_only_ever_requested_for_key_vaults_scope(
    bed: dict[str, str], prefix: str, owner: Owner
) -> None:
    StaticToken.scopes.clear()
    await sync(spec(bed, prefix), Vault(kv={"A": "1"}), bed, owner)
    assert StaticToken.scopes and set(StaticToken.scopes) == {("https://vault.azure.net/.default",)}


async def test_verify_challenge_resource_left_the_spec(bed: dict[str, str], prefix: str) -> None:
    with pytest.raises(SpecError, match="verifyChallengeResource was removed"):
        KIND.parse({**spec(bed, prefix), "verifyChallengeResource": False}, PATH)
