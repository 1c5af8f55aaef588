"""`--shard INDEX/COUNT`: every VaultBundle belongs to exactly one shard, stably and roughly evenly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


# Owners under --shard i/7, fixed once: sha256 of "namespace/name", first 8 bytes big-endian, mod 7. If this
# changes, every VaultBundle moves to another shard on upgrade (and replicas of two versions would disagree).
KNOWN = {("default", "web"): 2, ("team-a", "api"): 6, ("team-b", "db"): 6, ("prod", "payments"): 5, ("x", "y"): 3}
OWNERS = (
    "import json, sys; from vaultbundle.settings import Shard; "
    "print(json.dumps([[i for i in range(7) if Shard(i, 7).owns(ns, n)] for ns, n in json.loads(sys.argv[1])]))"
)


@pytest.mark.parametrize("hash_seed", ["1", "4242"])
def test_owners_are_the_same_in_every_process(hash_seed: str) -> None:
    """Replicas and restarts must agree: another process, with another str-hash seed, finds the known owners."""
    names = list(KNOWN)
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", OWNERS, json.dumps(names)], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == [[KNOWN[name]] for name in names]
    assert [[i for i in range(7) if Shard(i, 7).owns(*name)] for name in names] == [[KNOWN[n]] for n in names]


@pytest.mark.parametrize("text", ["2/2", "-1/2", "a/b", "1", "1/0", ""])
def test_bad_shard_specs(text: str) -> None:
    with pytest.raises(ValueError, match="INDEX/COUNT"):
        Shard.parse(text)
