"""The digest key's source: file, else one Secret in the operator's namespace (create-if-absent), else random.

The real apiserver path (two starts, one Secret, no annotation rewritten) is in tests/e2e/test_chart_rbac.py.
"""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from vaultbundle import digest_key
from vaultbundle.digest import Digester


class FakeCore:
    """Secrets by (namespace, name); `race` makes the first create lose to a concurrent writer."""

    def __init__(self, race: bool = False, status: int | None = None) -> None:
        self.secrets: dict[tuple[str, str], Any] = {}
        self.race, self.status, self.creates = race, status, 0

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        if self.status:
            raise ApiException(status=self.status, reason="Forbidden")
        if (namespace, name) not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return self.secrets[(namespace, name)]

    def create_namespaced_secret(self, namespace: str, body: dict[str, Any]) -> None:
        self.creates += 1
        name = body["metadata"]["name"]
        if self.race:
            self.secrets[(namespace, name)] = SimpleNamespace(data={"digest-key": base64.b64encode(b"w" * 32).decode()})
            raise ApiException(status=409, reason="AlreadyExists")
        self.secrets[(namespace, name)] = SimpleNamespace(data=body["data"])


def test_created_once_then_reused() -> None:
    core = FakeCore()
    first = digest_key.load_or_create(core, "ops", "k")  # type: ignore[arg-type]
    second = digest_key.load_or_create(core, "ops", "k")  # type: ignore[arg-type]
    assert first == second and len(first) >= 32 and core.creates == 1


def test_a_lost_creation_race_uses_the_winners_key() -> None:
    core = FakeCore(race=True)
    assert digest_key.load_or_create(core, "ops", "k") == b"w" * 32  # type: ignore[arg-type]


def test_same_key_as_mounting_the_secret_as_a_file(tmp_path: Any) -> None:
    core = FakeCore()
    key = digest_key.load_or_create(core, "ops", "k")  # type: ignore[arg-type]
    mounted = tmp_path / "digest-key"
    mounted.write_bytes(base64.b64decode(core.secrets[("ops", "k")].data["digest-key"]))
    assert Digester(key).digest({"A": "1"}) == Digester.from_file_or_random(str(mounted)).digest({"A": "1"})


def test_unusable_or_forbidden_secret_is_a_clear_error() -> None:
    core = FakeCore()
    core.secrets[("ops", "k")] = SimpleNamespace(data={"digest-key": base64.b64encode(b"short").decode()})
    with pytest.raises(digest_key.DigestKeyError, match="at least 16 bytes"):
        digest_key.load_or_create(core, "ops", "k")  # type: ignore[arg-type]
    with pytest.raises(digest_key.DigestKeyError, match=r"HTTP 403.*grant get and create"):
        digest_key.load_or_create(FakeCore(status=403), "ops", "k")  # type: ignore[arg-type]


async def test_namespace_and_name_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    core = FakeCore()
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    monkeypatch.setenv("VAULTBUNDLE_DIGEST_KEY_SECRET", "rel-digest-key")
    one = await digest_key.load_digester(core, None)  # type: ignore[arg-type]
    two = await digest_key.load_digester(core, None)  # type: ignore[arg-type]
    assert list(core.secrets) == [("ops", "rel-digest-key")]
    assert one.digest({"A": "1"}) == two.digest({"A": "1"})


async def test_replicas_electing_a_leader_share_the_key_in_that_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.delenv("VAULTBUNDLE_DIGEST_KEY_SECRET", raising=False)
    core = FakeCore()
    one = await digest_key.load_digester(core, None, fallback_namespace="leases-here")  # type: ignore[arg-type]
    two = await digest_key.load_digester(core, None, fallback_namespace="leases-here")  # type: ignore[arg-type]
    assert list(core.secrets) == [("leases-here", "vaultbundle-digest-key")]
    assert one.digest({"A": "1"}) == two.digest({"A": "1"})


async def test_without_a_namespace_the_key_is_random(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setattr(digest_key, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "absent")
    core = FakeCore()
    one = await digest_key.load_digester(core, None)  # type: ignore[arg-type]
    two = await digest_key.load_digester(core, None)  # type: ignore[arg-type]
    assert one.digest({"A": "1"}) != two.digest({"A": "1"}) and not core.secrets
