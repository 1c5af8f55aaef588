"""``python -m e2e.testbed up [--node]|down|status|image`` (what ``make testbed-up`` and friends call)."""

from __future__ import annotations

import argparse
import sys

from .artifacts import BuildError
from .bed import TestBed, TestBedError
from .node_image import build_and_load
from .node_progress import NodeError


def _up(bed: TestBed) -> int:
    try:
        bed.up()
    except (TestBedError, BuildError, NodeError) as exc:
        print(f"testbed up FAILED:\n{exc}", file=sys.stderr)
        return 1
    return 0


def _down(bed: TestBed) -> int:
    if not bed.records():
        print("test bed is not running")
        return 0
    leftovers = bed.down()
    if leftovers:
        print(f"still listening after down: {', '.join(leftovers)}", file=sys.stderr)
        return 1
    print("test bed down")
    return 0


def _status(bed: TestBed) -> int:
    statuses = bed.status()
    if not statuses:
        print("test bed is not running")
        return 1
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        ports = ",".join(f"{k}={v}" for k, v in s.ports.items())
        state = "healthy" if s.healthy else "DOWN"
        print(f"{s.name:<{width}}  pid {s.pid:<7}  {ports:<28}  {state:<7}  {s.detail}")
    return 0 if all(s.healthy for s in statuses) else 1


def _image(bed: TestBed) -> int:
    try:
        build_and_load(bed)
    except NodeError as exc:
        print(f"make image FAILED:\n{exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.testbed", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "image"))
    parser.add_argument(
        "--node", action="store_true", help="up: also run a kubelet node (containerd + runc) that runs real pods"
    )
    args = parser.parse_args(argv)
    bed = TestBed(say=lambda message: print(message, flush=True), node=args.node)
    return {"up": _up, "down": _down, "status": _status, "image": _image}[args.command](bed)


if __name__ == "__main__":
    sys.exit(main())
