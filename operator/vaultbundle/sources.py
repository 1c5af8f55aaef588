"""The two source Secrets of a VaultBundle (config blob and passphrase), read and checked.

Both live in the VaultBundle's own namespace (the spec parser refuses anything else). Every problem is a
`SourceError` whose reason tells the user what to create or fix; resync is immediate once they do, because the
controller watches the Secrets named here. `digest()` is a keyed HMAC over everything that decides which
bundle is opened and how: the cheap idle path compares it, never the values.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from .crypto import configblob
from .digest import Digester
from .errors import Reason, SourceError
from .kube import KubeError, SecretsAPI
from .spec import SecretRef, VaultBundleSpec


@dataclass(frozen=True)
class Sources:
    """The decoded sources. Values are left out of the repr."""

    blob: str = field(repr=False)
    passphrase: str = field(repr=False)
    config: configblob.BootstrapConfig = field(repr=False)

    def digest(self, digester: Digester, spec: VaultBundleSpec) -> str:
        return digester.digest(
            {
                "config": self.blob,
                "passphrase": self.passphrase,
                "layout": spec.layout.value,
                "version": spec.version,
                "envFile": spec.env_file or "",
            }
        )


async def read_secret_value(kube: SecretsAPI, namespace: str, ref: SecretRef, what: str) -> str:
    """One key of one Secret as UTF-8 text, trailing whitespace removed; *what* names it in messages."""
    try:
        secret = await kube.get_secret(namespace, ref.name)
    except KubeError as exc:
        raise SourceError(Reason.KUBERNETES_API_ERROR, f"reading the {what} Secret failed: {exc}") from None
    if secret is None:
        raise SourceError(Reason.SECRET_NOT_FOUND, f"{what} Secret {ref.name!r} not found in namespace {namespace!r}")
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


async def read(kube: SecretsAPI, namespace: str, spec: VaultBundleSpec) -> Sources:
    """Read both Secrets and decode the config blob (a bad blob raises its vsync error)."""
    blob = await read_secret_value(kube, namespace, spec.config_ref, "config")
    passphrase = await read_secret_value(kube, namespace, spec.passphrase_ref, "passphrase")
    return Sources(blob, passphrase, configblob.decode(blob))
