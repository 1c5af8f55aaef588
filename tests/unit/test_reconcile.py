"""The reconcile function without kopf, a cluster or a network: in-memory Kubernetes and S3 stand-ins."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from typing import Any

import pytest

from vaultbundle import bundles
from vaultbundle.bundles import Layout
from vaultbundle.crypto import configblob
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.digest import Digester
from vaultbundle.pool import CryptoPool
from vaultbundle.reconcile import Observed, Reconciler
from vaultbundle.remote import ObjectMissing, StoredObject

CONFIG = BootstrapConfig(
    endpoint="http://s3.invalid",
    region="r",
    bucket="b",
    access_key_id="a",
    secret_access_key="s",
    prefix="p/",
    env="prod",
    salt="0123456789abcdef",
    iterations=1000,
)
PASSPHRASE = "correct horse battery staple"


class MemoryObjects:
    """S3Objects' interface over a dict, with ETags and conditional GETs."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.requests = 0

    def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int = 0, require_length: bool = False
    ) -> StoredObject | None:
        self.requests += 1
        if key not in self.objects:
            raise ObjectMissing(key)
        etag = '"' + hashlib.md5(self.objects[key]).hexdigest() + '"'
        return None if if_none_match == etag else StoredObject(self.objects[key], etag)

    def put(self, key: str, body: bytes, *, create_only: bool = False) -> str:
        assert not (create_only and key in self.objects)
        self.objects[key] = body
        return '"' + hashlib.md5(body).hexdigest() + '"'

    def list_keys(self, prefix: str) -> list[str]:
        return [key for key in self.objects if key.startswith(prefix)]


class MemoryKube:
    """The Kube calls the reconciler makes, over dicts; every call is counted."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.calls: Counter[str] = Counter()

    @property
    def writes(self) -> int:
        return sum(n for name, n in self.calls.items() if not name.startswith("get"))

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls["get_secret"] += 1
        return self.secrets.get((namespace, name))

    async def apply_secret(self, namespace: str, body: dict[str, Any]) -> None:
        self.calls["apply_secret"] += 1
        fields = {f"f:{key}": {} for key in body["data"]}
        body = {
            **body,
            "metadata": {
                **body["metadata"],
                "managedFields": [{"manager": "vaultbundle", "operation": "Apply", "fieldsV1": {"f:data": fields}}],
            },
        }
        self.secrets[(namespace, body["metadata"]["name"])] = body

    async def delete_secret(self, namespace: str, name: str) -> None:
        self.calls["delete_secret"] += 1
        del self.secrets[(namespace, name)]

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.calls["patch_status"] += 1
        self.status = status

    def add_source_secrets(self) -> None:
        for name, key, value in (("cfg", "config", configblob.encode(CONFIG)), ("pass", "passphrase", PASSPHRASE)):
            self.secrets[("ns", name)] = {"data": {key: base64.b64encode(value.encode()).decode()}}

    def data(self, name: str) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in self.secrets[("ns", name)]["data"].items()}


@pytest.fixture
def world() -> tuple[MemoryKube, MemoryObjects, Reconciler]:
    kube, objects = MemoryKube(), MemoryObjects()
    kube.add_source_secrets()
    reconciler = Reconciler(
        kube,
        CryptoPool(workers=0),
        Digester(b"k" * 32),  # type: ignore[arg-type]
        s3_factory=lambda _config: objects,
    )  # type: ignore[arg-type,return-value]
    return kube, objects, reconciler


def push(objects: MemoryObjects, env: bytes) -> str:
    return bundles.push(
        objects,
        CONFIG,
        PASSPHRASE,
        CryptoPool(workers=0),
        {".env.prod": env},  # type: ignore[arg-type]
        layout=Layout.CLI,
    ).timestamp


def observed(status: dict[str, Any]) -> Observed:
    spec = {
        "source": {"configSecretRef": {"name": "cfg"}, "passphraseSecretRef": {"name": "pass"}},
        "targets": [{"name": "app", "kubernetesSecret": {"name": "out"}}],
    }
    return Observed(namespace="ns", name="web", uid="uid-1", generation=1, spec=spec, status=status)


async def test_first_sync_then_idle_then_rollback(world: tuple[MemoryKube, MemoryObjects, Reconciler]) -> None:
    kube, objects, reconciler = world
    first = push(objects, b"A=1\n")
    outcome = await reconciler.reconcile(observed({}))
    assert kube.data("out") == {"A": "1"} and outcome.status_written
    assert {c["type"]: c["reason"] for c in kube.status["conditions"]} == {
        "Ready": "Synced",
        "Verified": "Verified",
        "Synced": "Synced",
    }
    assert kube.status["bundle"]["timestamp"] == first and reconciler.pool.cache.stats.derivations == 1

    writes, requests, derivations = kube.writes, objects.requests, reconciler.pool.cache.stats.derivations
    idle = await reconciler.reconcile(observed(kube.status))
    assert idle.idle and not idle.status_written
    assert (kube.writes, objects.requests, reconciler.pool.cache.stats.derivations) == (
        writes,
        requests + 1,
        derivations,
    )

    second = push(objects, b"A=2\n")
    await reconciler.reconcile(observed(kube.status))
    assert kube.data("out") == {"A": "2"} and kube.status["lastAppliedTimestamp"] == second

    objects.put("p/latest", first.encode())
    writes = kube.calls["apply_secret"]
    refused = await reconciler.reconcile(observed(kube.status))
    assert kube.status["conditions"][0]["reason"] == "RollbackRefused" and refused.events[-1].type == "Warning"
    assert kube.calls["apply_secret"] == writes and kube.data("out") == {"A": "2"}


async def test_failed_target_does_not_take_the_cheap_path(world: tuple[MemoryKube, MemoryObjects, Reconciler]) -> None:
    kube, objects, reconciler = world
    push(objects, b"A=1\n")
    kube.secrets[("ns", "out")] = {"metadata": {"name": "out"}, "data": {}}  # someone else's Secret
    first = await reconciler.reconcile(observed({}))
    assert kube.status["targets"][0]["state"] == "Failed" and kube.status["targets"][0]["reason"] == "SecretNotOwned"
    assert ("Warning", "SecretNotOwned") in {(e.type, e.reason) for e in first.events}
    again = await reconciler.reconcile(observed(kube.status))  # the same failure: no Event spam, no status write
    assert not again.events and not again.status_written
    del kube.secrets[("ns", "out")]
    await reconciler.reconcile(observed(kube.status))  # the same pointer: still a full cycle, which now succeeds
    assert kube.data("out") == {"A": "1"} and kube.status["conditions"][0]["reason"] == "Synced"
