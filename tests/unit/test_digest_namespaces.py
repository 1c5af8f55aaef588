"""Per-namespace digest keys (issue #13, L1): everything the operator shows for a VaultBundle (status digest,
the Secret's content-digest annotation) is an HMAC under a key derived for that VaultBundle's namespace, so equal
values in two namespaces give unrelated digests, while one namespace keeps digesting the same way."""

from __future__ import annotations

from tests.kit.world import World
from vaultbundle.digest import Digester
from vaultbundle.stores import namespace_key

ENV = b"API_KEY=same-value-everywhere\n"


async def _synced(namespace: str) -> tuple[str, str]:
    world = World(namespace)
    world.push(ENV)
    await world.cycle()
    annotation = world.kube.secrets[(namespace, "out")]["metadata"]["annotations"]["vaultbundle.io/content-digest"]
    return world.kube.status["bundle"]["digest"], annotation


async def test_equal_values_in_two_namespaces_give_different_digests() -> None:
    team_a, team_b, team_a_again = await _synced("team-a"), await _synced("team-b"), await _synced("team-a")
    assert team_a[0] != team_b[0] and team_a[1] != team_b[1]
    assert team_a == team_a_again  # stable per namespace: a restart rewrites nothing


def test_the_namespace_digester_is_the_hkdf_key_of_the_operator_key() -> None:
    operator = Digester(b"k" * 32)
    expected = Digester(namespace_key(b"k" * 32, "team-a", "digest")).digest({"A": "1"})
    assert operator.for_namespace("team-a").digest({"A": "1"}) == expected
    assert operator.for_namespace("team-a").digest({"A": "1"}) != operator.digest({"A": "1"})
    assert "k" * 8 not in repr(operator.for_namespace("team-a"))
