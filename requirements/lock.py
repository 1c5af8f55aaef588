"""`make lock`: requirements/operator.lock from pyproject.toml (runtime + every store extra), with sha256 hashes.

pip-compile lists the project itself (`vaultbundle @ file:///...`, through the self-referencing `all` extra);
that line has no hash and names a local path, so it is dropped: the Dockerfile installs the wheel separately.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parent / "operator.lock"
SELF = re.compile(
    r"# WARNING: pip install will require the following package to be hashed\.\n# Consider using .*\n"
    r"vaultbundle @ file://\S+\n    # via vaultbundle \(pyproject\.toml\)\n"
)


def main(pip_compile: str) -> int:
    command = [
        pip_compile,
        "--quiet",
        "--generate-hashes",
        "--allow-unsafe",
        "--strip-extras",
        "--no-emit-index-url",
        "--no-emit-find-links",
        "--extra",
        "all",
        "--output-file",
        "requirements/operator.lock",
        "pyproject.toml",
    ]
    subprocess.run(command, check=True, cwd=LOCK.parent.parent)  # noqa: S603 - our fixed argv, no shell
    text, count = SELF.subn("", LOCK.read_text())
    if "vaultbundle @" in text or "WARNING" in text:
        print("lock: unexpected unhashed entry left in operator.lock; inspect it", file=sys.stderr)
        return 1
    LOCK.write_text(text)
    print(f"lock: wrote {LOCK} ({text.count('==')} packages; self-reference removed: {bool(count)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
