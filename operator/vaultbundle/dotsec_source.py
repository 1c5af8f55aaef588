"""A dotsec `.sec` file as a VaultBundle source (`spec.source.dotsec`): read, open, and check for rollback.

One cycle, in order (reconcile.py drives it):

1. `read_inputs`: everything but the file, read each cycle (cheap GETs, no decryption): the age identity
   Secret or the KMS key's access (`dotsec_kms_access.prepare`: the store policy, the credentials Secret or the
   ServiceAccount's role), the S3 config blob for an S3 object, and the schema text. Their keyed digest
   (`Inputs.digest`) joins the cheap-path key.
2. `fetch`: the `.sec` text, or None when it is unchanged since the last verified cycle: the ConfigMap's
   `resourceVersion`, or an S3 conditional GET on the object's ETag (a 304 transfers nothing). Unchanged input
   costs no decryption.
3. `open_file` (a worker thread): MAC, DEK, values and schema (`dotsec.open_sec`), the plaintext policy, then
   the rollback check. The result is the same `Bundle` the vsync source produces, so targets, selection and
   status work unchanged.

Rollback: the format has no sealed timestamp or version, so an older complete file verifies as well as the
newest. The operator keeps keyed digests (the namespace's `Digester`) of the verified MACs of the files it
applied, in order of first application (`status.dotsec.recentFiles`, newest first, at most
`MAX_RECENT_FILES`). A file found there below the newest is an older file coming back: `RollbackRefused`,
unless `spec.source.dotsec.pin` names its digest or `rollbackPolicy: Allow`. A file never applied before (or
forgotten past the bound) is new to us; the Git history of the file is the real record.

KMS credentials come from the tenant's own Secret or ServiceAccount, or from an admin's ClusterTargetStore
(`dotsec_kms_access`), never from the operator's own AWS identity; a tenant's KMS and STS endpoints are tenant
egress, checked against the operator's egress policy like the S3 endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import dotsec, metrics, schemas, sources
from .bundles import Bundle, Layout, Pointer
from .crypto import configblob
from .crypto.configblob import BootstrapConfig
from .digest import Digester
from .dotsec_kms_access import KMS_EGRESS, KmsAccess, prepare
from .dotsec_spec import DotsecSource
from .egress import EgressPolicy, guarded
from .errors import DotsecParseError, ManifestNotFoundError, Reason, RollbackRefusedError
from .kube import KubeAPI
from .remote import ObjectMissing, ObjectStore
from .spec import VaultBundleSpec
from .status import Event
from .targets.base import Owner
from .vault import Vault

MAX_RECENT_FILES = 10
SOURCE_EGRESS = "the S3 endpoint of the dotsec source's config blob"
MAX_SEC_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Inputs:
    """What opens the file (its age key, or the KMS key's access; the schema) and, for an S3 object, the
    bucket's config. Values stay out of the repr; `digest_items` are only ever digested."""

    key: dotsec.KeyUnwrapper | KmsAccess
    schema: str | None = field(repr=False)
    s3_config: BootstrapConfig | None = field(repr=False)
    digest_items: Mapping[str, str] = field(repr=False, default_factory=dict)

    def digest(self, digester: Digester, source: DotsecSource) -> str:
        return digester.digest(
            {
                **self.digest_items,
                "schema": self.schema if self.schema is not None else "\0none",
                "origin": source.origin,
                "plaintext": source.plaintext.value,
                "pin": source.pin,
            }
        )


@dataclass(frozen=True)
class SecText:
    text: str = field(repr=False)
    revision: str  # ConfigMap resourceVersion or S3 ETag


@dataclass(frozen=True)
class Opened:
    """A verified, decrypted file: the `Bundle` for the fan-out and what status and Events say about it."""

    bundle: Bundle
    pointer: Pointer  # layout dotsec; etag = the revision it was read at
    report: dotsec.Report
    file_digest: str
    events: tuple[Event, ...] = ()


async def read_inputs(
    kube: KubeAPI,
    reads: sources.SecretReader,
    owner: Owner,
    digester: Digester,
    source: DotsecSource,
    schema: str | None,
    egress: EgressPolicy | None,
) -> Inputs:
    namespace = owner.namespace
    items: dict[str, str] = {}
    s3_config = None
    if source.s3 is not None:
        blob = await sources.read_secret_value(reads, namespace, source.s3.config_ref, "config")
        s3_config, items["config"] = configblob.decode(blob), blob
    if source.identity is not None:
        identity = await sources.read_secret_value(reads, namespace, source.identity, "age identity")
        items["identity"] = identity
        return Inputs(dotsec.AgeIdentity.from_key_file(identity), schema, s3_config, digest_items=items)
    assert source.kms is not None  # dotsec_spec: exactly one key kind
    access = await prepare(kube, owner, digester, source.kms, egress)
    return Inputs(access, schema, s3_config, {**items, **access.digest_items})


def _decode(body: bytes, origin: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise DotsecParseError(f"the {origin} is not UTF-8 text") from None


def _s3_get(objects: ObjectStore, key: str, known: str | None) -> SecText | None:
    try:
        stored = objects.get(key, if_none_match=known, max_bytes=MAX_SEC_BYTES, require_length=True)
    except ObjectMissing:
        raise ManifestNotFoundError(f"no .sec object {key!r} in the config blob's bucket") from None
    if stored is None:
        return None
    return SecText(_decode(stored.body, f"S3 object {key!r}"), stored.etag)


async def fetch(
    kube: sources.SourceReader,
    namespace: str,
    source: DotsecSource,
    inputs: Inputs,
    objects: Callable[[BootstrapConfig], ObjectStore],
    egress: EgressPolicy | None,
    known: str | None,
) -> SecText | None:
    """The `.sec` text, or None when its revision is still *known* (nothing to decrypt)."""
    if source.config_map is not None:
        found = await sources.read_config_map_value(kube, namespace, source.config_map, "dotsec")
        return None if known and found.revision == known else SecText(found.text, found.revision)
    assert source.s3 is not None and inputs.s3_config is not None
    config = inputs.s3_config
    store = objects(config)
    try:
        return await asyncio.to_thread(
            guarded, egress, SOURCE_EGRESS, [config.endpoint], _s3_get, store, config.prefix + source.s3.key, known
        )
    finally:
        metrics.S3_REQUESTS.inc(store.requests)


def file_digest(digester: Digester, report: dotsec.Report) -> str:
    """The keyed digest that names a file in status: of its verified MAC (names, order, ciphertext, schema)."""
    return digester.digest({"dotsec-file-mac": report.file_mac})


def recent_files(status: Mapping[str, Any]) -> list[str]:
    found = (status.get("dotsec") or {}).get("recentFiles") or []
    return [str(entry) for entry in found if isinstance(entry, str)][:MAX_RECENT_FILES]


def check_rollback(digest: str, spec: VaultBundleSpec, status: Mapping[str, Any]) -> None:
    assert spec.dotsec is not None
    recent = recent_files(status)
    if spec.rollback_policy != "Refuse" or spec.dotsec.pin == digest or digest not in recent[1:]:
        return
    raise RollbackRefusedError(
        f"this dotsec file ({digest}) was applied before the newest one ({recent[0]}): an older file came back; "
        "nothing was changed (set spec.source.dotsec.pin to its digest, or rollbackPolicy: Allow, to roll back "
        "on purpose)"
    )


def _open(
    sec: SecText, key: dotsec.KeyUnwrapper, schema: str | None, source: DotsecSource
) -> tuple[dotsec.Values, dotsec.Report]:
    # warn is ours to report (an Event), so the reader is asked to allow; refuse raises in the reader
    policy = dotsec.PlaintextPolicy.REFUSE if source.plaintext is dotsec.PlaintextPolicy.REFUSE else None
    return dotsec.open_sec(sec.text, key, schema, plaintext=policy or dotsec.PlaintextPolicy.ALLOW)


def _events(report: dotsec.Report, source: DotsecSource) -> list[Event]:
    events = schemas.warning_events(list(report.warnings))
    if report.plaintext_keys and source.plaintext is dotsec.PlaintextPolicy.WARN:
        names = ", ".join(report.plaintext_keys[:50])
        message = (
            f"plaintext value(s), not covered by the file MAC (anyone who can edit the file can change them): {names}"
        )
        events.append(Event("Warning", Reason.DOTSEC_PLAINTEXT, message))
    return events


async def open_file(
    sec: SecText,
    inputs: Inputs,
    spec: VaultBundleSpec,
    digester: Digester,
    status: Mapping[str, Any],
    egress: EgressPolicy | None,
) -> Opened:
    """Verify and decrypt (in a worker thread; a tenant's KMS call is tenant egress), then refuse an older file."""
    source = spec.dotsec
    assert source is not None
    if isinstance(inputs.key, KmsAccess):
        access, key = inputs.key, await inputs.key.unwrapper()  # credentials only now: a file is opened
        policy = egress if access.egress_urls else None  # a ClusterTargetStore's endpoints are the admin's
        values, report = await asyncio.to_thread(
            guarded, policy, KMS_EGRESS, access.egress_urls, _open, sec, key, inputs.schema, source
        )
    else:
        values, report = await asyncio.to_thread(_open, sec, inputs.key, inputs.schema, source)
    metrics.DOTSEC_OPENS.inc()
    digest = file_digest(digester, report)
    check_rollback(digest, spec, status)
    bundle = Bundle(layout=Layout.DOTSEC, timestamp="", generation=0, vault=Vault(kv=dict(values)))
    return Opened(bundle, Pointer(Layout.DOTSEC, "", sec.revision), report, digest, tuple(_events(report, source)))


def status_entry(opened: Opened, status: Mapping[str, Any], *, applied: bool) -> dict[str, Any]:
    """`status.dotsec`: what was verified, and the bounded list of applied files (moved only when applied)."""
    recent = recent_files(status)
    if applied and opened.file_digest not in recent:
        recent = [opened.file_digest, *recent][:MAX_RECENT_FILES]
    report = opened.report
    return {
        "macVerified": report.mac_verified,
        "provider": report.provider,
        "keys": len(report.keys),
        "encryptedKeys": len(report.encrypted_keys),
        "plaintextKeys": list(report.plaintext_keys[:100]),
        "fileDigest": opened.file_digest,
        "revision": opened.pointer.etag,
        "recentFiles": recent,
    }


def verified_message(opened: Opened) -> str:
    report = opened.report
    return (
        f"dotsec file {opened.file_digest} authenticated (file MAC verified, @provider={report.provider}): "
        f"{len(report.keys)} key(s), {len(report.encrypted_keys)} encrypted"
    )
