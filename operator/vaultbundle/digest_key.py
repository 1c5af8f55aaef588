"""Where the operator's digest key comes from, so that a restart (or a second replica) digests the same way.

The content-digest annotation and the digests in status are HMACs under this key (see digest.py). A key that
changed on every restart would make the first cycle after it rewrite the annotation of every Secret it owns.
So, in order:

1. `--digest-key-file` (e.g. a mounted Secret): its bytes, surrounding whitespace removed;
2. else, when the operator knows its own namespace (`$POD_NAMESPACE`, else the leader-election namespace, else
   the ServiceAccount's namespace file in a pod): the Secret `$VAULTBUNDLE_DIGEST_KEY_SECRET` (default
   `vaultbundle-digest-key`), key `digest-key`, in that namespace. It is read; if absent, a random key is
   created with create-if-absent semantics (a POST that fails with 409 when another replica won the race,
   which then reads the winner's key), so every replica ends up with one key and a restart writes nothing;
3. else (a local run outside a cluster with no namespace given): a random key for this process, with a warning.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .digest import Digester
from .errors import Reason, VaultBundleError

DEFAULT_SECRET_NAME = "vaultbundle-digest-key"  # noqa: S105 - a Secret name, not a password
DATA_KEY = "digest-key"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MIN_KEY_BYTES = 16
log = logging.getLogger("vaultbundle.digest_key")


class DigestKeyError(VaultBundleError):
    """The digest key Secret cannot be read or created, or holds no usable key. The operator does not start."""

    reason = Reason.KUBERNETES_API_ERROR


def operator_namespace(fallback: str | None = None) -> str | None:
    """The operator's own namespace: `$POD_NAMESPACE` (the chart sets it), else *fallback* (the leader-election
    namespace: replicas that elect a leader must also agree on the key), else the pod's ServiceAccount file."""
    namespace = os.environ.get("POD_NAMESPACE", "").strip() or (fallback or "").strip()
    if namespace:
        return namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def secret_name() -> str:
    return os.environ.get("VAULTBUNDLE_DIGEST_KEY_SECRET", "").strip() or DEFAULT_SECRET_NAME


async def load_digester(
    core: k8s.CoreV1Api, key_file: str | None, *, fallback_namespace: str | None = None
) -> Digester:
    """The startup hook: a Digester from the file, else from the Secret, else random (see the module doc)."""
    if key_file:
        return Digester.from_file_or_random(key_file)
    namespace = operator_namespace(fallback_namespace)
    if namespace is None:
        log.warning(
            "no --digest-key-file and no namespace (POD_NAMESPACE or --leader-election-namespace): "
            "using a random digest key for this process (each restart rewrites every content-digest annotation once)"
        )
        return Digester.from_file_or_random(None)
    key = await asyncio.to_thread(load_or_create, core, namespace, secret_name())
    return Digester(key)


def load_or_create(core: k8s.CoreV1Api, namespace: str, name: str) -> bytes:
    """The key in Secret *namespace*/*name*; created with a random key when absent (one winner per race)."""
    secret = _read(core, namespace, name)
    if secret is None:
        key = base64.b64encode(os.urandom(32))  # stored as text, like a key made with `head -c 32 | base64`
        body = {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "vaultbundle"}},
            "type": "Opaque",
            "data": {DATA_KEY: base64.b64encode(key).decode("ascii")},
        }
        try:
            core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:  # 409: another replica created it first; use that one
                raise _failed("create", namespace, name, exc) from None
        else:
            log.info("created the digest key Secret %s/%s", namespace, name)
            return key
        secret = _read(core, namespace, name)
        if secret is None:
            raise DigestKeyError(f"digest key Secret {namespace}/{name} vanished right after it was created")
    return _key_of(secret, namespace, name)


def _read(core: k8s.CoreV1Api, namespace: str, name: str) -> Any:
    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _failed("get", namespace, name, exc) from None


def _key_of(secret: Any, namespace: str, name: str) -> bytes:
    encoded = (secret.data or {}).get(DATA_KEY)
    try:
        key = base64.b64decode(encoded or "", validate=True).strip()
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise DigestKeyError(
            f"digest key Secret {namespace}/{name} has no key {DATA_KEY!r} of at least {MIN_KEY_BYTES} bytes; "
            f"delete the Secret (a new key is then created) or fix its {DATA_KEY!r} entry"
        )
    return key


def _failed(verb: str, namespace: str, name: str, exc: ApiException) -> DigestKeyError:
    return DigestKeyError(
        f"cannot {verb} the digest key Secret {namespace}/{name}: HTTP {exc.status} {exc.reason or ''}".rstrip()
        + " (grant get and create on it, or pass --digest-key-file)"
    )
