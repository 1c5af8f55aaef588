"""Where the operator's first-sync CPU goes: py-spy samples sorted into named shares.

    python -m bench.profile_shares RAW [--ms-per-bundle 13.5] [--name first_sync_profile]

RAW is `py-spy record --format raw` output (collapsed stacks, `frame;frame;... count`, root first), as
`bench.first_sync_cpu --py-spy` records it over the first-sync window (GIL-holding samples only, so a thread
waiting on a socket or a lock does not count). Each sample goes to the component of its innermost frame that
has one (the first rule below that the frame matches): urllib3 under botocore is "S3 GET", urllib3 under the
kube client is "Kubernetes client", and kopf's frames at the root of every event-loop stack claim only what
runs in kopf itself.
With --ms-per-bundle (the same run's operator CPU per bundle) each share is also given in ms per bundle.
Writes bench/results/<name>.json and .png; the rule table is in the JSON, so the split can be checked.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
HAND_OFFS = (
    *("concurrent/futures/", "threading.py", "queue.py", "asyncio/threads.py", "run_in_executor", "_chain_future"),
    *("call_soon_threadsafe", "_copy_future_state", "_call_set_state", "_write_to_self"),
)

# (share, substrings of a frame's "function (file:line)"); checked from the leaf up, first matching rule per frame.
# Frames without a rule (urllib3, http.client, json, socket, ...) belong to their caller.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kopf: Event posting", ("kopf/_core/engines/posting", "kopf/_cogs/clients/events")),
    ("S3 GET (botocore signer, urllib3; moto closes each connection)", ("s3get.py", "botocore/", "remote.py")),
    ("Kubernetes client calls", ("kubernetes/client/", "vaultbundle/kube.py")),
    ("our Secret/ConfigMap watches", ("vaultbundle/secretwatch.py", "vaultbundle/sourcecache.py")),
    (
        "kopf: watch streams and JSON decoding",
        ("kopf/_cogs/clients/watching", "stream (kopf/_cogs/clients/api", "aiokits"),
    ),
    ("kopf: per-event processing", ("kopf/",)),
    ("aiohttp (kopf's API client: watch streams, Event posts)", ("aiohttp/", "multidict/", "yarl/")),
    ("AES-GCM, PBKDF2 cache, HMAC digests", ("vaultbundle/crypto/", "vaultbundle/digest", "cryptography/")),
    ("bundle parse (ZIP, vault format)", ("zipfile", "vaultbundle/bundles.py", "vaultbundle/vault.py")),
    ("logging", ("logging/__init__",)),
    ("metrics", ("prometheus_client/",)),
    ("our reconcile, targets, status, scheduling", ("vaultbundle/",)),
    ("thread hand-offs (executor, futures)", HAND_OFFS),
    ("event loop (asyncio, selectors)", ("asyncio/", "selectors.py")),
)
OTHER = "other"


def parse_raw(text: str) -> Counter[tuple[str, ...]]:
    """Collapsed stacks: `root;...;leaf count` per line."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit() and int(count) > 0:
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def share_of(stack: tuple[str, ...]) -> str:
    for frame in reversed(stack):
        for name, needles in RULES:
            if any(needle in frame for needle in needles):
                return name
    return OTHER


def shares(stacks: Counter[tuple[str, ...]], ms_per_bundle: float | None = None) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    for stack, count in stacks.items():
        totals[share_of(stack)] += count
    samples = sum(totals.values())
    rows = []
    for name, count in totals.most_common():
        row: dict[str, Any] = {"share": name, "samples": count, "percent": round(100 * count / max(samples, 1), 1)}
        if ms_per_bundle is not None:
            row["ms_per_bundle"] = round(ms_per_bundle * count / max(samples, 1), 2)
        rows.append(row)
    return {"samples": samples, "ms_per_bundle": ms_per_bundle, "shares": rows, "rules": [list(r) for r in RULES]}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional dependency (bench extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = result["shares"][::-1]
    unit = "ms_per_bundle" if result.get("ms_per_bundle") else "percent"
    figure, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    ax.barh([r["share"] for r in rows], [r[unit] for r in rows], color="#3a7")
    for y, row in enumerate(rows):
        ax.text(row[unit], y, f" {row['percent']} %", va="center", fontsize=8)
    ax.set_xlabel("operator CPU per sync (ms)" if unit == "ms_per_bundle" else "% of samples")
    title = result.get("title") or "operator CPU by share"
    ax.set_title(f"{title} ({result['samples']} GIL-holding samples)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(result: dict[str, Any], name: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / f"{name}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_shares", description=__doc__.split("\n")[0])
    parser.add_argument("raw", type=Path, help="py-spy --format raw output")
    parser.add_argument("--ms-per-bundle", type=float, help="the same run's operator CPU per first sync")
    parser.add_argument("--name", default="first_sync_profile", help="results file name in bench/results/")
    args = parser.parse_args(argv)
    result = shares(parse_raw(args.raw.read_text()), args.ms_per_bundle)
    write(result, args.name)
    json.dump(result["shares"], sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
