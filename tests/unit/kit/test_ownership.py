"""The ownership sort every store uses: missing / ours / another VaultBundle's / unmarked, one wording."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from vaultbundle.errors import Reason, TargetError
from vaultbundle.targets.base import Owner
from vaultbundle.targets.ownership import Claim, Consent, adopt_token, claim, claim_one, claim_tagged, sort

ME = "web/app"


@dataclass
class Found:
    owner: str | None
    deleted: bool = False


@pytest.mark.parametrize(
    ("exists", "owner", "expected"),
    [
        (False, None, Claim.MISSING),
        (True, ME, Claim.OURS),
        (True, "other/app", Claim.OTHER),
        (True, None, Claim.UNMARKED),
        (True, "", Claim.UNMARKED),
    ],
)
def test_sort(exists: bool, owner: str | None, expected: Claim) -> None:
    assert sort(exists=exists, owner=owner, me=ME) is expected


def _claim(found: dict[str, Found | None], *, adopt: bool) -> object:
    return claim(
        found,
        owner_of=lambda f: f.owner,
        me=ME,
        adopt=adopt,
        where="store X",
        marker="no owner tag",
        note=lambda f: "soft-deleted" if f.deleted else "",
    )


def test_claim_sorts_names_for_a_plan() -> None:
    ours, unmarked = Found(ME), Found(None)
    claimed = claim(
        {"B": ours, "A": None, "C": unmarked},
        owner_of=lambda f: f.owner,
        me=ME,
        adopt=True,
        where="store X",
        marker="no owner tag",
    )
    assert claimed.missing == ["A"] and claimed.ours == {"B": ours} and claimed.adopted == {"C": unmarked}
    assert list(claimed.held) == ["B", "C"]


def test_unmarked_needs_adopt_and_every_offender_is_named() -> None:
    with pytest.raises(TargetError) as caught:
        _claim({"A": Found(None), "B": Found(None, deleted=True), "C": Found(ME), "D": None}, adopt=False)
    message = str(caught.value)
    assert caught.value.reason is Reason.SECRET_NOT_OWNED
    assert message.startswith("store X: exists and is not managed by vaultbundle (no owner tag): A, B (soft-deleted);")
    assert "set adopt: true" in message and "nothing was written" in message


def test_another_vaultbundles_object_is_never_taken_and_its_owner_never_named() -> None:
    with pytest.raises(TargetError) as caught:
        _claim({"A": Found("other/app"), "B": Found(None)}, adopt=True)
    message = str(caught.value)
    assert caught.value.reason is Reason.SECRET_NOT_OWNED
    assert message.startswith("store X: managed by another VaultBundle") and "(not even with adopt): A;" in message
    assert "other/app" not in message


def test_claim_one_for_single_object_stores() -> None:
    assert claim_one(where="w", name="Secret s", owner=ME, me=ME, adopt=False, marker="m") is False
    assert claim_one(where="w", name="Secret s", owner=None, me=ME, adopt=True, marker="m") is True
    with pytest.raises(TargetError, match=r"^w: exists and is not managed by vaultbundle \(m\): Secret s;"):
        claim_one(where="w", name="Secret s", owner=None, me=ME, adopt=False, marker="m")
    with pytest.raises(TargetError, match=r"^w: managed by another VaultBundle.*: Secret s;") as caught:
        claim_one(where="w", name="Secret s", owner="team-b/x", me=ME, adopt=True, marker="m")
    assert "team-b" not in str(caught.value)


@dataclass
class TaggedObject:
    tags: dict[str, str]
    deleted: bool = False


def test_claim_tagged_reads_every_name_and_notes_soft_deleted_ones() -> None:
    store = {"A": TaggedObject({"owner": ME}), "B": TaggedObject({}, deleted=True), "C": TaggedObject({"x": "y"})}
    read: list[str] = []

    def get(name: str) -> TaggedObject | None:
        read.append(name)
        return store.get(name)

    tagging = {"owner_tag": "owner", "me": ME, "where": "w", "adopt_tag": "adopt", "token": "web.app"}
    with pytest.raises(TargetError, match=r"\(no owner tag\): B \(in the bin\), C;"):
        claim_tagged(get, ["A", "B", "C", "D"], adopt=False, deleted_note="in the bin", **tagging)
    assert sorted(read) == ["A", "B", "C", "D"]
    # adopt: true alone no longer takes B: the object itself must opt in (issue #13 item 5)
    with pytest.raises(TargetError, match=r"does not opt in to adoption: B \(-\); .*set tag adopt=web\.app"):
        claim_tagged(get, ["A", "B", "D"], adopt=True, deleted_note="-", **tagging)
    store["B"].tags["adopt"] = "web.app"
    claimed = claim_tagged(get, ["A", "B", "D"], adopt=True, deleted_note="-", **tagging)
    assert claimed.missing == ["D"] and list(claimed.ours) == ["A"] and list(claimed.adopted) == ["B"]


def test_adopt_needs_the_objects_own_opt_in_for_this_very_vaultbundle() -> None:
    consent = Consent(lambda f: f.get("adopt"), adopt_token(Owner("web", "app", "uid")), "tag adopt")
    assert consent.token == "web.app"
    claimed = claim(
        {"A": {"adopt": "web.app"}, "B": None},
        owner_of=lambda f: None,
        me=ME,
        adopt=True,
        where="w",
        marker="m",
        consent=consent,
    )
    assert list(claimed.adopted) == ["A"]
    for other in ({}, {"adopt": "web.other"}, {"adopt": "team-b.app"}, {"adopt": "true"}):
        with pytest.raises(TargetError, match="does not opt in") as caught:
            claim({"A": other}, owner_of=lambda f: None, me=ME, adopt=True, where="w", marker="m", consent=consent)
        assert caught.value.reason is Reason.SECRET_NOT_OWNED
    # without adopt: true the opt-in alone does nothing (the VaultBundle's author must ask for it too)
    with pytest.raises(TargetError, match="set adopt: true"):
        claim({"A": {"adopt": "web.app"}}, owner_of=lambda f: None, me=ME, adopt=False, where="w", marker="m")
    # a ClusterTargetStore that allows adopt (its Grant) stands in for the object's opt-in
    lent = Consent(consent.read, consent.token, consent.marker, allow_adopt=True)
    assert claim_one(where="w", name="s", owner=None, me=ME, adopt=True, marker="m", current={}, consent=lent)
    with pytest.raises(TargetError, match="does not opt in"):
        claim_one(where="w", name="s", owner=None, me=ME, adopt=True, marker="m", current={}, consent=consent)
