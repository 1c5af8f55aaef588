"""One VaultBundle over the in-memory kit: a reconciler, its source Secrets, a bucket and helpers to drive it."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tests.kit.kube import MemoryKube
from tests.kit.s3 import MemoryObjects
from vaultbundle import bundles
from vaultbundle.bundles import Layout
from vaultbundle.crypto import configblob
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.digest import Digester
from vaultbundle.pool import CryptoPool
from vaultbundle.reconcile import FORCE_SYNC_ANNOTATION, Reconciler
from vaultbundle.status import Observed, Outcome

NAMESPACE = "ns"
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


def add_source_secrets(
    kube: MemoryKube, config: str = configblob.encode(CONFIG), *, namespace: str = NAMESPACE
) -> None:
    """The VaultBundle's two source Secrets, `cfg` (key `config`) and `pass` (key `passphrase`), in *namespace*."""
    kube.put_secret(namespace, "cfg", {"config": config})
    kube.put_secret(namespace, "pass", {"passphrase": PASSPHRASE})


class World:
    """The VaultBundle `ns/web` (or `<namespace>/web`) with one kubernetesSecret target `app` -> Secret `out`
    unless told otherwise."""

    def __init__(self, namespace: str = NAMESPACE) -> None:
        self.namespace = namespace
        self.kube = MemoryKube()
        self.objects = MemoryObjects()
        self.pool = CryptoPool(workers=0)
        self._pusher = CryptoPool(workers=0)  # its own key cache: pushes do not count as the operator's derivations
        self.reconciler = Reconciler(
            self.kube, self.pool, Digester(b"k" * 32), s3_factory=lambda _config: self.objects, min_refresh=0
        )
        add_source_secrets(self.kube, namespace=namespace)
        self.spec: dict[str, Any] = {
            "source": {"configSecretRef": {"name": "cfg"}, "passphraseSecretRef": {"name": "pass"}},
            "refreshInterval": "1m",
            "targets": [{"name": "app", "kubernetesSecret": {"name": "out"}}],
        }
        self.generation = 1
        self.force_token = ""

    def push(self, env: bytes) -> str:
        """Seal and upload a CLI-layout bundle holding `.env.prod`; returns its timestamp."""
        return bundles.push(
            self.objects, CONFIG, PASSPHRASE, self._pusher, {".env.prod": env}, layout=Layout.CLI
        ).timestamp

    def edit_spec(self, **fields: Any) -> None:
        self.spec = {**self.spec, **fields}
        self.generation += 1

    def force(self, token: str) -> None:
        self.force_token = token

    def observed(self, status: Mapping[str, Any] | None = None) -> Observed:
        annotations = {FORCE_SYNC_ANNOTATION: self.force_token} if self.force_token else {}
        return Observed(
            namespace=self.namespace,
            name="web",
            uid="uid-1",
            generation=self.generation,
            spec=copy.deepcopy(self.spec),
            status=copy.deepcopy(dict(self.kube.status if status is None else status)),
            annotations=annotations,
        )

    async def cycle(self) -> Outcome:
        """One reconcile of the VaultBundle as the cluster holds it now (its last written status)."""
        return await self.reconciler.reconcile(self.observed())

    @property
    def derivations(self) -> int:
        return self.pool.cache.stats.derivations

    def conditions(self) -> dict[str, tuple[str, str]]:
        return {c["type"]: (c["status"], c["reason"]) for c in self.kube.status.get("conditions", [])}

    def target(self, name: str = "app") -> dict[str, Any]:
        return next(t for t in self.kube.status["targets"] if t["name"] == name)

    def secret(self, name: str = "out") -> dict[str, str]:
        return self.kube.data(self.namespace, name)
