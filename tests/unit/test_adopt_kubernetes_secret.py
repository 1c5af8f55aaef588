"""Adopting an existing Kubernetes Secret (issue #13 item 5, security review M1), on the in-memory kit.

`adopt: true` is the VaultBundle author's wish; the Secret's own annotation `vaultbundle.io/adopt: <name>` is
the consent of whoever may write the Secret. Some Secrets are never adopted whatever they say: any
VaultBundle's source Secrets, Secrets another controller owns, and token / Helm release types. An adopted
Secret's values are never compared (a dry run is no equality oracle) and it is never deleted for a type change.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.kit.world import NAMESPACE, World
from vaultbundle.errors import Reason

ADOPT = {"vaultbundle.io/adopt": "web"}


def _target(**fields: Any) -> list[dict[str, Any]]:
    return [{"name": "app", "kubernetesSecret": {"name": "out", "adopt": True, **fields}}]


@pytest.fixture
def world() -> World:
    world = World()
    world.push(b"A=new\n")
    world.edit_spec(targets=_target())
    return world


async def _refused(world: World, reason: Reason = Reason.SECRET_NOT_OWNED) -> str:
    await world.cycle()
    target = world.target()
    assert (target["state"], target["reason"]) == ("Failed", str(reason)), target
    assert "apply_secret" not in world.kube.calls and "delete_secret" not in world.kube.calls
    return str(target["message"])


async def test_adopt_true_alone_does_not_take_an_unannotated_secret(world: World) -> None:
    world.kube.put_secret(NAMESPACE, "out", {"A": "theirs"})
    message = await _refused(world)
    assert "vaultbundle.io/adopt=web" in message and "theirs" not in message
    assert world.secret() == {"A": "theirs"}


async def test_an_opt_in_for_another_vaultbundle_is_no_opt_in(world: World) -> None:
    world.kube.put_secret(NAMESPACE, "out", {"A": "theirs"}, annotations={"vaultbundle.io/adopt": "other"})
    await _refused(world)
    assert world.secret() == {"A": "theirs"}


async def test_an_annotated_secret_is_adopted_and_its_other_keys_stay(world: World) -> None:
    world.kube.put_secret(NAMESPACE, "out", {"A": "theirs", "B": "kept"}, annotations=ADOPT)
    await world.cycle()
    assert world.target()["state"] == "Synced", world.target()
    assert world.secret() == {"A": "new", "B": "kept"}
    annotations = world.kube.secrets[(NAMESPACE, "out")]["metadata"]["annotations"]
    assert annotations["vaultbundle.io/owner"] == "ns/web" and annotations["vaultbundle.io/owner-uid"] == "uid-1"


async def test_a_dry_run_never_compares_a_value_it_does_not_own(world: World) -> None:
    """C1 oracle: with the old code a guess equal to the Secret's value planned `unchanged`, a wrong one `update`."""
    world.edit_spec(targets=_target(), dryRun=True)
    for held in ("new", "wrong guess"):
        world.kube.put_secret(NAMESPACE, "out", {"A": held}, annotations=ADOPT)
        world.kube.calls.clear()
        await world.cycle()
        assert world.target()["plan"] == {"create": [], "update": ["A"], "delete": [], "unchanged": 0}
        assert "apply_secret" not in world.kube.calls


async def test_a_source_secret_of_any_vaultbundle_is_never_adopted(world: World) -> None:
    """VaultBundle b adopting a's passphrase Secret would make a open b's bucket (M1 hijack)."""
    world.kube.put_vaultbundle(NAMESPACE, "a", config="a-vsync", passphrase="out")
    world.kube.put_secret(NAMESPACE, "out", {"passphrase": "a's"}, annotations=ADOPT)
    message = await _refused(world)
    assert "source Secret" in message and "a's" not in message
    assert world.secret() == {"passphrase": "a's"}


async def test_a_secret_another_controller_owns_is_never_adopted(world: World) -> None:
    owner = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "name": "c", "uid": "u2", "controller": True}
    world.kube.put_secret(NAMESPACE, "out", {"A": "cert"}, annotations=ADOPT, ownerReferences=[owner])
    assert "another controller" in await _refused(world)


@pytest.mark.parametrize(
    "kind", ["helm.sh/release.v1", "kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token"]
)
async def test_token_and_helm_release_secrets_are_never_adopted(world: World, kind: str) -> None:
    world.kube.put_secret(NAMESPACE, "out", {"release": "r"}, annotations=ADOPT)
    world.kube.secrets[(NAMESPACE, "out")]["type"] = kind
    assert f"type {kind}" in await _refused(world)


@pytest.mark.parametrize("kind", ["helm.sh/release.v1", "kubernetes.io/service-account-token"])
async def test_the_spec_may_not_ask_for_those_types(world: World, kind: str) -> None:
    """The CRD's CEL rule has a twin in parse: a one-shot `vaultbundle sync` has no CRD to check it."""
    world.edit_spec(targets=_target(type=kind))
    outcome = await world.cycle()
    assert world.conditions()["Ready"] == ("False", str(Reason.INVALID_SPEC))
    assert kind in outcome.message


async def test_an_adopted_secret_is_never_deleted_to_change_its_type(world: World) -> None:
    world.kube.put_secret(NAMESPACE, "out", {"A": "theirs"}, annotations=ADOPT)
    world.kube.secrets[(NAMESPACE, "out")]["type"] = "kubernetes.io/tls"
    message = await _refused(world, Reason.TYPE_CHANGE_REFUSED)
    assert "kubernetes.io/tls" in message and "never deleted" in message
    # still refused once it is ours: the opt-in annotation says it was adopted
    world.kube.secrets[(NAMESPACE, "out")]["type"] = "Opaque"
    await world.cycle()
    assert world.target()["state"] == "Synced"
    world.kube.secrets[(NAMESPACE, "out")]["type"] = "kubernetes.io/tls"
    world.kube.calls.clear()
    world.force("again")
    await _refused(world, Reason.TYPE_CHANGE_REFUSED)


async def test_a_secret_we_created_still_changes_type_by_recreation(world: World) -> None:
    world.edit_spec(targets=[{"name": "app", "kubernetesSecret": {"name": "out"}}])
    await world.cycle()
    world.edit_spec(targets=[{"name": "app", "kubernetesSecret": {"name": "out", "type": "example.com/custom"}}])
    await world.cycle()
    assert world.target()["state"] == "Synced" and "delete_secret" in world.kube.calls
    assert world.kube.secrets[(NAMESPACE, "out")]["type"] == "example.com/custom"


async def test_an_earlier_vaultbundle_of_the_same_name_is_not_us(world: World) -> None:
    """The owner annotation names ns/web, but its uid is another (deleted) VaultBundle's: the owner-uid counts."""
    earlier = {"vaultbundle.io/owner": "ns/web", "vaultbundle.io/owner-uid": "uid-0"}
    world.kube.put_secret(NAMESPACE, "out", {"A": "old"}, annotations=earlier)
    world.edit_spec(targets=[{"name": "app", "kubernetesSecret": {"name": "out"}}])
    assert "not managed by vaultbundle" in await _refused(world)
    world.kube.secrets[(NAMESPACE, "out")]["metadata"]["annotations"] |= ADOPT
    world.edit_spec(targets=_target())
    await world.cycle()
    assert world.target()["state"] == "Synced" and world.secret() == {"A": "new"}
