"""The egress policy is wired into every tenant connection: the config blob's S3 endpoint (source side) and every
store target's SDK calls (the kit's `in_thread` / `read_many`, scoped by `credentials_for`).

Each test runs a recording HTTP server on loopback and proves that, under the default policy, the reconcile
reports `PolicyDenied` and *no request arrives*; the same setup with `allow_local` does reach the server, so the
tests can fail."""

from __future__ import annotations

import asyncio
import http.server
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.kit.world import CONFIG, NAMESPACE, PASSPHRASE, World
from vaultbundle import targets
from vaultbundle.crypto import configblob
from vaultbundle.digest import Digester
from vaultbundle.egress import EgressDenied, EgressPolicy
from vaultbundle.errors import Reason
from vaultbundle.fanout import FanOut
from vaultbundle.fields import TargetSpec
from vaultbundle.reconcile import Reconciler
from vaultbundle.stores import Grant
from vaultbundle.targets import parse_target
from vaultbundle.targets.base import Owner, TargetContext
from vaultbundle.targets.credentials import credentials_for
from vaultbundle.targets.threads import in_thread, isolated, read_many
from vaultbundle.verify import open_bundle

LOCAL = EgressPolicy(allow_local=True)


class Recorder(http.server.ThreadingHTTPServer):
    """Counts every request it receives (any method) and answers 500 with an empty body."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        handler = type("H", (_Recording,), {})
        super().__init__(("127.0.0.1", 0), handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Recording(http.server.BaseHTTPRequestHandler):
    def _record(self) -> None:
        assert isinstance(self.server, Recorder)
        self.server.hits.append(f"{self.command} {self.path}")
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_HEAD = _record

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


# --- source side: the S3 endpoint of the config blob -----------------------------------------------------------


def _world_with_endpoint(endpoint: str, egress: EgressPolicy | None) -> World:
    world = World()
    # the real S3 client (boto3) against the endpoint the tenant's blob names
    world.reconciler = Reconciler(world.kube, world.pool, Digester(b"k" * 32), min_refresh=0, egress=egress)
    world.kube.put_secret(NAMESPACE, "cfg", {"config": configblob.encode(replace(CONFIG, endpoint=endpoint))})
    return world


@pytest.mark.parametrize("endpoint", ["loopback", "http://169.254.169.254", "http://[::ffff:169.254.169.254]:80"])
async def test_a_config_blob_pointing_at_a_denied_address_is_refused(recorder: Recorder, endpoint: str) -> None:
    world = _world_with_endpoint(recorder.url if endpoint == "loopback" else endpoint, None)  # the secure default
    outcome = await world.cycle()
    assert world.conditions()["Ready"] == ("False", str(Reason.POLICY_DENIED))
    assert "S3 endpoint of the config blob" in outcome.message and "egress policy" in outcome.message
    assert recorder.hits == []
    assert (NAMESPACE, "out") not in world.kube.secrets


async def test_with_allow_local_the_same_blob_reaches_the_server(recorder: Recorder) -> None:
    world = _world_with_endpoint(recorder.url, LOCAL)
    await world.cycle()
    assert world.conditions()["Ready"] == ("False", str(Reason.S3_UNREACHABLE))  # it answers 500
    assert recorder.hits, "with --egress-allow-local the loopback endpoint is used"


async def test_a_host_name_resolving_to_loopback_is_refused_before_any_connection(recorder: Recorder) -> None:
    world = _world_with_endpoint(recorder.url.replace("127.0.0.1", "localhost"), None)
    await world.cycle()
    assert world.conditions()["Ready"] == ("False", str(Reason.POLICY_DENIED))
    assert recorder.hits == []


# --- store side: the kit's thread helpers ------------------------------------------------------------------------


def _context(egress: EgressPolicy, grant: Grant | None = None) -> TargetContext:
    async def read_secret(name: str, key: str) -> str:
        return {"access-key-id": "AKIDTENANT", "secret-access-key": "tenant-secret"}[key]

    return TargetContext(None, Owner("ns", "web", "uid"), Digester(b"k" * 32), {}, read_secret, grant, egress)  # type: ignore[arg-type]


def _store_grant(kind: str, *, allow_adopt: bool) -> Grant:
    """What `stores.authorize` answers for a target with `storeRef` (the connection itself is not needed here)."""
    return Grant(kind=kind, store="shared", connection=None, scope=None, allow_adopt=allow_adopt)


async def test_in_thread_runs_sdk_calls_under_the_target_scope(recorder: Recorder) -> None:
    with isolated():
        credentials_for(_context(EgressPolicy()), "githubActions")
        with pytest.raises(EgressDenied, match="githubActions target"):
            await in_thread(_get, recorder.url)
        with pytest.raises(EgressDenied):  # read_many's own pool threads are scoped too
            await in_thread(read_many, lambda path: _get(recorder.url + path), ["/a", "/b"])
    assert recorder.hits == []
    assert await in_thread(_get, recorder.url) == 500  # outside a target's scope: the operator's own I/O
    assert len(recorder.hits) == 1


async def test_the_endpoint_is_checked_before_the_first_call() -> None:
    called: list[str] = []
    with isolated():
        credentials_for(_context(EgressPolicy()), "hashicorpVault", "http://169.254.169.254:8200")
        with pytest.raises(EgressDenied, match=r"169\.254\.169\.254"):
            await in_thread(called.append, "sdk call")
    assert called == []  # refused before the SDK ran: a gRPC client (GCP) is guarded this way


async def test_a_cluster_target_store_connection_is_not_restricted(recorder: Recorder) -> None:
    """A ClusterTargetStore's connection (the admin's endpoint and identity) is not tenant egress."""
    grant = _store_grant("awsSecretsManager", allow_adopt=False)
    with isolated():
        credentials_for(_context(EgressPolicy(), grant), "awsSecretsManager", recorder.url)
        assert await in_thread(_get, recorder.url) == 500
    assert len(recorder.hits) == 1


async def test_a_grant_without_a_store_keeps_the_tenant_policy(recorder: Recorder) -> None:
    """The target's own credentials and connection (a Grant with store None): the tenant egress policy holds."""
    grant = Grant(kind="awsSecretsManager", store=None, connection=None, scope=None)
    with isolated():
        credentials_for(_context(EgressPolicy(), grant), "awsSecretsManager", recorder.url)
        with pytest.raises(EgressDenied):
            await in_thread(_get, recorder.url)
    assert recorder.hits == []


@pytest.mark.parametrize(
    ("grant", "allowed"),
    [
        (None, False),  # no policy decision: never
        (Grant(kind="awsSecretsManager", store=None, connection=None, scope=None), False),  # the tenant's own
        (_store_grant("awsSecretsManager", allow_adopt=False), False),  # a store that forbids adopt
        (_store_grant("awsSecretsManager", allow_adopt=True), True),  # a store that allows it
    ],
)
def test_adopt_is_allowed_only_by_a_store_that_allows_it(grant: Grant | None, allowed: bool) -> None:
    with isolated():
        credentials = credentials_for(_context(EgressPolicy(), grant), "awsSecretsManager")
    assert credentials.adopt_allowed() is allowed


async def test_a_scope_ends_with_its_target(recorder: Recorder) -> None:
    with isolated():
        credentials_for(_context(EgressPolicy()), "githubActions")
    assert await in_thread(_get, recorder.url) == 500


# --- a whole store through the fan-out ---------------------------------------------------------------------------


def _aws_fan_out(endpoint: str, egress: EgressPolicy) -> tuple[FanOut, TargetSpec]:
    spec = parse_target(
        {
            "name": "aws",
            "awsSecretsManager": {
                "region": "us-east-1",
                "endpoint": endpoint,
                "credentialsSecretRef": {"name": "aws-writer"},
            },
        },
        "spec.targets[0]",
    )
    context = _context(egress)
    fan_out = FanOut(None, context.digester, context.owner, [], context.read_secret, False, egress)  # type: ignore[arg-type]
    return fan_out, spec


async def test_a_store_endpoint_on_loopback_is_policy_denied(recorder: Recorder) -> None:
    world = World()
    await asyncio.to_thread(world.push, b"API_KEY=canary-value\n")
    parsed = targets.parse_spec(world.spec, min_refresh=0, namespace=NAMESPACE)
    verified = await open_bundle(world.pool, world.objects, CONFIG, parsed, PASSPHRASE, None)
    for egress, refused in ((EgressPolicy(), True), (LOCAL, False)):
        fan_out, spec = _aws_fan_out(recorder.url, egress)
        (result,) = await fan_out.run([spec], verified.bundle)
        assert result.failed
        if refused:
            assert result.reason is Reason.POLICY_DENIED, result.message
            assert recorder.hits == []
        else:
            assert result.reason is not Reason.POLICY_DENIED
            assert recorder.hits, "with allow_local the store's endpoint is reached"


# --- the operator's settings -------------------------------------------------------------------------------------


def test_settings_build_the_policy_with_the_pods_own_addresses() -> None:
    from vaultbundle.settings import Settings

    policy = Settings().egress_policy({"POD_IP": "10.244.1.7", "POD_IPS": "10.244.1.7,fd00:10:244::7"})
    assert policy.refusal("10.244.1.7") is not None and policy.refusal("fd00:10:244::7") is not None
    assert policy.refusal("10.244.1.8") is None  # another pod: allowed unless the admin denies the range
    assert policy.refusal("127.0.0.1") is not None and policy.refusal("169.254.169.254") is not None
    admin = Settings(egress_deny_cidrs=("10.244.0.0/16",), egress_allow_cidrs=("10.244.9.0/24",)).egress_policy({})
    assert admin.refusal("10.244.1.8") is not None and admin.refusal("10.244.9.1") is None
    assert Settings(egress_allow_local=True).egress_policy({"POD_IP": "10.244.1.7"}).refusal("127.0.0.1") is None
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/40"):
        Settings(egress_deny_cidrs=("10.0.0.0/40",)).egress_policy({})


def test_run_refuses_a_malformed_cidr_before_starting() -> None:
    from click.testing import CliRunner

    from vaultbundle.cli import cli

    result = CliRunner().invoke(cli, ["run", "--all-namespaces", "--egress-deny-cidr", "10.0.0.0/40"])
    assert result.exit_code == 2 and "--egress-deny-cidr" in result.output and "10.0.0.0/40" in result.output
