"""Bounds on what one VaultBundle writes into its status, so a bundle with many keys (or a store with a long
error) cannot grow the object past etcd's limits and make every later status patch fail.

Plan lists keep the first `MAX_PLAN_NAMES` names of each kind (sorted) and count the rest in `omitted`;
messages keep `MAX_MESSAGE_CHARS` characters and say that they were cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_PLAN_NAMES = 100
MAX_MESSAGE_CHARS = 1024
_CUT = " … (truncated)"


def plan(status: Mapping[str, Any]) -> dict[str, Any]:
    """A plan's status with each name list cut to `MAX_PLAN_NAMES`; `omitted` counts what was left out."""
    bounded: dict[str, Any] = dict(status)
    omitted = 0
    for kind in ("create", "update", "delete"):
        names = list(status.get(kind) or [])
        omitted += max(0, len(names) - MAX_PLAN_NAMES)
        bounded[kind] = names[:MAX_PLAN_NAMES]
    if omitted:
        bounded["omitted"] = omitted
    return bounded


def message(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - len(_CUT)] + _CUT
