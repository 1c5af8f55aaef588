"""One VaultBundle over the in-memory kit: a reconciler, its source Secrets, a bucket and helpers to drive it."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pyrage

from tests.dotsec_writer import schema_sha256, write_sec
from tests.kit.kube import MemoryKube
from tests.kit.s3 import MemoryObjects
from vaultbundle import bundles
from vaultbundle.bundles import Layout
from vaultbundle.crypto import configblob
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.digest import Digester
from vaultbundle.dotsec.schema import EMPTY_SHA256
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


class DotsecWorld(World):
    """The VaultBundle `ns/web` over a dotsec source: the `.sec` text in ConfigMap `app-sec` (key `.sec`), the
    age identity in Secret `age` (key `identity`); one kubernetesSecret target `app` -> Secret `out`."""

    def __init__(self, namespace: str = NAMESPACE) -> None:
        super().__init__(namespace)
        self.identity = pyrage.x25519.Identity.generate()
        self.kube.put_secret(namespace, "age", {"identity": f"# age-keygen\n{self.identity}\n"})
        self.spec["source"] = {
            "dotsec": {"configMapRef": {"name": "app-sec"}, "identitySecretRef": {"name": "age"}},
        }

    def write(self, body: str, *, schema: str | None = None) -> str:
        """A `.sec` of *body* (`KEY=<<plain>>` lines are encrypted) under this world's identity; returns it."""
        digest = schema_sha256(schema) if schema is not None else EMPTY_SHA256
        text, _, _ = write_sec(body, identity=self.identity, schema_sha256=digest)
        return text

    def publish(self, body: str, *, schema: str | None = None) -> str:
        """Write the file into the ConfigMap (a new resourceVersion); returns the text."""
        text = self.write(body, schema=schema)
        self.kube.put_config_map(self.namespace, "app-sec", {".sec": text})
        return text

    def set_text(self, text: str) -> None:
        self.kube.put_config_map(self.namespace, "app-sec", {".sec": text})

    def set_schema(self, schema: str, name: str = "schema") -> None:
        """Put *schema* in ConfigMap *name* (key `dotsec.schema`) and point `spec.schema` at it."""
        self.kube.put_config_map(self.namespace, name, {"dotsec.schema": schema})
        self.edit_spec(schema={"configMapRef": {"name": name}})

    def edit_dotsec(self, **fields: Any) -> None:
        self.edit_spec(source={"dotsec": {**self.spec["source"]["dotsec"], **fields}})
