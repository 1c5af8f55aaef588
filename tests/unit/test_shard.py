"""`--shard INDEX/COUNT`: every VaultBundle belongs to exactly one shard, stably and roughly evenly."""

from __future__ import annotations

import pytest

from vaultbundle.settings import Shard

NAMES = [(f"team-{i % 37}", f"bundle-{i}") for i in range(3000)]


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_partition_the_objects(count: int) -> None:
    shards = [Shard(index, count) for index in range(count)]
    owners = [[shard.index for shard in shards if shard.owns(ns, name)] for ns, name in NAMES]
    assert all(len(owner) == 1 for owner in owners)  # no overlap, nothing dropped
    sizes = [sum(1 for owner in owners if owner == [index]) for index in range(count)]
    assert max(sizes) - min(sizes) < len(NAMES) / count * 0.2
    assert [Shard(0, count).owns(ns, name) for ns, name in NAMES[:50]] == [
        Shard.parse(f"0/{count}").owns(ns, name) for ns, name in NAMES[:50]
    ]  # stable: a pure function of the name


@pytest.mark.parametrize("text", ["2/2", "-1/2", "a/b", "1", "1/0", ""])
def test_bad_shard_specs(text: str) -> None:
    with pytest.raises(ValueError, match="INDEX/COUNT"):
        Shard.parse(text)
