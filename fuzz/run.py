"""Long fuzzing runs with atheris (coverage-guided): `make fuzz` runs every target for FUZZ_SECONDS each.

    python -m fuzz.run TARGET [atheris/libFuzzer flags, e.g. -max_total_time=60 -rss_limit_mb=512]
    python -m fuzz.run --all SECONDS

Only vaultbundle's typed errors may escape a target; anything else (or a memory/time limit) is a crash, and
libFuzzer writes the input to crash-*/timeout-*/oom-* files.
"""

from __future__ import annotations

import subprocess
import sys

import atheris

with atheris.instrument_imports():
    from fuzz import targets


def main() -> None:
    if sys.argv[1:2] == ["--all"]:
        seconds = sys.argv[2] if len(sys.argv) > 2 else "30"
        failed = []
        for name in targets.TARGETS:
            print(f"== {name} ({seconds}s)", flush=True)
            code = subprocess.call(
                [
                    sys.executable,
                    "-m",
                    "fuzz.run",
                    name,
                    f"-max_total_time={seconds}",
                    "-rss_limit_mb=1024",
                    "-timeout=10",
                    "-max_len=65536",
                ]
            )
            if code:
                failed.append(name)
        print("fuzz findings in: " + ", ".join(failed) if failed else "fuzz: no findings")
        sys.exit(1 if failed else 0)
    name = sys.argv[1]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], lambda data: targets.run(name, data))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
