"""What one drift check of a gcpSecretManager target costs, counted by the in-process fake (gRPC calls by method):
the number docs/targets/gcpSecretManager.md reports. A check is the target's read-only plan; a value changed by
hand is found by it and rewritten as one new version. (AWS and Vault are counted on the test bed by
tests/e2e/test_drift.py.)"""

from __future__ import annotations

from e2e.fakes.gcp_secret_manager import FakeSecretManagerServer

from tests.integration.test_target_gcp_secret_manager import PROJECT, body, client, fake, payloads, server, sync
from vaultbundle.vault import Vault

__all__ = ["client", "fake", "server"]  # the fixtures

KEYS = Vault(kv={"A": "1", "B": "2", "C": "3"})


async def test_a_gcp_drift_check_costs_one_list_and_one_access_per_key(
    fake: FakeSecretManagerServer, client: object
) -> None:
    raw = body(fake)
    first = await sync(raw, KEYS)
    fake.state.calls.clear()
    check = await sync(raw, KEYS, previous=first.status)
    assert not check.plan.changed
    assert dict(fake.state.calls) == {"ListSecrets": 1, "AccessSecretVersion": 3}  # N + 1 for N = 3 keys

    client.add_secret_version(  # type: ignore[attr-defined]
        parent=f"projects/{PROJECT}/secrets/B", payload={"data": b"changed by hand"}
    )
    repaired = await sync(raw, KEYS, previous=first.status)
    assert repaired.plan.update == ["B"]
    assert payloads(fake)["B"] == [b"2", b"changed by hand", b"2"]  # one new version puts the value back
