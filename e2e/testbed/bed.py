"""Bring the whole test bed up, report on it, and take it down again.

State lives in ``.testbed/`` (see :class:`e2e.testbed.config.Layout`): ``pids.json`` records every process
started (PID, argv, start time, ports, health probe), ``env`` is what tests read, ``logs/`` has one log per
component.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import health
from .artifacts import ensure_artifacts, tail
from .components import PORT_NAMES, ComponentSpec, build_specs
from .config import (
    AWS_ACCESS_KEY_ID,
    AWS_REGION,
    AWS_SECRET_ACCESS_KEY,
    GITHUB_TOKEN,
    REPO_ROOT,
    Binaries,
    Layout,
    cache_dir,
    default_layout,
)
from .envfile import read_env, write_env
from .kubeconfig import write_kubeconfig
from .node import NODE_COMPONENTS, NodeStarter, ensure_node_artifacts, has_node
from .node import tear_down as tear_down_node
from .pki import Pki, create_pki
from .processes import ProcessRecord, free_port_pair, free_ports, is_ours, spawn, stop

Say = Callable[[str], None]
VAULT_KUBERNETES_AUTH_MOUNT = "kubernetes"

# Writes to the objects a secrets operator touches, at Metadata level (no bodies, so no secret values): tests
# count an operator's API writes per namespace from this log (and bench/peer.py those of External Secrets
# Operator, whose objects are in the list too). Also Secret list/watch requests made by
# ServiceAccounts (the chart's operator identity in tests/e2e/test_chart_rbac.py): their requestURI shows the
# labelSelector, which proves the operator never streams every Secret.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    verbs: ["list", "watch"]
    userGroups: ["system:serviceaccounts"]
    resources:
      - group: ""
        resources: ["secrets"]
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
    resources:
      - group: ""
        resources: ["secrets", "events", "configmaps"]
      - group: "vaultbundle.io"
        resources: ["vaultbundles", "vaultbundles/status"]
      - group: "external-secrets.io"
        resources: ["externalsecrets", "externalsecrets/status", "clustersecretstores", "clustersecretstores/status"]
      - group: "events.k8s.io"
        resources: ["events"]
  - level: None
"""


class TestBedError(RuntimeError):
    pass


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    ports: dict[str, int]
    running: bool
    healthy: bool
    detail: str


class TestBed:
    def __init__(
        self, layout: Layout | None = None, binaries: Binaries | None = None, say: Say = print, *, node: bool = False
    ) -> None:
        self.layout = layout or default_layout()
        self.binaries = binaries or Binaries(cache_dir())
        self.say = say
        self.node = node  # also run the optional kubelet node (e2e/testbed/node.py)
        self._state_lock = threading.Lock()

    # --- state ------------------------------------------------------------------------------------------
    def records(self) -> list[ProcessRecord]:
        try:
            data = json.loads(self.layout.state_file.read_text())
        except FileNotFoundError:
            return []
        return [ProcessRecord.from_json(item) for item in data["components"]]

    def _save(self, records: list[ProcessRecord]) -> None:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        tmp = self.layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"components": [r.to_json() for r in records]}, indent=2))
        tmp.replace(self.layout.state_file)

    def env(self) -> dict[str, str]:
        return read_env(self.layout.env_file)

    # --- status -----------------------------------------------------------------------------------------
    def status(self) -> list[ComponentStatus]:
        result = []
        for record in self.records():
            running = is_ours(record)
            healthy, detail = health.check(record.health) if running else (False, "process not running")
            result.append(ComponentStatus(record.name, record.pid, record.ports, running, healthy, detail))
        return result

    def restart(self, name: str, *, pause: float = 0.0, timeout: float = 120.0) -> float:
        """Stop one component, wait *pause* seconds, start it again with the same command line and ports, and wait
        until it is healthy (fault-injection tests: "kube-apiserver restarted mid-sync"). Returns the downtime."""
        with self._exclusive():
            records = self.records()
            record = next(r for r in records if r.name == name)
            stopped = time.monotonic()
            stop(record)
            time.sleep(pause)
            fresh = spawn(name, record.argv, self.layout.log_file(name), env=dict(os.environ), cwd=REPO_ROOT)
            fresh.ports, fresh.health = record.ports, record.health
            self._save([fresh if r.name == name else r for r in records])
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if health.check(fresh.health)[0]:
                    return time.monotonic() - stopped
                if not is_ours(fresh):
                    break
                time.sleep(0.2)
            raise TestBedError(f"{name} did not come back after a restart; see {self.layout.log_file(name)}")

    def is_up(self) -> bool:
        statuses = self.status()
        return bool(statuses) and all(s.healthy for s in statuses) and self.layout.env_file.exists()

    # --- up ---------------------------------------------------------------------------------------------
    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One ``up`` or ``down`` at a time per test bed directory (e.g. ``make testbed-up`` and a pytest run)."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with (self.layout.root / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def up(self) -> bool:
        """Start everything; returns False if it was already up and healthy (nothing done)."""
        with self._exclusive():
            if self.is_up() and (has_node(self.records()) or not self.node):
                self.say(f"test bed already up and healthy; env: {self.layout.env_file}")
                return False
            if self.records():
                self.say("test bed partly up or unhealthy: stopping what is left first")
                self._down()
            started = time.monotonic()
            self._reset_dirs()
            timings = ensure_artifacts(self.binaries, self.layout.logs, self.say)
            for name, seconds in timings.items():
                self.say(f"  {name}: {seconds:.0f}s")
            if self.node:
                ensure_node_artifacts(self.binaries, self.layout.logs, self.say)
            try:
                self._start_all()
            except BaseException:
                self._down()
                raise
            self.say(f"test bed up in {time.monotonic() - started:.1f}s; env: {self.layout.env_file}")
            return True

    def _reset_dirs(self) -> None:
        for path in (self.layout.data, self.layout.pki, self.layout.logs):
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.layout.env_file, self.layout.kubeconfig, self.layout.state_file):
            path.unlink(missing_ok=True)
        for path in (self.layout.data, self.layout.logs):
            path.mkdir(parents=True, exist_ok=True)

    def _start_all(self) -> None:
        pki = create_pki(self.layout.pki)
        vault_token = "testbed-" + secrets.token_hex(16)
        specs = self._plan(pki, vault_token)
        apiserver_url = f"https://127.0.0.1:{_spec(specs, 'kube-apiserver').main_port}"
        write_kubeconfig(self.layout.kubeconfig, server=apiserver_url, ca=pki.ca.cert, client=pki.admin)

        self._run_specs(specs)
        self._wait_for_default_service_account(apiserver_url, pki)
        # Imported here: the kubernetes and hvac clients take a while to import, and status/down need neither.
        from .vault_kubernetes_auth import configure_kubernetes_auth

        vault_addr = f"http://127.0.0.1:{_spec(specs, 'openbao').main_port}"
        try:
            configure_kubernetes_auth(
                vault_addr=vault_addr,
                vault_token=vault_token,
                kubeconfig=self.layout.kubeconfig,
                apiserver_url=apiserver_url,
                ca_file=pki.ca.cert,
                mount=VAULT_KUBERNETES_AUTH_MOUNT,
            )
        except Exception as exc:
            log = self.layout.log_file("openbao")
            raise TestBedError(
                f"configuring OpenBao's Kubernetes auth failed: {type(exc).__name__}: {exc}\n"
                f"last lines of {log}:\n{tail(log)}"
            ) from exc
        values = self._env_values(specs, pki, vault_token, apiserver_url)
        if self.node:
            starter = NodeStarter(self.layout, self.binaries, self._run_specs, self.say)
            values |= starter.start(apiserver_url, _spec(specs, "moto").main_port)
        write_env(self.layout.env_file, values)

    def _plan(self, pki: Pki, vault_token: str) -> list[ComponentSpec]:
        # OpenBao's dev server puts its cluster listener on its API port + 1: it needs two adjacent ports.
        bao = free_port_pair()
        others = [n for n in PORT_NAMES if n != "openbao"]
        flat = iter(free_ports(sum(len(PORT_NAMES[n]) for n in others), exclude={bao, bao + 1}))
        ports = {name: {port_name: next(flat) for port_name in PORT_NAMES[name]} for name in others}
        ports["openbao"] = {"http": bao, "cluster": bao + 1}
        self.layout.audit_policy.write_text(AUDIT_POLICY)
        return build_specs(self.layout, self.binaries, pki, ports, vault_token)

    def _run_specs(self, specs: list[ComponentSpec]) -> None:
        """Start every component as soon as the one it comes after is healthy; wait for all concurrently."""
        healthy = {s.name: threading.Event() for s in specs}
        failed = threading.Event()
        records = self.records()  # a second call (the node's components) adds to the first one's
        errors: list[str] = []

        def fail(message: str) -> None:
            with self._state_lock:
                errors.append(message)
            failed.set()

        def start_and_wait(spec: ComponentSpec) -> None:
            if spec.after:
                while not healthy[spec.after].wait(0.1):
                    if failed.is_set():
                        return
            record = spawn(spec.name, spec.argv, self.layout.log_file(spec.name), env=spec.env, cwd=spec.cwd)
            record.ports = dict(spec.ports)
            record.health = spec.probe
            with self._state_lock:
                records.append(record)
                self._save(records)
            started = time.monotonic()
            deadline = started + spec.startup_timeout
            detail = "not checked"
            while time.monotonic() < deadline and not failed.is_set():
                if not is_ours(record):
                    detail = "process exited"
                    break
                ok, detail = health.check(spec.probe)
                if ok:
                    self.say(
                        f"  {spec.name} healthy after {time.monotonic() - started:.1f}s "
                        f"(pid {record.pid}, port {spec.main_port})"
                    )
                    healthy[spec.name].set()
                    return
                time.sleep(0.2)
            if not failed.is_set():
                log = self.layout.log_file(spec.name)
                fail(f"{spec.name} did not become healthy ({detail}); last lines of {log}:\n{tail(log)}")

        def run(spec: ComponentSpec) -> None:
            try:
                start_and_wait(spec)
            except Exception as exc:  # noqa: BLE001 - reported below, and the others stop waiting
                fail(f"{spec.name}: {type(exc).__name__}: {exc}")

        with ThreadPoolExecutor(max_workers=len(specs)) as pool:
            for future in [pool.submit(run, spec) for spec in specs]:
                future.result()
        if errors:
            raise TestBedError("\n\n".join(errors))

    def _wait_for_default_service_account(self, apiserver_url: str, pki: Pki, timeout: float = 60) -> None:
        """kube-controller-manager creates ``default`` ServiceAccounts: proof that it works."""
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        url = f"{apiserver_url}/api/v1/namespaces/default/serviceaccounts/default"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, context=context, timeout=5):
                    return
            except urllib.error.HTTPError as err:
                if err.code != 404:
                    raise
            time.sleep(0.2)
        raise TestBedError(
            "kube-controller-manager did not create the default ServiceAccount in time; "
            f"see {self.layout.log_file('kube-controller-manager')}:\n"
            + tail(self.layout.log_file("kube-controller-manager"))
        )

    def _env_values(self, specs: list[ComponentSpec], pki: Pki, vault_token: str, apiserver_url: str) -> dict[str, str]:
        names = {s.name for s in specs}
        port = {s.name: s.main_port for s in specs}
        values = {
            "TESTBED_DIR": str(self.layout.root),
            "TESTBED_CA_FILE": str(pki.ca.cert),
            "KUBECONFIG": str(self.layout.kubeconfig),
            "KUBE_APISERVER_URL": apiserver_url,
            "KUBE_CA_FILE": str(pki.ca.cert),
            "KUBE_AUDIT_LOG": str(self.layout.audit_log),
            "KUBE_ADMIN_CERT_FILE": str(pki.admin.cert),
            "KUBE_ADMIN_KEY_FILE": str(pki.admin.key),
            "ETCD_ENDPOINT": f"http://127.0.0.1:{port['etcd']}",
            "KUBECTL": str(self.binaries.kubectl),
            "HELM": str(self.binaries.helm),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port['moto']}",
            "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": AWS_REGION,
            "AWS_REGION": AWS_REGION,
            "VAULT_ADDR": f"http://127.0.0.1:{port['openbao']}",
            "VAULT_TOKEN": vault_token,
            "VAULT_KUBERNETES_AUTH_MOUNT": VAULT_KUBERNETES_AUTH_MOUNT,
            "AZURE_KEYVAULT_URL": f"https://127.0.0.1:{port['azure-keyvault']}",
            "AZURE_KEYVAULT_CA_FILE": str(pki.ca.cert),
            "AZURE_KEYVAULT_API_VERSION": "7.6",
            "AZURE_AUTHORITY_HOST": f"https://127.0.0.1:{port['azure-keyvault']}",  # Entra's token endpoint
            "AZURE_KEYVAULT_TENANT_ID": "00000000-0000-0000-0000-000000000000",  # the vault's directory
        }
        if "gcp-secret-manager" in names:
            gcp = _spec(specs, "gcp-secret-manager").ports
            values["GCP_SECRET_MANAGER_ENDPOINT"] = f"127.0.0.1:{port['gcp-secret-manager']}"
            values["GCP_SECRET_MANAGER_TLS_ENDPOINT"] = f"127.0.0.1:{gcp['grpc-tls']}"
            values["GCP_STS_URL"] = f"https://127.0.0.1:{gcp['https']}/v1/token"
            values["GCP_IAM_CREDENTIALS_URL"] = f"https://127.0.0.1:{gcp['https']}"
        if "github-actions" in names:
            values["GITHUB_API_URL"] = f"http://127.0.0.1:{port['github-actions']}"
            values["GITHUB_TOKEN"] = GITHUB_TOKEN
        return values

    # --- down -------------------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop every recorded process that is still ours; returns ports still listening afterwards."""
        with self._exclusive():
            return self._down()

    def _down(self) -> list[str]:
        records = self.records()
        left_behind = []
        if has_node(records):  # its pods and processes first, in order, while the apiserver still answers
            left_behind = tear_down_node(self.layout, records, self.binaries.kubectl, self.say)
            records = [r for r in records if r.name not in NODE_COMPONENTS]
        with ThreadPoolExecutor(max_workers=max(1, len(records))) as pool:
            outcomes = list(pool.map(stop, records))
        for record, outcome in zip(records, outcomes, strict=True):
            self.say(f"  {record.name} (pid {record.pid}): {outcome}")
        still_listening = [
            f"{r.name}:{p}"
            for r in records
            for p in r.ports.values()
            if health.check(health.tcp_probe(p), timeout=0.5)[0]
        ]
        self.layout.env_file.unlink(missing_ok=True)
        self.layout.state_file.unlink(missing_ok=True)
        return still_listening + left_behind


def _spec(specs: list[ComponentSpec], name: str) -> ComponentSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(name)


def env_file_path() -> Path:
    return default_layout().env_file
