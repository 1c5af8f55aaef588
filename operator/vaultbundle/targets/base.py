"""The Target protocol, shared by every store.

A *kind* (one module per store, registered in `targets/__init__.py`) validates its spec without network
access (`parse`), says what the store should hold for a bundle (`desired`), and opens a connection with the
credentials of the VaultBundle's namespace (`connect`). The connected *target* computes a plan by comparing
with what the store holds (no writes) and applies it. Messages and plans carry names, never values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import TargetError

if TYPE_CHECKING:
    from ..digest import Digester
    from ..kube import KubeAPI
    from ..spec import Selection
    from ..vault import Vault


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


class Tagged(Protocol):
    """What a store holds under one name, as far as ownership goes: its tags and whether it is deleted."""

    @property
    def tags(self) -> Mapping[str, str]: ...

    @property
    def deleted(self) -> bool: ...


R = TypeVar("R", bound=Tagged)


def claim(
    read: Callable[[str], R | None], names: Iterable[str], *, owner_tag: str, me: str, adopt: bool, deleted_note: str
) -> tuple[list[str], dict[str, R]]:
    """Read every name (8 at a time) and sort them for a plan of a tag-owned store (AWS, Azure): the names that
    do not exist yet, and the existing ones we may write (tagged as ours, or untagged with adopt).

    Another VaultBundle's secret is never taken over, an untagged one only with adopt: either raises
    `SecretNotOwned` naming every offender, before anything is written."""
    names = sorted(names)
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
        remotes = dict(zip(names, pool.map(read, names), strict=True))
    missing: list[str] = []
    claimed: dict[str, R] = {}
    foreign: list[str] = []
    unowned: list[str] = []
    for name, remote in remotes.items():
        owner = None if remote is None else remote.tags.get(owner_tag)
        if remote is None:
            missing.append(name)
        elif owner and owner != me:
            foreign.append(f"{name!r} (VaultBundle {owner})")
        elif not owner and not adopt:
            unowned.append(name + (f" ({deleted_note})" if remote.deleted else ""))
        else:
            claimed[name] = remote
    if foreign:
        raise TargetError(
            "SecretNotOwned",
            f"secrets managed by another VaultBundle are never taken over: {', '.join(foreign)}",
        )
    if unowned:
        raise TargetError(
            "SecretNotOwned",
            f"secrets exist that vaultbundle does not manage (no {owner_tag} tag): {', '.join(unowned)}; "
            "nothing was written; set adopt: true to take them over, or rename",
        )
    return missing, claimed


class WrittenNames:
    """The store names this very target wrote, kept in its status entry (`managedSecrets`, valid for one
    `remoteScope`: a project, region or vault). Prune deletes only from this set, and only what the store
    still marks as the VaultBundle's: so two targets of one VaultBundle on one store never prune each other."""

    def __init__(self, previous: Mapping[str, Any], scope: str) -> None:
        self.scope = scope
        books = previous.get("managedSecrets") if previous.get("remoteScope") == scope else None
        self.names: set[str] = {str(n) for n in books} if isinstance(books, list) else set()

    def status(self) -> dict[str, Any]:
        return {"remoteScope": self.scope, "managedSecrets": sorted(self.names)}

    def add(self, *names: str) -> None:
        self.names.update(names)

    def discard(self, name: str) -> None:
        self.names.discard(name)

    def prune_candidates(self, ours: set[str], desired: set[str]) -> list[str]:
        """Forget names the store no longer marks as ours (deleted or taken over meanwhile); of the rest, those
        that left the bundle."""
        self.names &= ours | desired
        return sorted(self.names - desired)


@dataclass(frozen=True)
class Owner:
    """The VaultBundle a target belongs to; its namespace bounds every read and write."""

    namespace: str
    name: str
    uid: str

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class TargetContext:
    kube: KubeAPI
    owner: Owner
    digester: Digester
    previous: Mapping[str, Any]  # this target's entry in the last status (e.g. per-key digests)
    read_secret: Callable[[str, str], Awaitable[str]]  # (Secret name, key) in the owner's namespace -> value


class Target(Protocol):
    """A connected store for one spec.targets[] entry."""

    def describe(self) -> str:
        """Where the secrets go, for messages (e.g. "Secret web-env", "repository acme/web")."""
        ...

    async def plan(self, desired: Mapping[str, bytes]) -> Plan:
        """Compare with what the store holds; no writes."""
        ...

    async def apply(self, plan: Plan, desired: Mapping[str, bytes]) -> None:
        """Make the store hold *desired*, changing only what *plan* lists."""
        ...

    def status_extra(self) -> dict[str, Any]:
        """Fields to keep in this target's status entry (e.g. per-key digests of a write-only store)."""
        ...


class TargetKind(Protocol):
    """One store: the spec.targets[] field name, spec parsing, the desired content, and connecting."""

    name: str

    def parse(self, raw: Mapping[str, Any], path: str) -> Any:
        """Validate this kind's spec object without network access; raise SpecError naming the field."""
        ...

    def desired(self, vault: Vault, selection: Selection, spec: Any) -> dict[str, bytes]:
        """What the store should hold (name -> value) for this bundle; raise SelectionError on bad names."""
        ...

    async def connect(self, spec: Any, context: TargetContext) -> Target:
        """Build clients with the configured (or ambient) credentials; raise TargetError when that fails."""
        ...
