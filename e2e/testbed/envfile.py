"""The ``.testbed/env`` file: shell-sourceable ``KEY=value`` lines (no ``export``), read back by tests."""

from __future__ import annotations

import shlex
from pathlib import Path


def write_env(path: Path, values: dict[str, str]) -> None:
    lines = ["# Written by `python -m e2e.testbed up`; source it with `set -a; . .testbed/env; set +a`."]
    lines += [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw_line in path.read_text().splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, raw = line.partition("=")
        parts = shlex.split(raw)
        values[key] = parts[0] if parts else ""
    return values
