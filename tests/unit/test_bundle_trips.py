"""Opening a bundle takes two worker-thread trips: the pointer and the envelope; then AES-GCM, the generation GET
and the parse together. No trip is made for the decryption alone, and none of it runs on the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.kit import World
from vaultbundle.crypto import rqe1


async def test_two_trips_open_a_bundle_and_aes_gcm_runs_in_one_of_them(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    world.push(b"A=1\nB=2\n")
    threaded: list[str] = []
    decrypted_in: list[str] = []
    real_to_thread, real_open = asyncio.to_thread, rqe1.open_envelope

    async def counting(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        threaded.append(getattr(function, "__name__", type(function).__name__))
        return await real_to_thread(function, *args, **kwargs)

    def recording_open(*args: Any) -> bytes:
        decrypted_in.append(threading.current_thread().name)
        return real_open(*args)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    monkeypatch.setattr(rqe1, "open_envelope", recording_open)
    await world.cycle()
    assert world.secret() == {"A": "1", "B": "2"}
    assert threaded.count("call") == 2 and "open_envelope" not in threaded  # `call`: verify._s3's trip
    assert len(decrypted_in) == 1 and threading.current_thread().name not in decrypted_in
