"""`make demo`: vaultbundle end to end on the local test bed, every step checked.

Seals a sample vault folder with the real `vaultbundle` CLI into S3 (moto), runs the operator as a local
process against the real kube-apiserver, shows the Secret it writes, then pushes a change and measures how
long it takes to arrive. Needs a running test bed (`make testbed-up`); reads $VAULTBUNDLE_TESTBED_ENV, else
.testbed/env. Values shown are fake demo data; the passphrase and the S3 credentials are never printed.
Exits 0 only if every check passed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from e2e.testbed.envfile import read_env
from vaultbundle.crypto import configblob
from vaultbundle.crypto.configblob import BootstrapConfig

REPO = Path(__file__).resolve().parents[1]
VAULTBUNDLE = str(Path(sys.executable).with_name("vaultbundle"))  # the CLI of the venv running this demo
NS = "vaultbundle-demo"
STEPS = 8
NEEDED = ("TESTBED_DIR", "KUBECONFIG", "KUBECTL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
FAKE_PEM = (
    "-----BEGIN CERTIFICATE-----\nZmFrZSBkZW1vIGNlcnRpZmljYXRlLCBub3QgYSByZWFsIG9uZQ==\n-----END CERTIFICATE-----\n"
)
FIRST = {
    "DATABASE_URL": "postgres://demo:not-a-real-password@db.example.invalid:5432/app",
    "API_TOKEN": "demo-token-1111",
    "FEATURE_FLAG": "on",
}
SECOND = {"DATABASE_URL": FIRST["DATABASE_URL"], "API_TOKEN": "demo-token-2222"}  # token rotated, flag removed
VAULTBUNDLE_YAML = f"""\
apiVersion: vaultbundle.io/v1alpha1
kind: VaultBundle
metadata:
  name: web
  namespace: {NS}
spec:
  source:
    configSecretRef: {{name: web-vsync}}
    passphraseSecretRef: {{name: web-passphrase}}
  refreshInterval: 2s
  targets:
    - name: web-env
      kubernetesSecret: {{name: web-env, files: {{include: ["*"]}}}}
"""


class DemoError(Exception):
    """A step could not verify its result; the message says what and where to look."""


class Demo:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.dir = env, workdir
        self.kubectl = [env["KUBECTL"], "--kubeconfig", env["KUBECONFIG"]]
        self.log = Path(env["TESTBED_DIR"]) / "logs" / "demo-operator.log"
        self.config, self.passphrase = workdir / "web.cfg", workdir / "web.pass"
        self.secret = base64.b64encode(os.urandom(32)).decode()  # the passphrase, in the shape of a vsync key
        self.operator: subprocess.Popen[bytes] | None = None
        self.s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}, connect_timeout=5, retries={"max_attempts": 2}),
        )

    def stop(self) -> int | None:
        """SIGTERM the operator and wait for it; returns its exit code (None if it never ran)."""
        if self.operator is None:
            return None
        if self.operator.poll() is None:
            self.operator.terminate()
            try:
                self.operator.wait(20)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()
        return self.operator.returncode

    def show(self, cmd: list[str], stdin: str | None = None) -> str:
        """Run a command as a user would type it, echo it (shortened) and its output; fail on a non-zero exit."""
        line = shlex.join(cmd).replace(shlex.join(self.kubectl), "kubectl").replace(VAULTBUNDLE, "vaultbundle")
        print(f"$ {line.replace(str(self.dir), '$DEMO')}", flush=True)
        out = subprocess.run(cmd, input=stdin, check=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        print("\n".join(f"  {text}" for text in out.stdout.rstrip().splitlines()), flush=True)
        return out.stdout

    def kube(self, *args: str) -> str:
        return subprocess.run([*self.kubectl, *args], check=True, capture_output=True, text=True).stdout

    def secret_data(self) -> dict[str, str] | None:
        found = self.kube("-n", NS, "get", "secret", "web-env", "--ignore-not-found", "-o", "json")
        if not found.strip():
            return None
        return {k: base64.b64decode(v).decode() for k, v in (json.loads(found).get("data") or {}).items()}

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.kube("-n", NS, "get", "vb", "web", "-o", "json")).get("status") or {})

    def vb_events(self) -> list[str]:
        events = json.loads(self.kube("-n", NS, "get", "events", "-o", "json")).get("items") or []
        return [e.get("reason", "") for e in events if e.get("involvedObject", {}).get("kind") == "VaultBundle"]

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := check()):
            if self.operator and self.operator.poll() is not None:
                raise DemoError(f"the operator exited ({self.operator.returncode}) while waiting for {what}")
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)
        return value

    def push(self, folder: Path) -> str:
        cmd = [VAULTBUNDLE, "push", "--config-file", str(self.config), "--passphrase-file", str(self.passphrase)]
        out = self.show([*cmd, "--layout", "cli", str(folder)])
        if not (match := re.search(r"pushed cli bundle (\d{8}-\d{6})", out)):
            raise DemoError(f"unexpected push output: {out!r}")
        return match.group(1)

    def synced(self, timestamp: str) -> dict[str, Any] | None:
        """The status once Ready=True/Synced names *timestamp* (new `bundle.timestamp` or old `bundleTimestamp`)."""
        status = self.status()
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        stamp = (status.get("bundle") or {}).get("timestamp") or status.get("bundleTimestamp")
        return status if (ready.get("status"), ready.get("reason"), stamp) == ("True", "Synced", timestamp) else None


def step(number: int, title: str) -> None:
    print(f"\n[{number}/{STEPS}] {title}", flush=True)


def expect(got: object, want: object, what: str) -> None:
    if got != want:
        raise DemoError(f"{what}: expected {want!r}, got {got!r}")
    print(f"  ok: {what}")


def indent(text: str, prefix: str = "    ") -> str:
    return "".join(f"{prefix}{line}\n" for line in text.splitlines())


def write_folder(folder: Path, values: dict[str, str]) -> None:
    (folder / "certs").mkdir(parents=True, exist_ok=True)
    (folder / ".env.demo").write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    (folder / "certs" / "ca.pem").write_text(FAKE_PEM)


def print_secret(data: dict[str, str]) -> None:
    for key, value in sorted(data.items()):
        print(f"    {key:<13} {value.splitlines()[0] + ' (…)' if value.count(chr(10)) > 1 else value}")


def seal_and_push(demo: Demo, folder: Path) -> str:
    step(2, "A sample vault folder (fake demo values)")
    write_folder(folder, FIRST)
    print(f"  $DEMO = {demo.dir}\n  vault/.env.demo:\n{indent((folder / '.env.demo').read_text())}", end="")
    print("  vault/certs/ca.pem (a fake PEM)")

    step(3, "Seal the folder and upload it to S3 with the vaultbundle CLI")
    bucket, env = f"{NS}-{os.urandom(4).hex()}", demo.env
    demo.s3.create_bucket(Bucket=bucket)
    config = BootstrapConfig(
        endpoint=env["AWS_ENDPOINT_URL"],
        region=env.get("AWS_DEFAULT_REGION") or "us-east-1",
        bucket=bucket,
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        prefix="demo/web/",
        env="demo",
        salt=base64.b64encode(os.urandom(18)).decode(),
        iterations=600_000,
    )
    for path, text in ((demo.config, configblob.encode(config)), (demo.passphrase, demo.secret)):
        path.touch(mode=0o600)
        path.write_text(text + "\n")
    print(f"  bucket {bucket}; $DEMO/web.cfg holds the vsync config blob (S3 credentials, prefix demo/web/, salt),")
    print("  $DEMO/web.pass a random 32-byte passphrase; both mode 0600, neither is printed")
    timestamp = demo.push(folder)
    out = demo.show([VAULTBUNDLE, "inspect", "--config-file", str(demo.config)])
    expect(f"timestamp: {timestamp}" in out.splitlines(), True, f"the bucket's pointer names bundle {timestamp}")
    return timestamp


def deploy(demo: Demo) -> None:
    step(4, f"Install the CRD, then namespace {NS} with the two source Secrets and a VaultBundle")
    demo.show([*demo.kubectl, "apply", "--server-side", "-f", str(REPO / "crds")])
    demo.show(
        [*demo.kubectl, "wait", "--for=condition=Established", "crd/vaultbundles.vaultbundle.io", "--timeout=60s"]
    )
    if demo.kube("get", "namespace", NS, "--ignore-not-found", "-o", "name").strip():  # the previous run's
        demo.show([*demo.kubectl, "delete", "namespace", NS, "--wait=true", "--timeout=120s"])
    demo.show([*demo.kubectl, "create", "namespace", NS])
    for name, key, path in (("web-vsync", "config", demo.config), ("web-passphrase", "passphrase", demo.passphrase)):
        demo.show([*demo.kubectl, "-n", NS, "create", "secret", "generic", name, f"--from-file={key}={path}"])
    print(indent(VAULTBUNDLE_YAML, "  | "), end="")
    demo.show([*demo.kubectl, "apply", "-f", "-"], stdin=VAULTBUNDLE_YAML)


def start_operator(demo: Demo, first: str) -> None:
    step(5, "Start the operator (a local process) and wait for the Secret web-env")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [VAULTBUNDLE, "run", "--namespace", NS, "--kubeconfig", demo.env["KUBECONFIG"]]
    cmd += ["--min-refresh-interval", "1s", "--liveness", f"http://127.0.0.1:{port}/healthz"]
    print(f"$ {shlex.join(cmd).replace(VAULTBUNDLE, 'vaultbundle')} > {demo.log} 2>&1 &", flush=True)
    demo.log.parent.mkdir(parents=True, exist_ok=True)
    with demo.log.open("wb") as sink:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        demo.operator = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
    launched = time.monotonic()
    demo.wait(demo.secret_data, "the Secret web-env")
    print(f"  the Secret web-env appeared {time.monotonic() - launched:.1f}s after the operator started")
    demo.wait(lambda: demo.synced(first), f"Ready=True, reason Synced, bundle {first}", timeout=30)


def show_result(demo: Demo) -> None:
    step(6, "What the operator did")
    demo.show([*demo.kubectl, "-n", NS, "get", "vb"])
    print("  Secret web-env, decoded:")
    data = demo.secret_data() or {}
    print_secret(data)
    expect(data, {**FIRST, "certs_ca.pem": FAKE_PEM}, "the Secret holds exactly the pushed keys and the file")
    print(f"  VaultBundle web .status:\n{indent(yaml.safe_dump(demo.status(), sort_keys=False))}", end="")
    demo.wait(demo.vb_events, "an Event on VaultBundle web", timeout=15)
    demo.show([*demo.kubectl, "-n", NS, "get", "events", "--sort-by=.lastTimestamp"])


def update(demo: Demo, folder: Path, first: str) -> None:
    step(7, "Rotate API_TOKEN, remove FEATURE_FLAG, push again and time the propagation")
    before = demo.secret_data()
    (folder / ".env.demo").unlink()
    write_folder(folder, SECOND)
    second = demo.push(folder)
    pushed = time.monotonic()
    data = demo.wait(lambda: (now := demo.secret_data()) != before and now, "the Secret to change")
    print(f"  the Secret changed {time.monotonic() - pushed:.1f}s after the push (refreshInterval: 2s)")
    print_secret(data)
    expect(data, {**SECOND, "certs_ca.pem": FAKE_PEM}, "the Secret holds the new bundle")
    expect(
        ("FEATURE_FLAG" in data, data["API_TOKEN"] != FIRST["API_TOKEN"]),
        (False, True),
        "FEATURE_FLAG is gone, API_TOKEN changed",
    )
    demo.wait(lambda: demo.synced(second), f"the status to name bundle {second}", timeout=30)
    print(f"  ok: status: Ready=True, reason Synced, bundle {second} (was {first})")


def run(demo: Demo) -> None:
    started, folder = time.monotonic(), demo.dir / "vault"
    first = seal_and_push(demo, folder)
    deploy(demo)
    start_operator(demo, first)
    show_result(demo)
    update(demo, folder, first)
    step(8, "Stop the operator")
    expect(demo.stop(), 0, "the operator exited cleanly on SIGTERM")
    expect(demo.secret in demo.log.read_text(errors="replace"), False, "the passphrase is not in the operator log")
    print(f"  operator log: {demo.log}")
    print(f"  look around:  {shlex.join(demo.kubectl)} -n {NS} get vb,secrets,events")
    print("  the test bed keeps running; `make testbed-down` stops it")
    print(f"\ndemo OK: every step verified ({time.monotonic() - started:.0f}s)")


def load_env() -> dict[str, str]:
    step(1, "Find the test bed")
    path = Path(os.environ.get("VAULTBUNDLE_TESTBED_ENV") or REPO / ".testbed" / "env")
    if not path.is_file():
        raise DemoError(f"{path} does not exist: start the test bed first with `make testbed-up`")
    env = read_env(path)
    if missing := [key for key in NEEDED if not env.get(key)]:
        raise DemoError(f"{path} lacks {', '.join(missing)}: restart the test bed (make testbed-down testbed-up)")
    print(f"  {path}: Kubernetes at {env.get('KUBE_APISERVER_URL')}, S3 (moto) at {env['AWS_ENDPOINT_URL']}")
    return env


def check_reachable(demo: Demo) -> None:
    try:
        ready = demo.kube("get", "--raw=/readyz", "--request-timeout=5s").strip()
        demo.s3.list_buckets()
    except (subprocess.CalledProcessError, BotoCoreError, ClientError) as exc:
        raise DemoError(f"the test bed is not answering ({exc}); check `make testbed-status`") from None
    expect(ready, "ok", "kube-apiserver /readyz")
    print("  ok: S3 answers")


def main() -> int:
    demo: Demo | None = None
    try:
        env = load_env()
        with tempfile.TemporaryDirectory(prefix="vaultbundle-demo-") as tmp:
            demo = Demo(env, Path(tmp))
            try:
                check_reachable(demo)
                run(demo)
            finally:
                demo.stop()
    except (DemoError, subprocess.CalledProcessError, BotoCoreError, ClientError, KeyboardInterrupt) as exc:
        if isinstance(exc, subprocess.CalledProcessError):
            output = (exc.stdout or "") + (exc.stderr or "")
            exc = DemoError(f"`{shlex.join(exc.cmd)}` exited {exc.returncode}:\n{output.rstrip()}")
        print(f"\nDEMO FAILED: {exc or type(exc).__name__}", file=sys.stderr)
        if demo and demo.operator and demo.log.is_file():
            tail = demo.log.read_text(errors="replace").splitlines()[-40:]
            print(f"--- last {len(tail)} lines of {demo.log} ---", *tail, sep="\n", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
