"""Ownership and adopt rules, the same for every store.

Every store marks what it writes as the VaultBundle's (`MANAGED_BY_KEY=MANAGED_BY_VALUE` plus an owner
marker naming `<namespace>/<name>`, or, where a store holds no metadata, the names recorded in status). Before
a plan, every existing object of a desired name is sorted into one of four `Claim`s:

* `MISSING`: it does not exist yet: create it;
* `OURS`: it carries our owner marker: write it;
* `OTHER`: another VaultBundle's: never taken, not even with `adopt: true`;
* `UNMARKED`: it exists without an owner marker: taken only with `adopt: true`.

`OTHER` and `UNMARKED` without adopt fail the target with `SecretNotOwned` before anything is written, with
one wording for every store. The message never names the other owner (that would tell one tenant about
another's VaultBundles): it says "managed by another VaultBundle".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, Protocol, TypeVar

from ..errors import Reason, TargetError
from .threads import read_many

MANAGED_BY_KEY = "managed-by"  # the label / tag / custom_metadata key of the external stores
MANAGED_BY_VALUE = "vaultbundle"  # its value, everywhere (also of app.kubernetes.io/managed-by on Secrets)

R = TypeVar("R")


class Tagged(Protocol):
    """An object of a tag-owned store (AWS, Azure): its tags, and whether it is soft-deleted."""

    @property
    def tags(self) -> Mapping[str, str]: ...

    @property
    def deleted(self) -> bool: ...


T = TypeVar("T", bound=Tagged)


class Claim(Enum):
    MISSING = "missing"
    OURS = "ours"
    OTHER = "another VaultBundle's"
    UNMARKED = "unmarked"


def sort(*, exists: bool, owner: str | None, me: str) -> Claim:
    """One object's claim, from whether it exists and the owner its marker names (None: no marker)."""
    if not exists:
        return Claim.MISSING
    if not owner:
        return Claim.UNMARKED
    return Claim.OURS if owner == me else Claim.OTHER


def _names(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def taken_by_other(where: str, names: Iterable[str]) -> TargetError:
    return TargetError(
        Reason.SECRET_NOT_OWNED,
        f"{where}: managed by another VaultBundle, which is never taken over (not even with adopt): "
        f"{_names(names)}; nothing was written; pick another name",
    )


def not_marked(where: str, names: Iterable[str], marker: str) -> TargetError:
    return TargetError(
        Reason.SECRET_NOT_OWNED,
        f"{where}: exists and is not managed by vaultbundle ({marker}): {_names(names)}; nothing was written; "
        "set adopt: true to take it over, or pick another name",
    )


def claim_one(*, where: str, name: str, owner: str | None, me: str, adopt: bool, marker: str) -> bool:
    """For a store of one existing object (a Kubernetes Secret, a Vault secret): raise `SecretNotOwned` unless
    we may write it; True when it is taken over by adopt (unmarked), False when it is already ours."""
    claim = sort(exists=True, owner=owner, me=me)
    if claim is Claim.OTHER:
        raise taken_by_other(where, [name])
    if claim is Claim.UNMARKED and not adopt:
        raise not_marked(where, [name], marker)
    return claim is Claim.UNMARKED


@dataclass
class Claimed(Generic[R]):
    """The sorted names of a plan: to create, already ours, and taken over by adopt (with what was read)."""

    missing: list[str] = field(default_factory=list)
    ours: dict[str, R] = field(default_factory=dict)
    adopted: dict[str, R] = field(default_factory=dict)

    @property
    def held(self) -> dict[str, R]:
        """Existing objects we may write: ours and adopted, by name."""
        return dict(sorted({**self.ours, **self.adopted}.items()))


def claim(
    found: Mapping[str, R | None],
    *,
    owner_of: Callable[[R], str | None],
    me: str,
    adopt: bool,
    where: str,
    marker: str,
    note: Callable[[R], str] = lambda _: "",
) -> Claimed[R]:
    """Sort every name (its object as read, None = missing); raise `SecretNotOwned` naming every offender
    (another VaultBundle's first) before anything is written. *note* adds a store's remark to an unmarked
    name, e.g. "scheduled for deletion"."""
    claimed: Claimed[R] = Claimed()
    others: list[str] = []
    unmarked: list[str] = []
    for name, current in sorted(found.items()):
        if current is None:
            claimed.missing.append(name)
            continue
        kind = sort(exists=True, owner=owner_of(current), me=me)
        if kind is Claim.OTHER:
            others.append(name)
        elif kind is Claim.OURS:
            claimed.ours[name] = current
        elif adopt:
            claimed.adopted[name] = current
        else:
            remark = note(current)
            unmarked.append(f"{name} ({remark})" if remark else name)
    if others:
        raise taken_by_other(where, others)
    if unmarked:
        raise not_marked(where, unmarked, marker)
    return claimed


def claim_tagged(
    read: Callable[[str], T | None],
    names: Iterable[str],
    *,
    owner_tag: str,
    me: str,
    adopt: bool,
    where: str,
    deleted_note: str,
) -> Claimed[T]:
    """`claim` for a tag-owned store: read every name (several at a time), the owner from *owner_tag*; a
    soft-deleted unmarked object is named with *deleted_note*."""
    return claim(
        read_many(read, names),
        owner_of=lambda found: found.tags.get(owner_tag),
        me=me,
        adopt=adopt,
        where=where,
        marker=f"no {owner_tag} tag",
        note=lambda found: deleted_note if found.deleted else "",
    )
