"""The labelled sources' cache: what it serves and when it refuses to (a GET answers), its budget against tenants
who label many or large objects, and the reconcile reading its sources from it.

How the watch feeds it (full objects, the cache updated before the readers wake, relists, failures) is in
test_secretwatch.py against a recording apiserver; the real apiserver's view is in tests/e2e/test_source_cache.py.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.kit import World
from tests.kit.world import NAMESPACE, PASSPHRASE
from vaultbundle import metrics
from vaultbundle.sourcecache import ENTRY_OVERHEAD, Budget, CachedReads, ObjectCache


def obj(name: str, version: str = "1", namespace: str = "team-a", **data: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": version}, "data": data}


def test_serves_only_while_its_watch_is_established() -> None:
    cache = ObjectCache("secret")
    cache.put(obj("s", k="djE="))
    assert cache.get("team-a", "s") is None  # no list yet: the watch may not have seen everything
    cache.replace("team-a", [obj("s", k="djE=")])
    assert cache.get("team-a", "s") == obj("s", k="djE=")
    assert cache.get("team-b", "s") is None  # another namespace's watch is not established
    cache.down("team-a")  # the watch failed: its copies may be missing changes
    assert cache.get("team-a", "s") is None
    cache.up("team-a")  # resumed from its resourceVersion: the missed events follow
    assert cache.get("team-a", "s") is not None
    cache.replace(None, [obj("s", namespace="team-b", k="djE=")])  # one watch of every namespace
    assert cache.get("team-b", "s") is not None


def test_changes_replace_and_deletions_remove() -> None:
    cache = ObjectCache("secret")
    cache.replace("team-a", [obj("s", "1", k="djE=")])
    cache.put(obj("s", "2", k="djI="))
    held = cache.get("team-a", "s")
    assert held is not None and held["data"] == {"k": "djI="} and held["metadata"]["resourceVersion"] == "2"
    held["data"]["k"] = "tampered"  # a reader's copy is its own
    assert cache.get("team-a", "s") == obj("s", "2", k="djI=")
    cache.remove("team-a", "s")  # DELETED: removed, or the label taken off
    assert cache.get("team-a", "s") is None and len(cache) == 0 and cache.bytes == 0


def test_a_relist_replaces_its_scope_only_and_names_what_went_away() -> None:
    cache = ObjectCache("secret")
    cache.replace(None, [obj("a", k="dg=="), obj("b", k="dg=="), obj("c", namespace="team-b", k="dg==")])
    gone = cache.replace("team-a", [obj("a", "9", k="dzI=")])
    assert gone == [("team-a", "b")]
    assert cache.get("team-a", "b") is None
    assert cache.get("team-a", "a") == obj("a", "9", k="dzI=")
    assert cache.get("team-b", "c") is not None  # another scope's entries are not touched


def test_an_object_over_the_size_cap_is_never_kept_and_a_grown_one_is_dropped() -> None:
    cache = ObjectCache("secret", Budget(per_object=100, per_namespace=10_000, total=10_000))
    cache.replace("team-a", [obj("small", k="x" * 90), obj("large", k="x" * 200)])
    assert cache.get("team-a", "small") is not None
    assert cache.get("team-a", "large") is None  # read by GET instead
    cache.put(obj("small", "2", k="x" * 200))  # it grew: the old copy must not be served
    assert cache.get("team-a", "small") is None and cache.bytes == 0


def test_a_tenant_fills_only_its_own_share_and_evicts_nobody() -> None:
    size = ENTRY_OVERHEAD + 1 + 100  # one key of one character, a value of 100
    cache = ObjectCache("secret", Budget(per_object=1000, per_namespace=3 * size, total=5 * size))
    cache.replace(None, [obj("victim", namespace="team-b", k="v" * 100)])
    for i in range(50):  # a hostile tenant labels many Secrets
        cache.put(obj(f"s{i}", namespace="team-a", k="x" * 100))
    assert sum(cache.get("team-a", f"s{i}") is not None for i in range(50)) == 3  # its namespace's budget
    assert cache.get("team-b", "victim") is not None  # nothing of another namespace was pushed out
    cache.put(obj("second", namespace="team-b", k="v" * 100))
    cache.put(obj("third", namespace="team-c", k="v" * 100))
    assert cache.get("team-c", "third") is None  # the total is reached: no entry grows it, reads GET
    assert cache.bytes == 5 * size
    cache.remove("team-a", "s0")  # room again: a change is kept
    cache.put(obj("third", "2", namespace="team-c", k="v" * 100))
    assert cache.get("team-c", "third") is not None


def test_malformed_objects_are_not_kept() -> None:
    cache = ObjectCache("secret")
    cache.replace(
        "team-a",
        [
            {"metadata": {"namespace": "team-a", "name": "a"}, "data": {"k": "dg=="}},  # no resourceVersion
            {**obj("b"), "data": {"k": 3}},
            {**obj("c"), "data": ["k"]},
            {"data": {"k": "dg=="}},
        ],
    )
    assert len(cache) == 0


def test_values_never_show_in_a_repr() -> None:
    cache = ObjectCache("secret")
    cache.replace("team-a", [obj("s", k="c2VjcmV0LXZhbHVl")])
    reads = CachedReads(None, cache)  # type: ignore[arg-type] # no read is made
    for text in (repr(cache), repr(reads), repr(cache._entries)):
        assert "c2VjcmV0LXZhbHVl" not in text
    assert repr(cache) == "ObjectCache(secret: 1 objects, 529 bytes)"


class Reads:
    """Counts the GETs of source Secrets that reach the apiserver (the kit's MemoryKube)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.names: list[str] = []
        get_secret = world.kube.get_secret

        async def counting(namespace: str, name: str) -> dict[str, Any] | None:
            self.names.append(name)
            return await get_secret(namespace, name)

        world.kube.get_secret = counting  # type: ignore[method-assign]
        self.cached = CachedReads(world.kube)
        world.reconciler.reads = self.cached

    def labelled(self, name: str) -> dict[str, Any]:
        """The Secret as the watch would deliver it (with its namespace)."""
        secret = self.world.kube.secrets[(NAMESPACE, name)]
        return {**secret, "metadata": {**secret["metadata"], "namespace": NAMESPACE}}

    def sources(self) -> list[str]:
        return [name for name in self.names if name in ("cfg", "pass")]


def cached_count(origin: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("vaultbundle_source_reads_total", {"kind": "secret", "origin": origin}) or 0.0
    )


@pytest.fixture
def world() -> World:
    world = World()
    world.push(b"A=1\n")
    return world


async def test_labelled_sources_are_read_from_the_cache_on_every_cycle(world: World) -> None:
    reads = Reads(world)
    reads.cached.secrets.replace(None, [reads.labelled("cfg"), reads.labelled("pass")])
    hits = cached_count("cache")
    assert (await world.cycle()).ready
    idle = await world.cycle()
    assert idle.idle and reads.sources() == []  # no GET of a source, first sync and idle cycle alike
    assert cached_count("cache") == hits + 4


async def test_the_cycle_a_rotation_wakes_reads_the_new_value(world: World) -> None:
    reads = Reads(world)
    reads.cached.secrets.replace(None, [reads.labelled("cfg"), reads.labelled("pass")])
    await world.cycle()
    world.kube.put_secret(NAMESPACE, "pass", {"passphrase": "a rotated passphrase"})
    reads.cached.secrets.put(reads.labelled("pass"))  # the watch's MODIFIED, applied before the wake
    outcome = await world.cycle()
    assert not outcome.ready and outcome.reason == "WrongPassphrase"  # sealed with the old one
    assert reads.sources() == []


async def test_a_stale_copy_is_what_the_cache_serves_until_the_event_lands(world: World) -> None:
    reads = Reads(world)
    reads.cached.secrets.replace(None, [reads.labelled("cfg"), reads.labelled("pass")])
    world.kube.put_secret(NAMESPACE, "pass", {"passphrase": "changed, event still on its way"})
    assert (await world.cycle()).ready  # the old copy: the event, once applied, wakes the reader again
    reads.cached.secrets.put(reads.labelled("pass"))
    assert (await world.cycle()).reason == "WrongPassphrase"


async def test_unlabelled_unknown_or_deleted_sources_are_read_by_get(world: World) -> None:
    reads = Reads(world)
    reads.cached.secrets.replace(None, [reads.labelled("cfg")])  # `pass` is not labelled
    await world.cycle()
    assert reads.sources() == ["pass"]
    reads.cached.secrets.remove(NAMESPACE, "cfg")  # label removed (DELETED from the watch) ...
    del world.kube.secrets[(NAMESPACE, "cfg")]  # ... and the Secret deleted
    outcome = await world.cycle()
    assert outcome.reason == "SecretNotFound" and reads.sources() == ["pass", "cfg"]


async def test_no_cache_until_the_watch_is_established(world: World) -> None:
    reads = Reads(world)
    reads.cached.secrets.put(reads.labelled("cfg"))
    reads.cached.secrets.put(reads.labelled("pass"))
    await world.cycle()
    assert reads.sources() == ["cfg", "pass"]


async def test_credentials_and_passphrase_values_come_back_decoded(world: World) -> None:
    reads = Reads(world)
    reads.cached.secrets.replace(None, [reads.labelled("pass")])
    held = await reads.cached.get_secret(NAMESPACE, "pass")
    assert held is not None and base64.b64decode(held["data"]["passphrase"]).decode() == PASSPHRASE
