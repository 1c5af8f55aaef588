"""The Target protocol: plan (diff against what the store holds, no writes) then apply the plan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class TargetError(Exception):
    """A target cannot be synced; `reason` goes to its status. Messages name keys, never values."""

    def __init__(self, reason: str, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry = retry


@dataclass
class Plan:
    """What apply would change, by key name only."""

    create: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: int = 0
    metadata: bool = False  # labels/annotations/type/owner change without a data change
    state: Any = None  # store-specific context for apply (e.g. the object read during planning)

    @property
    def changed(self) -> bool:
        return bool(self.create or self.update or self.delete or self.metadata)

    def as_status(self) -> dict[str, Any]:
        return {
            "create": sorted(self.create),
            "update": sorted(self.update),
            "delete": sorted(self.delete),
            "unchanged": self.unchanged,
        }


def diff(current: Mapping[str, bytes], desired: Mapping[str, bytes], *, prune: bool) -> Plan:
    plan = Plan()
    for name, value in desired.items():
        if name not in current:
            plan.create.append(name)
        elif current[name] != value:
            plan.update.append(name)
        else:
            plan.unchanged += 1
    if prune:
        plan.delete = [name for name in current if name not in desired]
    return plan


class Target(Protocol):
    kind: str

    async def plan(self, desired: Mapping[str, bytes]) -> Plan: ...

    async def apply(self, plan: Plan, desired: Mapping[str, bytes]) -> None: ...
