"""`make demo`: vaultbundle end to end on the local test bed, every step checked.

Seals a sample vault folder into S3 (moto) with the real `vaultbundle` CLI, runs the operator as a local process
against the real kube-apiserver, shows the Secret it writes, then pushes a change and times how long it takes to
arrive. Needs a running test bed (`make testbed-up`); reads $VAULTBUNDLE_TESTBED_ENV, else .testbed/env.
Shown values are fake demo data; the passphrase and the S3 credentials are never printed.
Exits 0 only if every check passed; leaves the namespace (for a look around) and the test bed running.

`python -m e2e.demo --plan` prints one line saying what `make demo` will do and roughly how long it takes,
counting the builds still missing from the cache. It needs only the standard library (make runs it before
anything is installed), which is why the third-party imports below sit in the functions that use them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e.testbed import artifacts
from e2e.testbed.config import Binaries, cache_dir
from e2e.testbed.envfile import read_env

REPO = Path(__file__).resolve().parents[1]
VAULTBUNDLE = str(Path(sys.executable).with_name("vaultbundle"))  # the CLI of the venv running this demo
NS = "vaultbundle-demo"
NEEDED = ("KUBECONFIG", "KUBECTL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
FAKE_PEM = (
    "-----BEGIN CERTIFICATE-----\nZmFrZSBkZW1vIGNlcnRpZmljYXRlLCBub3QgYSByZWFsIG9uZQ==\n-----END CERTIFICATE-----\n"
)
FIRST = {
    "DATABASE_URL": "postgres://demo:not-a-real-password@db.example.invalid:5432/app",
    "API_TOKEN": "demo-token-1111",
    "FEATURE_FLAG": "on",
}
SECOND = {"DATABASE_URL": FIRST["DATABASE_URL"], "API_TOKEN": "demo-token-2222"}  # token rotated, flag removed
STATUS_JSONPATH = (
    '{"bundle: "}{.status.bundle}{"\\n"}'
    '{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\\n"}{end}'
    '{range .status.targets[*]}target {.name}: {.state}, {.message}{"\\n"}{end}'
)
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
    """A step could not verify its result; the message says what."""


class Demo:
    """The test bed's clients, the temp dir with the vault folder and the source files, and the operator."""

    def __init__(self, env: dict[str, str], env_file: Path, workdir: Path) -> None:
        self.env, self.env_file, self.dir = env, env_file, workdir
        self.kubectl = [env["KUBECTL"], "--kubeconfig", env["KUBECONFIG"]]
        self.log = env_file.parent / "logs" / "demo-operator.log"
        self.config, self.passphrase = workdir / "web.cfg", workdir / "web.pass"
        self.secret = base64.b64encode(os.urandom(32)).decode()  # the passphrase, shaped like a vsync key
        self.operator: subprocess.Popen[bytes] | None = None
        import boto3
        from botocore.config import Config

        self.s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}, connect_timeout=5, retries={"max_attempts": 2}),
        )

    def show(self, cmd: list[str], stdin: str | None = None) -> str:
        """Run a command, echo it (shortened) and its output; a non-zero exit raises CalledProcessError."""
        line = shlex.join(cmd).replace(shlex.join(self.kubectl), "kubectl").replace(VAULTBUNDLE, "vaultbundle")
        print(f"$ {line.replace(str(self.dir), '$DEMO')}", flush=True)
        out = subprocess.run(cmd, input=stdin, check=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        print(indent(out.stdout, "  "), end="", flush=True)
        return out.stdout

    def kube(self, *args: str) -> str:
        return subprocess.run([*self.kubectl, "-n", NS, *args], check=True, capture_output=True, text=True).stdout

    def push(self, folder: Path) -> str:
        cmd = [VAULTBUNDLE, "push", "--config-file", str(self.config), "--passphrase-file", str(self.passphrase)]
        out = self.show([*cmd, "--layout", "cli", str(folder)])
        if not (match := re.search(r"^pushed cli bundle (\d{8}-\d{6}) ", out, re.MULTILINE)):
            raise DemoError(f"unexpected output from vaultbundle push: {out!r}")
        return match.group(1)

    def secret_data(self) -> dict[str, str] | None:
        found = self.kube("get", "secret", "web-env", "--ignore-not-found", "-o", "json")
        if not found.strip():
            return None
        return {k: base64.b64decode(v).decode() for k, v in (json.loads(found).get("data") or {}).items()}

    def status(self) -> dict[str, Any]:
        found = self.kube("get", "vaultbundle", "web", "--ignore-not-found", "-o", "json")
        return dict(json.loads(found).get("status") or {}) if found.strip() else {}

    def synced(self, timestamp: str) -> str | None:
        """The bundle timestamp once the status says Ready=True (Synced) for *timestamp*, else None."""
        status = self.status()
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        stamp = (status.get("bundle") or {}).get("timestamp") or status.get("bundleTimestamp")  # new or old field
        return stamp if (ready.get("status"), ready.get("reason"), stamp) == ("True", "Synced", timestamp) else None

    def events(self) -> list[str]:
        items = json.loads(self.kube("get", "events", "-o", "json")).get("items") or []
        return [e.get("reason", "") for e in items if (e.get("involvedObject") or {}).get("kind") == "VaultBundle"]

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := check()):
            if self.operator and self.operator.poll() is not None:
                raise DemoError(f"the operator exited ({self.operator.returncode}) while waiting for {what}")
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)
        return value

    def explain_failure(self) -> None:
        """The operator log's tail and the VaultBundle's conditions, on stderr."""
        tail = self.log.read_text(errors="replace").splitlines()[-40:] if self.log.is_file() else []
        print(f"--- the last {len(tail)} lines of {self.log} ---", *tail, sep="\n", file=sys.stderr)
        with contextlib.suppress(subprocess.CalledProcessError):
            for c in self.status().get("conditions") or []:
                print(f"VaultBundle web {c['type']}={c['status']} ({c['reason']}): {c['message']}", file=sys.stderr)

    def stop(self) -> int | None:
        """SIGTERM the operator and wait for it; its exit code (None if it never started)."""
        if self.operator and self.operator.poll() is None:
            self.operator.terminate()
            try:
                self.operator.wait(20)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()
        return self.operator.returncode if self.operator else None


def step(number: int, title: str) -> None:
    print(f"\n[{number}/8] {title}", flush=True)


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
        first, *more = value.splitlines() or [""]
        print(f"    {key:<13} {first}{' (…)' if more else ''}")


def find_testbed() -> tuple[dict[str, str], Path]:
    step(1, "Find the test bed")
    path = Path(os.environ.get("VAULTBUNDLE_TESTBED_ENV") or REPO / ".testbed" / "env")
    if not path.is_file():
        raise DemoError(f"{path} does not exist: start the test bed first with `make testbed-up`")
    env = read_env(path)
    if missing := [key for key in NEEDED if not env.get(key)]:
        raise DemoError(f"{path} lacks {', '.join(missing)}: restart the test bed (make testbed-down testbed-up)")
    print(f"  {path}: Kubernetes {env.get('KUBE_APISERVER_URL')}, S3 (moto) {env['AWS_ENDPOINT_URL']}")
    return env, path


def check_reachable(demo: Demo) -> None:
    try:
        ready = demo.kube("get", "--raw=/readyz", "--request-timeout=5s").strip()
        demo.s3.list_buckets()
    except (OSError, subprocess.CalledProcessError, *_s3_errors()) as exc:
        detail = (exc.stderr or "").strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        raise DemoError(f"the test bed does not answer: {detail}\nsee `make testbed-status`") from None
    expect(ready, "ok", "kube-apiserver is ready and S3 answers")


def _s3_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError


def seal_and_push(demo: Demo, folder: Path) -> str:
    from vaultbundle.crypto import configblob
    from vaultbundle.crypto.configblob import BootstrapConfig

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
    print(f"  new bucket {bucket}; $DEMO/web.cfg: the vsync config blob (bucket, prefix demo/web/, S3 keys, salt);")
    print("  $DEMO/web.pass: a random passphrase. Both are mode 0600 and never printed.")
    timestamp = demo.push(folder)
    out = demo.show([VAULTBUNDLE, "inspect", "--config-file", str(demo.config)])
    expect(f"timestamp: {timestamp}" in out.splitlines(), True, f"the bucket's pointer names bundle {timestamp}")
    return timestamp


def deploy(demo: Demo) -> None:
    step(4, f"Install the CRD; namespace {NS} with the two source Secrets and a VaultBundle")
    # --force-conflicts: take over CRD fields another field manager (e.g. the test suite) applied differently
    demo.show([*demo.kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds")])
    demo.show([*demo.kubectl, "wait", "--for=condition=Established", "crd/vaultbundles.vaultbundle.io"])
    if subprocess.run([*demo.kubectl, "get", "namespace", NS], capture_output=True, check=False).returncode == 0:
        demo.show([*demo.kubectl, "delete", "namespace", NS, "--timeout=120s"])  # the previous run's; waits until gone
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
    cmd = [VAULTBUNDLE, "run", "--namespace", NS, "--kubeconfig", demo.env["KUBECONFIG"], "--min-refresh-interval"]
    # the health endpoint's options are changing: --metrics-host/--metrics-port now, a --liveness URL before
    usage = subprocess.run([VAULTBUNDLE, "run", "--help"], check=True, capture_output=True, text=True).stdout
    if "--metrics-port" in usage:
        cmd += ["1s", "--metrics-host", "127.0.0.1", "--metrics-port", str(port)]
    else:
        cmd += ["1s", "--liveness", f"http://127.0.0.1:{port}/healthz"]
    if "--egress-allow-local" in usage:  # the test bed's S3 listens on loopback, which tenants may not reach
        cmd += ["--egress-allow-local"]
    print(f"$ {shlex.join(cmd).replace(VAULTBUNDLE, 'vaultbundle')} > {demo.log} 2>&1 &", flush=True)
    demo.log.parent.mkdir(parents=True, exist_ok=True)
    with demo.log.open("wb") as sink:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        demo.operator = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
    started = time.monotonic()
    demo.wait(demo.secret_data, "the Secret web-env")
    print(f"  the Secret web-env appeared {time.monotonic() - started:.1f}s after the operator started")
    demo.wait(lambda: demo.synced(first), f"status Ready=True (Synced) for bundle {first}", timeout=30)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        expect(response.status, 200, f"the operator's health endpoint answers (127.0.0.1:{port}/healthz)")


def show_result(demo: Demo) -> None:
    step(6, "What the operator did")
    demo.show([*demo.kubectl, "-n", NS, "get", "vaultbundles"])
    print("  Secret web-env, decoded:")
    data = demo.secret_data() or {}
    print_secret(data)
    expect(data, {**FIRST, "certs_ca.pem": FAKE_PEM}, "the Secret holds exactly the pushed keys and file")
    demo.show([*demo.kubectl, "-n", NS, "get", "vaultbundle", "web", "-o", f"jsonpath={STATUS_JSONPATH}"])
    demo.wait(demo.events, "an Event on the VaultBundle", timeout=15)
    demo.show([*demo.kubectl, "-n", NS, "get", "events", "--sort-by=.lastTimestamp"])


def update(demo: Demo, folder: Path, first: str) -> None:
    step(7, "Rotate API_TOKEN, remove FEATURE_FLAG, push again and time the propagation")
    before = demo.secret_data()
    (folder / ".env.demo").unlink()
    write_folder(folder, SECOND)
    second = demo.push(folder)
    pushed = time.monotonic()
    data = demo.wait(lambda: (now := demo.secret_data()) != before and now, "the Secret to change")
    print(f"  the Secret changed {time.monotonic() - pushed:.1f}s after the push (refreshInterval: 2s):")
    print_secret(data)
    expect(data, {**SECOND, "certs_ca.pem": FAKE_PEM}, "the Secret holds exactly the new bundle")
    expect("FEATURE_FLAG" in data, False, "FEATURE_FLAG is gone")
    expect(data["API_TOKEN"] == FIRST["API_TOKEN"], False, "API_TOKEN changed")
    stamp = demo.wait(lambda: demo.synced(second), f"status Ready=True (Synced) for bundle {second}", timeout=30)
    print(f"  ok: status bundle timestamp {stamp} (was {first}), Ready=True, reason Synced")


def stop_operator(demo: Demo) -> None:
    step(8, "Stop the operator")
    expect(demo.stop(), 0, "the operator exited cleanly on SIGTERM")
    expect(demo.secret in demo.log.read_text(errors="replace"), False, "the passphrase is not in the operator log")
    print(f"  operator log: {demo.log}")
    print(f"  look around:  set -a; . {os.path.relpath(demo.env_file)}; set +a; $KUBECTL -n {NS} get vb,secret,event")
    print("  the test bed keeps running; `make testbed-down` stops it")


DEMO_SECONDS = 20  # the demo's own steps once the bed is up (measured 14 s on a busy 2-core machine)
BED_START_SECONDS = 10
VENV_SECONDS = 120  # a cold `make venv` (hashed lock + test tools)


def plan_line(binaries: Binaries | None = None) -> str:
    """One line: what `make demo` will do and roughly how long, with the builds the cache still lacks."""
    binaries = binaries or Binaries(cache_dir())
    missing, build_seconds = artifacts.plan(binaries)
    cold = sum(a.typical_seconds for a in artifacts.artifacts(binaries)) + VENV_SECONDS
    if missing:
        builds = (
            f"build {', '.join(missing)} into {binaries.cache} (~{artifacts.minutes(build_seconds)}, progress shown), "
        )
    else:
        builds = "no builds (all cached), "
    total = build_seconds + BED_START_SECONDS + DEMO_SECONDS
    return (
        f"make demo: {builds}start the test bed (~{BED_START_SECONDS}s), seal a vault folder into its S3, run the "
        f"operator, show the Secret, push a change (~{DEMO_SECONDS}s): about {artifacts.minutes(total)} now; "
        f"a cold machine needs about {artifacts.minutes(cold + BED_START_SECONDS + DEMO_SECONDS)} (mostly Go builds)"
    )


def main() -> int:
    if sys.argv[1:] == ["--plan"]:
        print(plan_line(), flush=True)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # exit through `finally`, which stops the operator
    started, demo = time.monotonic(), None
    try:
        env, env_file = find_testbed()
        with tempfile.TemporaryDirectory(prefix="vaultbundle-demo-") as tmp:
            demo = Demo(env, env_file, Path(tmp))
            try:
                check_reachable(demo)
                first = seal_and_push(demo, demo.dir / "vault")
                deploy(demo)
                start_operator(demo, first)
                show_result(demo)
                update(demo, demo.dir / "vault", first)
                stop_operator(demo)
            finally:
                demo.stop()
    except KeyboardInterrupt:
        print("\ninterrupted (the operator was stopped)", file=sys.stderr)
        return 130
    except (DemoError, subprocess.CalledProcessError, *_s3_errors()) as exc:
        if isinstance(exc, subprocess.CalledProcessError):
            output = (exc.stdout or "") + (exc.stderr or "")
            exc = DemoError(f"`{shlex.join(exc.cmd)}` exited {exc.returncode}:\n{output.rstrip()}")
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
        if demo and demo.operator:
            demo.explain_failure()
        return 1
    print(f"\ndemo OK: every step verified in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
