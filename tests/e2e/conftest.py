"""pytest support for tests that need the local test bed of real servers (``e2e/testbed``).

Use the session fixture ``testbed`` (a dict of the ``.testbed/env`` values) and mark such tests
``@pytest.mark.testbed``. The fixture reads ``$VAULTBUNDLE_TESTBED_ENV`` if set (a test bed someone else
runs), else ``<repo>/.testbed/env``; if no healthy test bed is running it starts one (``up``) once per
session and takes it down at the end, only if it started it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # so that ``e2e`` imports when pytest is not run from the repo root
    sys.path.insert(0, str(REPO_ROOT))

from e2e.testbed.bed import TestBed  # noqa: E402
from e2e.testbed.envfile import read_env  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "testbed: needs the local test bed of real servers (python -m e2e.testbed up)")


@pytest.fixture(scope="session")
def testbed() -> Iterator[dict[str, str]]:
    external = os.environ.get("VAULTBUNDLE_TESTBED_ENV")
    if external:
        path = Path(external)
        if not path.is_file():
            pytest.fail(f"VAULTBUNDLE_TESTBED_ENV={external} does not exist")
        yield read_env(path)
        return
    bed = TestBed(say=lambda message: print(f"[testbed] {message}", file=sys.stderr, flush=True))
    started = bed.up()
    try:
        yield bed.env()
    finally:
        if started:
            bed.down()
