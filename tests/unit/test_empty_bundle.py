"""Never silently empty (issue #14, item 4): the CLI-layout vault root does not depend on the ZIP's directory
entries, and a verified bundle with nothing in it, or one that would empty a target, is refused (`BundleEmpty`)
with nothing written anywhere, unless `spec.source.allowEmpty: true`."""

from __future__ import annotations

import io
import stat
import zipfile
from typing import Any

import pytest

from tests.kit.world import CONFIG, PASSPHRASE, World
from vaultbundle import bundles, vault
from vaultbundle.bundles import Bundle, Layout
from vaultbundle.crypto import rqe1, rqem
from vaultbundle.errors import BundleEmptyError, BundleFormatError, Reason


def zip_with_parents(entries: dict[str, bytes], *, folder: str = "infra/vault/prod") -> bytes:
    """What many zip tools write (vsync's `zip -r` does not): a directory entry for every parent of the vault
    folder, then the folder and its files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            info = zipfile.ZipInfo("/".join(parts[:depth]) + "/")
            info.external_attr = (stat.S_IFDIR | 0o755) << 16
            archive.writestr(info, b"")
        for name, body in entries.items():
            info = zipfile.ZipInfo(f"{folder}/{name}")
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, body)
    return buffer.getvalue()


def test_vault_root_is_the_folder_of_the_env_file_whatever_directory_entries_say() -> None:
    data = zip_with_parents({".env.prod": b"A=1\n", "certs/tls.crt": b"cert"})
    parsed = vault.from_zip(data, env="prod")
    assert dict(parsed.kv) == {"A": "1"} and dict(parsed.files) == {"certs/tls.crt": b"cert"}
    # the same without any directory entry, and with only the file entries in a subfolder
    assert dict(vault.from_zip(vault.to_zip({".env.prod": b"A=1\n"}, folder="a/b/c"), env="prod").kv) == {"A": "1"}
    only_env = zip_with_parents({".env.prod": b"A=1\n"}, folder="deep/er/vault")
    assert dict(vault.from_zip(only_env, env="prod").kv) == {"A": "1"}


def test_vault_root_with_an_explicit_env_file_and_without_an_env_file() -> None:
    data = zip_with_parents({"conf/.env": b"A=1\n", "x.txt": b"x"})
    parsed = vault.from_zip(data, env="prod", env_file="conf/.env")
    assert dict(parsed.kv) == {"A": "1"} and dict(parsed.files) == {"x.txt": b"x"}
    files_only = zip_with_parents({"a.txt": b"1", "b.txt": b"2"})
    assert dict(vault.from_zip(files_only, env="prod").files) == {"a.txt": b"1", "b.txt": b"2"}
    other_env = zip_with_parents({".env.staging": b"A=1\n"}, folder="infra/vault/staging")
    with pytest.raises(BundleFormatError, match="sealed for another environment"):
        vault.from_zip(other_env, env="prod")


def test_a_file_outside_the_vault_folder_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("infra/vault/prod/.env.prod", b"A=1\n")
        archive.writestr("infra/other/leak.txt", b"x")
    with pytest.raises(BundleFormatError, match="outside the vault folder 'infra/vault/prod'"):
        vault.from_zip(buffer.getvalue(), env="prod")


def test_check_not_empty() -> None:
    empty = Bundle(Layout.CLI, "20261203-090000", 0, vault.Vault())
    with pytest.raises(BundleEmptyError, match="holds no keys and no files") as caught:
        bundles.check_not_empty(empty)
    assert caught.value.reason == Reason.BUNDLE_EMPTY and caught.value.exit_code == 33
    assert "allowEmpty" in str(caught.value) and "--allow-empty" in caught.value.hint
    bundles.check_not_empty(empty, allow=True)
    bundles.check_not_empty(Bundle(Layout.CLI, "20261203-090000", 0, vault.Vault(files={"f": b""})))


def push_zip(world: World, payload: bytes) -> str:
    """A CLI-layout bundle whose ZIP is *payload* as is (built by another zip tool)."""
    timestamp = bundles.next_timestamp(None)
    key = world._pusher.derive(PASSPHRASE, CONFIG.salt, CONFIG.iterations)
    world.objects.put(bundles.bundle_key(CONFIG, Layout.CLI, timestamp), rqe1.seal(key, rqem.wrap(timestamp, payload)))
    world.objects.put(bundles.pointer_key(CONFIG, Layout.CLI), timestamp.encode())
    return timestamp


async def test_a_zip_with_parent_directory_entries_syncs_its_keys() -> None:
    world = World()
    push_zip(world, zip_with_parents({".env.prod": b"A=1\nB=2\n"}))
    outcome = await world.cycle()
    assert outcome.ready and world.secret() == {"A": "1", "B": "2"}


async def test_an_empty_bundle_is_refused_and_nothing_is_written() -> None:
    world = World()
    world.push(b"A=1\n")
    await world.cycle()
    writes = list(world.kube.writes)
    world.push(b"# nothing here\n")
    outcome = await world.cycle()
    assert not outcome.ready and outcome.reason == "BundleEmpty" and outcome.failure == Reason.BUNDLE_EMPTY
    assert world.secret() == {"A": "1"}
    assert world.kube.writes == [*writes, "patch_status"]  # the status says why; no target was touched
    assert world.conditions() == {
        "Ready": ("False", "BundleEmpty"),
        "Verified": ("True", "Verified"),
        "Synced": ("Unknown", "NotAttempted"),
    }
    assert "holds no keys and no files" in outcome.message and "spec.source.allowEmpty: true" in outcome.message
    assert [e.reason for e in outcome.events] == ["BundleEmpty"]
    world.edit_spec(source={**world.spec["source"], "allowEmpty": True})
    allowed = await world.cycle()
    assert allowed.ready and world.secret() == {}


async def test_a_selection_that_would_empty_one_target_refuses_every_target() -> None:
    world = World()
    world.spec["targets"] = [
        {"name": "first", "kubernetesSecret": {"name": "one"}},
        {"name": "second", "kubernetesSecret": {"name": "two", "keys": {"include": ["OLD_*"]}}},
    ]
    world.push(b"OLD_A=1\nB=2\n")
    await world.cycle()
    assert world.secret("one") == {"OLD_A": "1", "B": "2"} and world.secret("two") == {"OLD_A": "1"}
    world.push(b"NEW_A=1\nB=3\n")  # renamed keys: "second" would lose all it holds
    outcome = await world.cycle()
    assert outcome.reason == "BundleEmpty" and "target second" in outcome.message
    assert "1 key(s)" in outcome.message and "OLD_A" not in outcome.message
    assert "nothing was written to any target" in outcome.message
    assert world.secret("one") == {"OLD_A": "1", "B": "2"} and world.secret("two") == {"OLD_A": "1"}
    world.edit_spec(source={**world.spec["source"], "allowEmpty": True})
    assert (await world.cycle()).ready
    assert world.secret("one") == {"NEW_A": "1", "B": "3"} and world.secret("two") == {}


async def test_a_new_target_with_an_empty_selection_is_not_refused() -> None:
    """Nothing to lose: creating an empty Secret removes no key (and prune: false never removes any)."""
    world = World()
    targets: list[dict[str, Any]] = [
        {"name": "app", "kubernetesSecret": {"name": "out", "keys": {"include": ["NONE_*"]}}},
        {"name": "kept", "kubernetesSecret": {"name": "kept", "prune": False}},
    ]
    world.spec["targets"] = targets
    world.push(b"A=1\n")
    assert (await world.cycle()).ready and world.secret("kept") == {"A": "1"}
    assert ("ns", "out") not in world.kube.secrets  # nothing to write: no Secret either
    targets[1]["kubernetesSecret"]["keys"] = {"include": ["NONE_*"]}
    world.edit_spec(targets=targets)
    assert (await world.cycle()).ready and world.secret("kept") == {"A": "1"}


async def test_the_plan_of_each_target_is_checked_again() -> None:
    """A store that filled up between the first look and its own plan fails alone, with BundleEmpty."""
    world = World()
    world.spec["targets"] = [{"name": "app", "kubernetesSecret": {"name": "out", "keys": {"include": ["X_*"]}}}]
    world.push(b"A=1\n")
    reads = 0
    original = world.kube.get_secret

    async def filled_later(namespace: str, name: str) -> dict[str, Any] | None:
        nonlocal reads
        reads += name == "out"
        if name == "out" and reads == 2:  # the target's own plan: a key of ours appeared since the first look
            owner = {"vaultbundle.io/owner": "ns/web", "vaultbundle.io/owner-uid": "uid-1"}
            body = {"metadata": {"name": "out", "annotations": owner}, "data": {"X_A": "MQ=="}}
            await world.kube.apply_secret(namespace, body)
        return await original(namespace, name)

    world.kube.get_secret = filled_later  # type: ignore[method-assign]
    outcome = await world.cycle()
    assert outcome.reason == "TargetFailed" and world.target()["reason"] == "BundleEmpty"
    assert "nothing was written to it." in world.target()["message"]
    assert world.secret() == {"X_A": "1"}
