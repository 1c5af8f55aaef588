"""The Target protocol, shared by every store.

A *kind* (one module per store, registered in `targets/__init__.py`) validates its spec without network
access (`parse`), says what the store should hold for a bundle (`desired`), and opens a connection with the
credentials of the VaultBundle's namespace (`connect`). The connected *target* computes a plan by comparing
with what the store holds (no writes) and applies it. Messages and plans carry names, never values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ..egress import SECURE_DEFAULT, EgressPolicy
from ..fields import Selection

if TYPE_CHECKING:
    from ..digest import Digester
    from ..kube import KubeAPI
    from ..stores import Grant
    from ..vault import Vault

StateT = TypeVar("StateT")
SpecT = TypeVar("SpecT")


@dataclass
class Plan(Generic[StateT]):
    """What apply would change, by key name only; `state` is what the store's plan read, for its apply."""

    create: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: int = 0
    metadata: bool = False  # labels/annotations/type/owner change without a data change
    state: StateT | None = None  # the store's own StoreState (e.g. the objects read during planning)

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


def diff(current: Mapping[str, bytes], desired: Mapping[str, bytes], *, prune: bool) -> Plan[Any]:
    plan: Plan[Any] = Plan()
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


class SecretBook(Protocol):
    """What the operator remembers of the managed Secrets one target wrote (drift.py keeps it, in memory only)."""

    def seen(self, secret: str, metadata: Mapping[str, Any]) -> None:
        """The Secret as written by us (the apply's answer) or read and found in sync: a watch event carrying
        its resourceVersion is our own write, not drift."""
        ...

    def written_object(self, secret: str, metadata: Mapping[str, Any]) -> bool:
        """This very Secret object (same uid) was written by this target in this process."""
        ...


@dataclass(frozen=True)
class TargetContext:
    """What a target may use: the operator's Kubernetes client, the owner, the digest key, its last status
    entry, a reader of Secrets in the owner's namespace, the policy's Grant (credentials go through
    `credentials.Credentials`, which admits only what the Grant covers) and the operator's egress policy for
    tenant URLs (`threads.in_thread` applies it to every SDK call)."""

    kube: KubeAPI
    owner: Owner
    digester: Digester
    previous: Mapping[str, Any]  # this target's entry in the last status (e.g. per-key digests)
    read_secret: Callable[[str, str], Awaitable[str]]  # (Secret name, key) in the owner's namespace -> value
    grant: Grant | None = None  # the store policy's answer (`grants.authorize_target`); None: nothing is admitted
    egress: EgressPolicy = SECURE_DEFAULT  # the secure default: no loopback, no metadata addresses
    # where a Kubernetes Secret target records the Secrets it wrote or found in sync (drift.py)
    book: SecretBook | None = None
    resync: bool = False  # a timed check of a write-only store (githubActions resyncInterval): write every key

    @property
    def allow_local(self) -> bool:
        """Loopback tenant URLs allowed (`--egress-allow-local`, a test-bed convenience)."""
        return self.egress.allow_local


class StoreKind:
    """Defaults for a `TargetKind` (stores subclass it): no SDK to check, and no Secrets of the namespace written."""

    extra = ""
    sdk: tuple[str, ...] = ()

    def writes_secrets(self, spec: Any) -> tuple[str, ...]:
        return ()


class Target(Protocol):
    """A connected store for one spec.targets[] entry."""

    def describe(self) -> str:
        """Where the secrets go, for messages (e.g. "Secret web-env", "repository acme/web")."""
        ...

    async def plan(self, desired: Mapping[str, bytes]) -> Plan[Any]:
        """Compare with what the store holds; no writes."""
        ...

    async def apply(self, plan: Plan[Any], desired: Mapping[str, bytes]) -> None:
        """Make the store hold *desired*, changing only what *plan* lists."""
        ...

    def status_extra(self) -> dict[str, Any]:
        """Fields to keep in this target's status entry (e.g. per-key digests of a write-only store)."""
        ...


class TargetKind(Protocol[SpecT]):
    """One store: the spec.targets[] field name, its install extra and SDK modules (checked by the registry),
    spec parsing, the Secrets of the namespace it writes, the desired content, and connecting."""

    name: str
    extra: str  # the install extra holding its SDK ("" = core)

    @property
    def sdk(self) -> tuple[str, ...]:
        """The SDK's modules (imported lazily inside the store module; `targets.load` checks them)."""
        ...

    def parse(self, raw: Mapping[str, Any], path: str) -> SpecT:
        """Validate this kind's spec object without network access; raise SpecError naming the field."""
        ...

    def writes_secrets(self, spec: SpecT) -> tuple[str, ...]:
        """Names of the Kubernetes Secrets in the VaultBundle's namespace it writes (for cross-target checks)."""
        ...

    def desired(self, vault: Vault, selection: Selection, spec: SpecT) -> dict[str, bytes]:
        """What the store should hold (name -> value) for this bundle; raise SelectionError on bad names."""
        ...

    async def connect(self, spec: SpecT, context: TargetContext) -> Target:
        """Build clients with the configured (or ambient) credentials; raise TargetError when that fails."""
        ...
