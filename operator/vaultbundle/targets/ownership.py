"""Ownership and adopt rules, the same for every store.

Every store marks what it writes as the VaultBundle's (`MANAGED_BY_KEY=MANAGED_BY_VALUE` plus an owner
marker naming `<namespace>/<name>`, or, where a store holds no metadata, the names recorded in status). Before
a plan, every existing object of a desired name is sorted into one of four `Claim`s:

* `MISSING`: it does not exist yet: create it;
* `OURS`: it carries our owner marker: write it;
* `OTHER`: another VaultBundle's: never taken, not even with `adopt: true`;
* `UNMARKED`: it exists without an owner marker: taken only with `adopt: true` **and** the object's own
  opt-in (below).

The adopt opt-in lives on the object being adopted, set by whoever may write that object (the Sealed Secrets
model): the VaultBundle's `adopt: true` alone is never enough, because the VaultBundle's author may not be
allowed to write the object (and with an admin identity the store would be a confused deputy). Per store:

* Kubernetes Secret: annotation `vaultbundle.io/adopt: <VaultBundle name>` (`ADOPT_ANNOTATION`);
* AWS tag `vaultbundle.io/adopt`, Azure tag / Vault `custom_metadata` `vaultbundle-adopt`:
  `<namespace>.<name>` (`adopt_token`); GCP label `vaultbundle-adopt`: the owner label value;
* or the ClusterTargetStore lending the connection allows adopt (`allow_adopt=True`, from its Grant).

A store with no metadata on its objects (GitHub Actions secrets, written with the tenant's own token) passes
`consent=None`: `adopt: true` suffices there. An adopted object's value is never read or compared (the plan
lists it under `update`): a dry run is no equality oracle on secrets the VaultBundle does not own.

`OTHER` and `UNMARKED` without adopt fail the target with `SecretNotOwned` before anything is written, with
one wording for every store. The message never names the other owner (that would tell one tenant about
another's VaultBundles): it says "managed by another VaultBundle".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from ..errors import Reason, TargetError
from .base import Owner
from .threads import read_many

MANAGED_BY_KEY = "managed-by"  # the label / tag / custom_metadata key of the external stores
MANAGED_BY_VALUE = "vaultbundle"  # its value, everywhere (also of app.kubernetes.io/managed-by on Secrets)
ADOPT_ANNOTATION = "vaultbundle.io/adopt"  # on a Kubernetes Secret: the VaultBundle name that may adopt it
ADOPT_KEY = "vaultbundle-adopt"  # Azure tag, GCP label, Vault custom_metadata (AWS: ADOPT_ANNOTATION as tag)


# Secret types no VaultBundle ever writes or adopts: ServiceAccount and bootstrap tokens (the apiserver's
# credentials), Helm release records (a later `helm rollback` would render whatever we wrote)
NEVER_WRITTEN_SECRET_TYPES = frozenset(
    {"kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token", "helm.sh/release.v1"}
)


def secret_adopt_refusal(secret: Mapping[str, Any], *, owner: Owner, sources: Collection[str]) -> str | None:
    """Why an existing Kubernetes Secret without our marker is not adopted even with `adopt: true` (None: it
    may be). *sources*: the source Secrets (config, passphrase) of every VaultBundle of the namespace."""
    meta = secret.get("metadata") or {}
    kind = secret.get("type") or "Opaque"
    if kind in NEVER_WRITTEN_SECRET_TYPES:
        return f"Secrets of type {kind} are never adopted"
    if meta.get("name") in sources:
        return "it is a source Secret (configSecretRef or passphraseSecretRef) of a VaultBundle in this namespace"
    if any(ref.get("controller") and ref.get("uid") != owner.uid for ref in meta.get("ownerReferences") or []):
        return "another controller owns it (an ownerReference with controller: true)"
    if (meta.get("annotations") or {}).get(ADOPT_ANNOTATION) != owner.name:
        return (
            f"it does not opt in: whoever may write it must annotate it {ADOPT_ANNOTATION}={owner.name} "
            "(adopt: true alone is not enough)"
        )
    return None


def adopt_token(owner: Owner) -> str:
    """`<namespace>.<name>`: the value a remote object's adopt tag must hold (namespaces have no dots, so the
    first dot splits it unambiguously)."""
    return f"{owner.namespace}.{owner.name}"


@dataclass(frozen=True)
class Consent:
    """How a store reads an object's adopt opt-in: *read* gives the value of its adopt marker (None: none),
    which must equal *token*; *marker* names it in messages. `allow_adopt`: the ClusterTargetStore allows
    adopt, no object opt-in needed."""

    read: Callable[[Any], str | None]
    token: str
    marker: str
    allow_adopt: bool = False

    def given(self, current: Any) -> bool:
        return self.allow_adopt or self.read(current) == self.token


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


def not_consented(where: str, names: Iterable[str], consent: Consent) -> TargetError:
    return TargetError(
        Reason.SECRET_NOT_OWNED,
        f"{where}: exists, is not managed by vaultbundle, and does not opt in to adoption: {_names(names)}; "
        f"nothing was written; whoever owns it must set {consent.marker}={consent.token} on it (adopt: true "
        "alone is not enough), or pick another name",
    )


def claim_one(
    *,
    where: str,
    name: str,
    owner: str | None,
    me: str,
    adopt: bool,
    marker: str,
    current: Any = None,
    consent: Consent | None = None,
) -> bool:
    """For a store of one existing object (a Kubernetes Secret, a Vault secret): raise `SecretNotOwned` unless
    we may write it; True when it is taken over by adopt (unmarked, and *current* opts in by *consent*), False
    when it is already ours."""
    claim = sort(exists=True, owner=owner, me=me)
    if claim is Claim.OTHER:
        raise taken_by_other(where, [name])
    if claim is Claim.UNMARKED and not adopt:
        raise not_marked(where, [name], marker)
    if claim is Claim.UNMARKED and consent is not None and not consent.given(current):
        raise not_consented(where, [name], consent)
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
    consent: Consent | None = None,
) -> Claimed[R]:
    """Sort every name (its object as read, None = missing); raise `SecretNotOwned` naming every offender
    (another VaultBundle's first) before anything is written. *note* adds a store's remark to an unmarked
    name, e.g. "scheduled for deletion". With *consent*, an unmarked object is adopted only when it opts in."""
    claimed: Claimed[R] = Claimed()
    others: list[str] = []
    unmarked: list[str] = []
    unconsented: list[str] = []
    for name, current in sorted(found.items()):
        if current is None:
            claimed.missing.append(name)
            continue
        kind = sort(exists=True, owner=owner_of(current), me=me)
        if kind is Claim.OTHER:
            others.append(name)
        elif kind is Claim.OURS:
            claimed.ours[name] = current
        elif adopt and (consent is None or consent.given(current)):
            claimed.adopted[name] = current
        else:
            remark = note(current)
            (unconsented if adopt else unmarked).append(f"{name} ({remark})" if remark else name)
    if others:
        raise taken_by_other(where, others)
    if unmarked:
        raise not_marked(where, unmarked, marker)
    if unconsented and consent is not None:
        raise not_consented(where, unconsented, consent)
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
    adopt_tag: str,
    token: str,
    allow_adopt: bool = False,
) -> Claimed[T]:
    """`claim` for a tag-owned store: read every name (several at a time), the owner from *owner_tag*, the
    adopt opt-in from *adopt_tag* (must equal *token*); a soft-deleted unmarked object is named with
    *deleted_note*."""
    return claim(
        read_many(read, names),
        owner_of=lambda found: found.tags.get(owner_tag),
        me=me,
        adopt=adopt,
        where=where,
        marker=f"no {owner_tag} tag",
        note=lambda found: deleted_note if found.deleted else "",
        consent=Consent(lambda found: found.tags.get(adopt_tag), token, f"tag {adopt_tag}", allow_adopt),
    )
