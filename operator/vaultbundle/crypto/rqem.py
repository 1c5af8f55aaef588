"""RQEM0001 seal record: "RQEM0001" | 15-byte ASCII UTC timestamp "YYYYMMDD-HHMMSS" | payload (spec §3).

In the CLI layout it is the plaintext inside the envelope (payload = ZIP) and seals the bundle's timestamp;
in the runtime layout it is the unencrypted `manifest` object (payload ignored).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import BundleCorruptError

MAGIC = b"RQEM0001"
TIMESTAMP_LENGTH = 15
HEADER_LENGTH = len(MAGIC) + TIMESTAMP_LENGTH
_TIMESTAMP = re.compile(r"\d{8}-\d{6}")


def is_timestamp(value: str) -> bool:
    """True for a 15-character `YYYYMMDD-HHMMSS` string (these compare chronologically as strings)."""
    return _TIMESTAMP.fullmatch(value) is not None


def now_timestamp(now: datetime | None = None) -> str:
    """The current UTC time in vsync's timestamp format (second resolution)."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d-%H%M%S")


@dataclass(frozen=True)
class SealRecord:
    timestamp: str
    payload: bytes = field(repr=False)


def wrap(timestamp: str, payload: bytes = b"") -> bytes:
    if not is_timestamp(timestamp):
        raise ValueError("timestamp must be 15 characters: YYYYMMDD-HHMMSS")
    return MAGIC + timestamp.encode("ascii") + payload


def unwrap(data: bytes) -> SealRecord:
    if len(data) < HEADER_LENGTH:
        raise BundleCorruptError(f"RQEM0001 record is {len(data)} bytes; the minimum is {HEADER_LENGTH}")
    if data[: len(MAGIC)] != MAGIC:
        raise BundleCorruptError("record does not start with RQEM0001")
    raw_ts = data[len(MAGIC) : HEADER_LENGTH]
    try:
        timestamp = raw_ts.decode("ascii")
    except UnicodeDecodeError:
        raise BundleCorruptError("RQEM0001 timestamp is not ASCII") from None
    if not is_timestamp(timestamp):
        raise BundleCorruptError("RQEM0001 timestamp is not in YYYYMMDD-HHMMSS form")
    return SealRecord(timestamp=timestamp, payload=data[HEADER_LENGTH:])


def verify_against_remote_ts(data: bytes, expected_timestamp: str) -> SealRecord:
    """Unwrap and require the sealed timestamp to equal *expected_timestamp* (vsync's anti-rollback check)."""
    record = unwrap(data)
    if not hmac.compare_digest(record.timestamp.encode("ascii"), expected_timestamp.encode("utf-8")):
        raise BundleCorruptError(
            f"sealed timestamp {record.timestamp} does not match the pointer's {expected_timestamp!r}: "
            "the pointer was moved to another bundle"
        )
    return record
