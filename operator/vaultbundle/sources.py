"""The two source Secrets of a VaultBundle (config blob and passphrase), read and checked; and the one reader of
a key of a ConfigMap (a dotsec `.sec` text, a schema).

Both live in the VaultBundle's own namespace (the spec parser refuses anything else). Every problem is a
`SourceError` whose reason tells the user what to create or fix; resync is immediate once they do, because the
controller watches the Secrets named here. `digest()` is a keyed HMAC over everything that decides which
bundle is opened and how: the cheap idle path compares it, never the values.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .crypto import configblob
from .digest import Digester
from .errors import Reason, SourceError
from .kube import KubeError
from .spec import SecretRef, VaultBundleSpec


class SecretReader(Protocol):
    """Where source Secrets are read from: the API (`Kube`), or the labelled sources' cache (sourcecache.py)."""

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class SourceReader(SecretReader, Protocol):
    """Source Secrets and ConfigMaps (a dotsec `.sec` text, a schema)."""

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Sources:
    """The decoded sources. Values are left out of the repr."""

    blob: str = field(repr=False)
    passphrase: str = field(repr=False)
    config: configblob.BootstrapConfig = field(repr=False)

    def digest(self, digester: Digester, spec: VaultBundleSpec, schema: str | None = None) -> str:
        """*schema*: the `spec.schema` text, if any (a changed schema re-checks the bundle)."""
        return digester.digest(
            {
                "config": self.blob,
                "passphrase": self.passphrase,
                "layout": spec.layout.value,
                "version": spec.version,
                "envFile": spec.env_file or "",
                **({"schema": schema} if schema is not None else {}),
            }
        )


async def _read_object(
    get: Callable[[str, str], Awaitable[dict[str, Any] | None]], namespace: str, name: str, label: str, missing: Reason
) -> dict[str, Any]:
    """GET one object of the namespace by name; *label* ("config Secret") names it in messages."""
    try:
        body = await get(namespace, name)
    except KubeError as exc:
        raise SourceError(Reason.KUBERNETES_API_ERROR, f"reading the {label} failed: {exc}") from None
    if body is None:
        raise SourceError(missing, f"{label} {name!r} not found in namespace {namespace!r}")
    return body


class SecretsOnce:
    """`get_secret` for one cycle: each Secret is fetched once however many keys (and targets) of the cycle read
    it, so the keys come from one version of it. Make one per cycle: nothing read outlives it."""

    def __init__(self, kube: SecretReader) -> None:
        self._kube = kube
        self._reads: dict[tuple[str, str], asyncio.Task[dict[str, Any] | None]] = {}

    def __repr__(self) -> str:
        return f"SecretsOnce({len(self._reads)} read)"

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        key = (namespace, name)
        if key not in self._reads:  # concurrent targets share the one read in flight
            self._reads[key] = asyncio.ensure_future(self._kube.get_secret(namespace, name))
        return await asyncio.shield(self._reads[key])


async def read_secret_value(kube: SecretReader, namespace: str, ref: SecretRef, what: str) -> str:
    """One key of one Secret as UTF-8 text, trailing whitespace removed; *what* names it in messages."""
    secret = await _read_object(kube.get_secret, namespace, ref.name, f"{what} Secret", Reason.SECRET_NOT_FOUND)
    raw = (secret.get("data") or {}).get(ref.key)
    if raw is None:
        raise SourceError(Reason.SECRET_KEY_NOT_FOUND, f"{what} Secret {ref.name!r} has no key {ref.key!r}")
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8").rstrip("\r\n\t ")
    except (binascii.Error, UnicodeDecodeError):
        raise SourceError(
            Reason.SECRET_INVALID, f"{what} Secret {ref.name!r} key {ref.key!r} is not UTF-8 text"
        ) from None
    if not text:
        raise SourceError(Reason.SECRET_INVALID, f"{what} Secret {ref.name!r} key {ref.key!r} is empty")
    return text


MAX_CONFIG_MAP_TEXT = 1024 * 1024  # characters: the apiserver's own limit for a whole ConfigMap


@dataclass(frozen=True)
class ConfigMapText:
    """One key of a ConfigMap and the resourceVersion it was read at (moves on every change)."""

    text: str = field(repr=False)
    revision: str


async def read_config_map_value(kube: SourceReader, namespace: str, ref: SecretRef, what: str) -> ConfigMapText:
    """One key of a ConfigMap of the VaultBundle's namespace (`data`, UTF-8 text); *what* names it."""
    config_map = await _read_object(
        kube.get_config_map, namespace, ref.name, f"{what} ConfigMap", Reason.CONFIG_MAP_NOT_FOUND
    )
    text = (config_map.get("data") or {}).get(ref.key)
    if not isinstance(text, str):
        raise SourceError(
            Reason.CONFIG_MAP_KEY_NOT_FOUND,
            f"{what} ConfigMap {ref.name!r} has no text key {ref.key!r} (binaryData is not read)",
        )
    if len(text) > MAX_CONFIG_MAP_TEXT:
        raise SourceError(Reason.SECRET_INVALID, f"{what} ConfigMap {ref.name!r} key {ref.key!r} is too large")
    revision = str((config_map.get("metadata") or {}).get("resourceVersion") or "")
    return ConfigMapText(text, revision)


async def read(kube: SecretReader, namespace: str, spec: VaultBundleSpec) -> Sources:
    """Read both Secrets and decode the config blob (a bad blob raises its vsync error)."""
    assert spec.config_ref is not None and spec.passphrase_ref is not None  # a vsync source (spec.parse)
    blob = await read_secret_value(kube, namespace, spec.config_ref, "config")
    passphrase = await read_secret_value(kube, namespace, spec.passphrase_ref, "passphrase")
    return Sources(blob, passphrase, configblob.decode(blob))
