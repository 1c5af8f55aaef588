"""CPU per S3 GET: boto3's `client.get_object` against the lean path (`s3get.SignedGet`), side by side in one run.

    python -m bench.s3_get_cpu [--gets 2000] [--repeats 5] [--moto URL]

Both go through `S3Objects.get` (the operator's call: deadline, size checks, one socket read at a time); only
the transport differs. The endpoint is a minimal keep-alive HTTP/1.1 server in a child process (one fixed
200-byte answer with an ETag; its CPU is not counted), so the figure is the client's own cost; `--moto URL`
(e.g. the test bed's `AWS_ENDPOINT_URL`, with a bucket `bench-s3-get` created) adds a run against moto, which
closes every connection. CPU is this process's `time.process_time()` over `--gets` GETs after a warm-up, the
variants alternating per repeat; the result is median and min–max ms per GET and the ratio lean ÷ boto3, in
`bench/results/s3_get_cpu.json` and `.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.remote import S3Objects, make_client

from .run import machine_info
from .stats import spread

RESULTS = Path(__file__).resolve().parent / "results"
KEY = "p/latest"
SERVER = r"""
import socketserver, sys
BODY = b"x" * 200
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: \"e1\"\r\nContent-Type: application/octet-stream\r\n"
          b"Last-Modified: Wed, 02 Dec 2026 10:00:00 GMT\r\nx-amz-request-id: r1\r\n\r\n" % len(BODY)) + BODY
class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while self.rfile.readline():
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            self.wfile.write(ANSWER)
class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def config_for(endpoint: str, bucket: str = "bench-s3-get") -> BootstrapConfig:
    return BootstrapConfig(endpoint, "us-east-1", bucket, "bench", "bench-secret", "p/", "prod", "0" * 16, 1000)


def ms_per_get(objects: S3Objects, gets: int) -> float:
    for _ in range(50):  # warm-up: connections, first-call caches
        objects.get(KEY, if_none_match='"other"')
    started = time.process_time()
    for _ in range(gets):
        objects.get(KEY, if_none_match='"other"')
    return 1000 * (time.process_time() - started) / gets


def compare(config: BootstrapConfig, gets: int, repeats: int) -> dict[str, Any]:
    variants = {
        "boto3 get_object": S3Objects(config, client=make_client(config)),  # a client alone: GETs through it
        "lean (SignedGet)": S3Objects(config),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(repeats):
        names = list(variants) if repeat % 2 == 0 else list(variants)[::-1]
        for name in names:
            samples[name].append(round(ms_per_get(variants[name], gets), 3))
    summary = {name: spread(values, 3) for name, values in samples.items()}
    medians = [summary[name]["median"] for name in variants]
    return {"ms_per_get": summary, "ratio_lean_to_boto3": round(medians[1] / medians[0], 3)}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional dependency (bench extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cases = result["cases"]
    figure, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 4), squeeze=False)
    for ax, (case, entry) in zip(axes[0], cases.items(), strict=True):
        names = list(entry["ms_per_get"])
        medians = [entry["ms_per_get"][n]["median"] for n in names]
        ax.bar(names, medians, color=["#999", "#3a7"])
        for name in names:
            values = entry["ms_per_get"][name]["samples"]
            ax.scatter([name] * len(values), values, color="black", s=10, zorder=3)
        ax.set_title(f"{case}: CPU per GET (ms), lean ÷ boto3 = {entry['ratio_lean_to_boto3']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.s3_get_cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--moto", help="also against this moto endpoint (bucket bench-s3-get, created if missing)")
    parser.add_argument("--load-note", default="")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"machine": machine_info(args.load_note), "gets": args.gets, "repeats": args.repeats}
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        local = config_for(f"http://127.0.0.1:{port}")
        result["cases"] = {"keep-alive server": compare(local, args.gets, args.repeats)}
    finally:
        server.terminate()
        server.wait(10)
    if args.moto:
        config = dataclasses.replace(config_for(args.moto), access_key_id="testbed", secret_access_key="testbed")
        client = make_client(config)
        if config.bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=config.bucket)
        client.put_object(Bucket=config.bucket, Key=KEY, Body=b"x" * 200)
        result["cases"]["moto"] = compare(config, max(200, args.gets // 4), args.repeats)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "s3_get_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / "s3_get_cpu.png")
    print(json.dumps({case: entry["ms_per_get"] for case, entry in result["cases"].items()}, indent=1))
    print(json.dumps({case: entry["ratio_lean_to_boto3"] for case, entry in result["cases"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
