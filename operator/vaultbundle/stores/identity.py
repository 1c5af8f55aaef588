"""Identity helpers: AWS session names and tags that tell VaultBundles apart (M3), per-namespace keys (L1).

Pure functions of their inputs, so an admin can compute the same names and a later step can key digests per
namespace without any state.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vaultbundle.errors import SpecError
from vaultbundle.stores.scope import DNS_LABEL, check_values

# --- AWS identity (M3) -----------------------------------------------------------------------------------------------
SESSION_TAG_KEYS = ("vaultbundle-namespace", "vaultbundle-name", "vaultbundle-uid")
_SESSION_SAFE = re.compile(r"[^\w+=,.@-]")


def role_session_name(namespace: str, name: str) -> str:
    """An injective RoleSessionName (≤ 64 chars of [\\w+=,.@-]): `vb-` + 26 base32 chars of SHA-256(namespace NUL
    name) + `-` + a readable, truncated `namespace.name`. The hash decides identity; the tail is for humans."""
    check_values(namespace, name)
    digest = hashlib.sha256(namespace.encode() + b"\0" + name.encode()).digest()
    tag = base64.b32encode(digest).decode().rstrip("=").lower()[:26]
    readable = _SESSION_SAFE.sub("-", f"{namespace}.{name}")
    return f"vb-{tag}-{readable}"[:64]


def assume_role_inputs(namespace: str, name: str, uid: str, external_id: str = "") -> dict[str, Any]:
    """Keyword arguments for STS AssumeRole (besides RoleArn) identifying one VaultBundle.

    Session tags namespace / name / uid are transitive (`TransitiveTagKeys`): a chained role session inherits them
    and cannot override them, so IAM trust and ABAC policies can key on `aws:PrincipalTag/vaultbundle-namespace`.
    The ExternalId comes only from a ClusterTargetStore (pass `store.connection.external_id`).
    """
    check_values(namespace, name)
    if not re.fullmatch(r"[0-9a-f-]{1,64}", uid):
        raise SpecError("uid must be a Kubernetes object UID")
    tags = [
        {"Key": SESSION_TAG_KEYS[0], "Value": namespace},
        {"Key": SESSION_TAG_KEYS[1], "Value": name},
        {"Key": SESSION_TAG_KEYS[2], "Value": uid},
    ]
    inputs: dict[str, Any] = {
        "RoleSessionName": role_session_name(namespace, name),
        "Tags": tags,
        "TransitiveTagKeys": list(SESSION_TAG_KEYS),
    }
    if external_id:
        inputs["ExternalId"] = external_id
    return inputs


# --- per-namespace digest keys (L1) ----------------------------------------------------------------------------------
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")
_HKDF_SALT = b"vaultbundle.io/namespace-key/v1"


def namespace_key(operator_key: bytes, namespace: str, purpose: str) -> bytes:
    """A 32-byte key for one namespace and one purpose (e.g. "digest"), HKDF-SHA256 from the operator's key.

    info = purpose NUL namespace (neither may contain NUL, so the encoding is injective). A digest under one
    namespace's key says nothing about another namespace's digests of the same value.
    """
    if len(operator_key) < 16:
        raise SpecError("the operator key must be at least 16 bytes")
    if len(namespace) > 63 or not DNS_LABEL.fullmatch(namespace):
        raise SpecError(f"namespace {namespace!r:.80} is not a Kubernetes namespace name")
    if not _PURPOSE.fullmatch(purpose):
        raise SpecError(f"purpose {purpose!r:.80} must be a short lower-case label, e.g. 'digest'")
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=purpose.encode() + b"\0" + namespace.encode()
    )
    return hkdf.derive(operator_key)
