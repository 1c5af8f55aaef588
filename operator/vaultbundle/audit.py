"""vsync's audit trail: one CSV row in `<prefix>audit.csv` per CLI push and pull.

vsync users read this file to see who pushed or pulled which bundle, so our CLI appends the same rows the same
way (vsync's format and append protocol, see docs/vsync-compatibility.md):

* header `ts,action,version_ts,hostname,local_ip,os_user,git_email,vsync_version,bun_version,meta`; each row
  ends in `\\n`; a field is quoted only when it holds `"`, `,`, CR or LF (quotes doubled);
* append = GET (+ETag), then PUT old body + row with `If-Match` (or header + row with `If-None-Match: *` when
  absent); a lost race (412) retries, 3 attempts in all; a 403 skips the row silently;
* a failure never fails the command: `append` returns an outcome, it does not raise.

`vsync_version` says `vaultbundle/<version>` and `bun_version` stays empty, so our rows are told from vsync's.
"""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from . import __version__
from .errors import VaultBundleError
from .remote import AccessDenied, ObjectMissing, PreconditionFailed, S3Objects

OBJECT_NAME = "audit.csv"
HEADER = "ts,action,version_ts,hostname,local_ip,os_user,git_email,vsync_version,bun_version,meta"
ATTEMPTS = 3
MAX_META_BYTES = 2048
MAX_AUDIT_BYTES = 16 * 1024 * 1024
_NEEDS_QUOTES = ('"', ",", "\r", "\n")


class Outcome(StrEnum):
    APPENDED = "appended"
    SKIPPED = "skipped"  # 403: the credentials may not write the trail (vsync skips silently too)
    FAILED = "failed"


@dataclass(frozen=True)
class Row:
    """One audit event. Holds names and timestamps only, never a secret value."""

    ts: str
    action: str
    version_ts: str
    hostname: str
    local_ip: str
    os_user: str
    git_email: str
    vsync_version: str
    bun_version: str
    meta: str

    def render(self) -> str:
        return ",".join(csv_field(value) for value in astuple(self)) + "\n"


def csv_field(value: str) -> str:
    """RFC 4180 quoting, but only when needed (vsync's rule)."""
    if any(char in value for char in _NEEDS_QUOTES):
        return '"' + value.replace('"', '""') + '"'
    return value


def encode_meta(meta: Mapping[str, Any] | None) -> str:
    """Compact JSON, or empty; more than 2,048 bytes becomes `{"_truncated":true}`."""
    if not meta:
        return ""
    text = json.dumps(meta, separators=(",", ":"), ensure_ascii=False)
    return text if len(text.encode("utf-8")) <= MAX_META_BYTES else '{"_truncated":true}'


def iso_now(now: datetime | None = None) -> str:
    """JavaScript's `new Date().toISOString()`: UTC with milliseconds and a `Z`."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def row(action: str, version_ts: str, *, meta: Mapping[str, Any] | None = None, now: datetime | None = None) -> Row:
    """A row describing this machine and user, as vsync fills it."""
    hostname = socket.gethostname()
    return Row(
        ts=iso_now(now),
        action=action,
        version_ts=version_ts,
        hostname=hostname,
        local_ip=_local_ipv4(hostname),
        os_user=_os_user(),
        git_email=_git_email(),
        vsync_version=f"vaultbundle/{__version__}",
        bun_version="",
        meta=encode_meta(meta),
    )


def record(objects: S3Objects, prefix: str, action: str, version_ts: str) -> Outcome:
    """Append this machine's row for *action* to `<prefix>audit.csv`. Never raises."""
    return append(objects, prefix + OBJECT_NAME, row(action, version_ts))


def append(objects: S3Objects, key: str, event: Row, *, attempts: int = ATTEMPTS) -> Outcome:
    """Append *event* to the CSV at *key* with vsync's optimistic protocol. Never raises."""
    for _ in range(attempts):
        try:
            _append_once(objects, key, event)
        except PreconditionFailed:
            continue  # another writer appended between our GET and PUT: read again
        except AccessDenied:
            return Outcome.SKIPPED
        except VaultBundleError:
            return Outcome.FAILED
        return Outcome.APPENDED
    return Outcome.FAILED


def _append_once(objects: S3Objects, key: str, event: Row) -> None:
    try:
        stored = objects.get(key, max_bytes=MAX_AUDIT_BYTES)
    except ObjectMissing:
        stored = None
    line = event.render().encode("utf-8")
    if stored is None:
        objects.put(key, (HEADER + "\n").encode("utf-8") + line, create_only=True)
        return
    old = stored.body if not stored.body or stored.body.endswith(b"\n") else stored.body + b"\n"
    objects.put(key, old + line, if_match=stored.etag)


def _local_ipv4(hostname: str) -> str:
    """The first non-loopback IPv4 address of this host, else empty (no packet is sent)."""
    try:
        infos = socket.getaddrinfo(hostname, None, socket.AF_INET)
    except OSError:
        return ""
    addresses = [str(info[4][0]) for info in infos]
    return next((address for address in addresses if not address.startswith("127.")), "")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def _git_email() -> str:
    try:
        result = subprocess.run(
            ["git", "config", "user.email"],  # noqa: S607 - git from PATH, as vsync runs it
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""
