"""kopf's per-object state is off (kopfstate.py), which is only right while no handler needs it."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kopf
import pytest

from vaultbundle import controller, kopfstate
from vaultbundle.controller import build_registry
from vaultbundle.settings import Settings

BODY: dict[str, Any] = {
    "apiVersion": "vaultbundle.io/v1alpha1",
    "kind": "VaultBundle",
    "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "annotations": {"a": "b"}, "managedFields": [{}]},
    "spec": {"source": {}},
    "status": {"conditions": []},
}


def test_the_registry_has_no_handler_that_needs_kopfs_state() -> None:
    """on.create/update/delete/resume/field, daemons, timers and indexes read the diff base or the progress
    storage, which kopfstate switches off: adding one means removing kopfstate.configure from startup."""
    registry = build_registry(Settings())
    assert not registry._changing.get_all_handlers(), "a change handler needs kopf's diff base: see kopfstate.py"
    assert not registry._spawning.get_all_handlers(), "daemons and timers need kopf's progress: see kopfstate.py"
    assert not registry._indexing.get_all_handlers()
    assert [h.id.rsplit(".", 1)[-1] for h in registry._watching.get_all_handlers()] == ["vaultbundle_event"]


def test_configure_installs_storages_that_keep_and_compute_nothing() -> None:
    settings = kopf.OperatorSettings()
    kopfstate.configure(settings)
    diffbase, progress = settings.persistence.diffbase_storage, settings.persistence.progress_storage
    assert isinstance(diffbase, kopfstate.NoDiffBase) and isinstance(progress, kopfstate.NoProgress)
    assert settings.watching.chunk_size == kopfstate.LIST_CHUNK  # the initial LIST is paged, not one response
    assert settings.queueing.idle_timeout == kopfstate.IDLE_TIMEOUT < kopf.OperatorSettings().queueing.idle_timeout

    body = kopf.Body(copy.deepcopy(BODY))
    patch = kopf.Patch()
    assert diffbase.build(body=body) == {} and diffbase.fetch(body=body) is None
    diffbase.store(body=body, patch=patch, essence=kopf.BodyEssence(spec={"x": 1}))
    progress.touch(body=body, patch=patch, value="now")
    essence = kopf.BodyEssence(spec={"x": 1})
    assert progress.clear(essence=essence) is essence
    assert not patch  # nothing is ever written to the object
    assert dict(body) == BODY


def test_the_startup_handler_installs_them_first(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = build_registry(Settings())
    startup = next(h for h in registry._activities.get_all_handlers() if h.id.endswith(".startup"))
    settings = kopf.OperatorSettings()

    class Stop(Exception):
        pass

    def stop() -> None:
        raise Stop  # the rest of startup needs a cluster

    monkeypatch.setattr(controller.asyncio, "get_running_loop", stop)
    with pytest.raises(Stop):
        asyncio.run(startup.fn(settings=settings))
    assert isinstance(settings.persistence.diffbase_storage, kopfstate.NoDiffBase)
    assert isinstance(settings.persistence.progress_storage, kopfstate.NoProgress)
