"""A small bundle's per-key loops (a target's selection, the content digest) run on the event loop: a worker
thread trip would cost more than the loop. A large one's still run in a worker thread, off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.kit import World
from vaultbundle.crypto import rqe1
from vaultbundle.vault import SMALL_CHARS, SMALL_ENTRIES, Vault


def test_small_means_few_and_short_entries() -> None:
    assert Vault({f"K{i}": "v" for i in range(SMALL_ENTRIES)}).is_small()
    assert not Vault({f"K{i}": "v" for i in range(SMALL_ENTRIES + 1)}).is_small()
    assert not Vault({"K": "v"}, {f"f{i}": b"" for i in range(SMALL_ENTRIES)}).is_small()  # files count too
    assert Vault({"K": "v" * (SMALL_CHARS - 1)}, {"f": b"x"}).is_small()
    assert not Vault({"K": "v" * SMALL_CHARS}, {"f": b"x"}).is_small()


def _threaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions sent to a worker thread from now on."""
    names: list[str] = []
    real = asyncio.to_thread

    async def counting(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        names.append(getattr(function, "__name__", type(function).__name__))
        return await real(function, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    return names


@pytest.mark.parametrize("keys", [3, SMALL_ENTRIES + 1])
async def test_selection_and_digest_run_in_a_thread_only_for_a_large_bundle(
    monkeypatch: pytest.MonkeyPatch, keys: int
) -> None:
    world = World()
    world.push("".join(f"K{i}=value-{i}\n" for i in range(keys)).encode())
    threaded = _threaded(monkeypatch)
    decrypted_in: list[str] = []
    real_open = rqe1.open_envelope

    def recording_open(*args: Any) -> bytes:
        decrypted_in.append(threading.current_thread().name)
        return real_open(*args)

    monkeypatch.setattr(rqe1, "open_envelope", recording_open)
    await world.cycle()
    assert decrypted_in and threading.current_thread().name not in decrypted_in  # AES-GCM never on the loop
    assert world.secret() == {f"K{i}": f"value-{i}" for i in range(keys)}
    assert world.kube.status["bundle"]["digest"]  # computed either way
    large = keys > SMALL_ENTRIES
    assert ("desired" in threaded) is large and ("content_digest" in threaded) is large
    # two S3 trips (pointer + envelope; then decryption, the generation GET and the parse), none for AES-GCM alone
    assert threaded.count("call") == 2 and "open_envelope" not in threaded
