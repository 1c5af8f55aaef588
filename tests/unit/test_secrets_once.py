"""sources.SecretsOnce: within one cycle a credentials Secret is fetched once, however many keys and targets
read it (an AWS access key id and secret were two GETs per sync and per drift check)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from vaultbundle.errors import Reason, SourceError
from vaultbundle.sources import SecretsOnce, read_secret_value
from vaultbundle.spec import SecretRef


class Kube:
    def __init__(self, secrets: dict[tuple[str, str], dict[str, str]]) -> None:
        self.secrets, self.gets = secrets, 0

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets += 1
        await asyncio.sleep(0.01)  # in flight long enough for a concurrent reader to find it
        data = self.secrets.get((namespace, name))
        if data is None:
            return None
        return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


async def test_two_keys_and_two_concurrent_targets_cost_one_get() -> None:
    kube = Kube({("team", "aws"): {"access-key-id": "AKIA", "secret-access-key": "s3cr3t"}})
    once = SecretsOnce(kube)  # type: ignore[arg-type]  # only get_secret is used
    keys = [SecretRef("aws", "access-key-id"), SecretRef("aws", "secret-access-key")] * 2
    values = await asyncio.gather(*(read_secret_value(once, "team", ref, "credentials") for ref in keys))
    assert values == ["AKIA", "s3cr3t", "AKIA", "s3cr3t"] and kube.gets == 1
    assert "s3cr3t" not in repr(once) and "AKIA" not in repr(once)


async def test_a_new_cycle_reads_again_and_a_missing_secret_fails_every_reader() -> None:
    kube = Kube({("team", "aws"): {"access-key-id": "AKIA"}})
    await read_secret_value(SecretsOnce(kube), "team", SecretRef("aws", "access-key-id"), "credentials")  # type: ignore[arg-type]
    await read_secret_value(SecretsOnce(kube), "team", SecretRef("aws", "access-key-id"), "credentials")  # type: ignore[arg-type]
    assert kube.gets == 2
    once = SecretsOnce(kube)  # type: ignore[arg-type]
    for key in ("a", "b"):
        with pytest.raises(SourceError) as missing:
            await read_secret_value(once, "team", SecretRef("gone", key), "credentials")
        assert missing.value.reason == Reason.SECRET_NOT_FOUND
    with pytest.raises(SourceError) as no_key:
        await read_secret_value(once, "team", SecretRef("aws", "secret-access-key"), "credentials")
    assert no_key.value.reason == Reason.SECRET_KEY_NOT_FOUND
    assert kube.gets == 2 + 2  # one GET for "gone", one for "aws" in the third cycle
