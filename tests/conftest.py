"""Shared test helpers. The conformance vectors are the repository's own copies, with provenance and checksums:
tests/vectors/vsync and tests/vectors/dotsec."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO / "tests" / "vectors" / "vsync"


@dataclass(frozen=True)
class Vector:
    category: str
    name: str
    doc: dict  # type: ignore[type-arg]
    data: bytes | None

    @property
    def id(self) -> str:
        return f"{self.category}/{self.name}"


def load_vectors(category: str) -> list[Vector]:
    folder = VECTORS / category
    if not folder.is_dir():
        pytest.fail(f"conformance vectors missing: {folder} (see tests/vectors/vsync/README.md)")
    vectors = []
    for path in sorted(folder.glob("*.json")):
        binary = path.with_suffix(".bin")
        vectors.append(
            Vector(category, path.stem, json.loads(path.read_text()), binary.read_bytes() if binary.exists() else None)
        )
    assert vectors, f"no vectors in {folder}"
    return vectors
