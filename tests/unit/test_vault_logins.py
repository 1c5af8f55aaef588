"""Vault Kubernetes-auth tokens held between cycles (targets/vault_logins.py): no TokenRequest and no login while a
held token of the same identity is valid; a token Vault refuses, a TTL running out, or another identity log in
afresh; nothing short-lived is kept and no token shows in a repr."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import hvac.exceptions
import pytest

from vaultbundle.errors import Reason, TargetError
from vaultbundle.targets import hashicorp_vault
from vaultbundle.targets.base import Owner
from vaultbundle.targets.hashicorp_vault import KIND, HashicorpVaultTarget, Login
from vaultbundle.targets.vault_logins import MARGIN_SECONDS, VaultLogins

SERVER = ("https://vault.example:8200", "", "")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_held_until_shortly_before_its_ttl_ends() -> None:
    clock = Clock()
    logins = VaultLogins(clock)
    logins.put(("k",), "s.token-1", 600)
    assert logins.get(("k",)) == "s.token-1"
    clock.now += 600 - MARGIN_SECONDS - 60 - 1  # the margin and a tenth of the TTL before the end
    assert logins.get(("k",)) == "s.token-1"
    clock.now += 1
    assert logins.get(("k",)) is None and len(logins) == 0


def test_short_lived_tokens_are_not_kept_and_the_map_is_bounded() -> None:
    logins = VaultLogins(Clock(), max_entries=2)
    logins.put(("short",), "s.short", 60)
    assert logins.get(("short",)) is None
    for name in ("a", "b", "c"):
        logins.put((name,), f"s.{name}", 3600)
    assert logins.get(("a",)) is None and logins.get(("c",)) == "s.c" and len(logins) == 2
    assert "s.c" not in repr(logins) and "s.b" not in repr(logins.__dict__["_entries"])


class FakeVault:
    """hvac.Client's few attributes a Kubernetes login uses; counts logins and lookups."""

    def __init__(self) -> None:
        self.token = ""
        self.logins = self.lookups = 0
        self.revoked: set[str] = set()
        self.auth = SimpleNamespace(token=SimpleNamespace(lookup_self=self.lookup_self), kubernetes=self)
        self.adapter = SimpleNamespace(close=lambda: None)

    def login(self, role: str, jwt: str, use_token: bool, mount_point: str) -> dict[str, Any]:
        assert jwt.startswith("jwt-") and use_token
        self.logins += 1
        self.token = f"s.vault-{id(self):x}-{self.logins}"  # unique across clients, as Vault's are
        return {"auth": {"client_token": self.token, "lease_duration": 600}}

    def lookup_self(self) -> dict[str, Any]:
        self.lookups += 1
        if self.token in self.revoked:
            raise hvac.exceptions.Forbidden("permission denied")
        return {"data": {}}


def _target(vault: FakeVault) -> HashicorpVaultTarget:
    raw = {
        "address": SERVER[0],
        "path": "apps/web",
        "auth": {"kubernetes": {"role": "web", "serviceAccountName": "sa"}},
    }
    return HashicorpVaultTarget(vault, KIND.parse(raw, "t"), Owner("team", "web", "uid-1"), {})


class Jwts:
    def __init__(self) -> None:
        self.requested = 0

    def login(self, namespace: str = "team") -> Login:
        async def jwt() -> str:
            self.requested += 1
            return f"jwt-{self.requested}"

        what = hashicorp_vault._kubernetes_what("kubernetes", "web", "sa")
        return Login("kubernetes", what, "kubernetes", "web", jwt=jwt, identity=(namespace, "sa", "vault"))


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> VaultLogins:
    logins = VaultLogins(Clock())
    monkeypatch.setattr(hashicorp_vault, "LOGINS", logins)
    return logins


async def test_a_second_cycle_reuses_the_token_without_token_request_or_login(held: VaultLogins) -> None:
    vault, jwts = FakeVault(), Jwts()
    await _target(vault).login(jwts.login(), SERVER)
    assert (jwts.requested, vault.logins, vault.lookups) == (1, 1, 0)
    again = FakeVault()
    await _target(again).login(jwts.login(), SERVER)  # a later cycle: a fresh client, the same identity
    assert (jwts.requested, again.logins, again.lookups) == (1, 0, 1)
    assert again.token == vault.token


async def test_another_identity_or_server_logs_in_itself(held: VaultLogins) -> None:
    vault, jwts = FakeVault(), Jwts()
    await _target(vault).login(jwts.login("team"), SERVER)
    other = FakeVault()
    await _target(other).login(jwts.login("team-b"), SERVER)  # the namesake ServiceAccount of another namespace
    elsewhere = FakeVault()
    await _target(elsewhere).login(jwts.login("team"), ("https://other-vault:8200", "", ""))
    assert jwts.requested == 3 and other.logins == 1 and elsewhere.logins == 1 and len(held) == 3


async def test_a_token_vault_refuses_is_dropped_and_the_cycle_logs_in_afresh(held: VaultLogins) -> None:
    vault, jwts = FakeVault(), Jwts()
    await _target(vault).login(jwts.login(), SERVER)
    again = FakeVault()
    again.revoked.add(vault.token)  # revoked in Vault since the first cycle
    await _target(again).login(jwts.login(), SERVER)
    assert (jwts.requested, again.logins, again.lookups) == (2, 1, 1) and again.token != vault.token
    assert held.get((*SERVER, "kubernetes", "web", "team", "sa", "vault")) == again.token


async def test_a_failed_login_holds_nothing(held: VaultLogins) -> None:
    vault, jwts = FakeVault(), Jwts()

    def refuse(*_: Any, **__: Any) -> Any:
        raise hvac.exceptions.Forbidden("role not bound")

    vault.auth.kubernetes = SimpleNamespace(login=refuse)
    with pytest.raises(TargetError) as failed:
        await _target(vault).login(jwts.login(), SERVER)
    assert failed.value.reason == Reason.AUTH_FAILED and len(held) == 0
