"""Tenant URLs never turn the operator into a proxy (issue #13 item 2; security review H4, L6).

* the Vault target follows no redirect (the review's tenant "Vault" answered 302 to an internal service and its
  JSON landed in status), and no field of a Vault server's answer is quoted in a message;
* GitHub's plain-http API URL and GCP's plaintext gRPC, both loopback-only test conveniences, need the operator's
  `--egress-allow-local`.

Local recording servers stand in for the tenant's server and the internal service."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from tests.kit.policy import with_grant
from vaultbundle.digest import Digester
from vaultbundle.egress import EgressPolicy
from vaultbundle.errors import Reason, TargetError
from vaultbundle.targets import KINDS
from vaultbundle.targets.base import Owner, TargetContext
from vaultbundle.targets.threads import isolated

LOCAL = EgressPolicy(allow_local=True)
INTERNAL_SECRET = "admin-api-key=sk_live_INTERNAL_ONLY"


class Server(http.server.ThreadingHTTPServer):
    """Answers GETs from `routes` (path -> (status, headers, JSON body)) and records every request."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], Any]]) -> None:
        self.routes, self.hits = routes, []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Server  # type: ignore[assignment]
    seen_tokens: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        self.seen_tokens.append(self.headers.get("X-Vault-Token", ""))
        status, headers, body = self.server.routes.get(self.path.split("?")[0], (404, {}, {"errors": []}))
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_GET

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def serve(servers: list[Server], routes: dict[str, tuple[int, dict[str, str], Any]]) -> Server:
    server = Server(routes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
    return server


def context(egress: EgressPolicy) -> TargetContext:
    async def read_secret(name: str, key: str) -> str:
        return "tenant-token"

    return TargetContext(None, Owner("ns", "web", "uid"), Digester(b"k" * 32), {}, read_secret, egress=egress)  # type: ignore[arg-type]


async def connect_and_plan(kind: str, raw: dict[str, Any], egress: EgressPolicy = LOCAL) -> Any:
    store = KINDS[kind]
    with isolated():
        target = await store.connect(
            store.parse(raw, f"spec.targets[0].{kind}"), with_grant(context(egress), kind, raw)
        )
        return await target.plan({"A": b"1"})


async def test_vault_follows_no_redirect(servers: list[Server]) -> None:
    internal = serve(servers, {"/v1/auth/token/lookup-self": (200, {}, {"data": {"path": INTERNAL_SECRET}})})
    tenant = serve(
        servers, {"/v1/auth/token/lookup-self": (302, {"Location": f"{internal.url}/v1/auth/token/lookup-self"}, {})}
    )
    raw = {"address": tenant.url, "path": "apps/web", "auth": {"tokenSecretRef": {"name": "vault-token"}}}
    with pytest.raises(TargetError) as refused:
        await connect_and_plan("hashicorpVault", raw)
    assert refused.value.reason is Reason.UNAVAILABLE and "redirect" in str(refused.value)
    assert tenant.hits and internal.hits == []  # the redirect target never saw the request (nor the token)


async def test_no_field_of_a_vault_answer_reaches_a_message(servers: list[Server]) -> None:
    """The review measured `data.path` of an internal response copied into status.targets[].message."""
    mounts = {"data": {"path": INTERNAL_SECRET + "/", "type": INTERNAL_SECRET, "options": {"version": INTERNAL_SECRET}}}
    vault = serve(
        servers,
        {
            "/v1/auth/token/lookup-self": (200, {}, {"data": {}}),
            "/v1/sys/internal/ui/mounts/secret": (200, {}, mounts),
        },
    )
    raw = {"address": vault.url, "path": "apps/web", "auth": {"tokenSecretRef": {"name": "vault-token"}}}
    with pytest.raises(TargetError) as refused:
        await connect_and_plan("hashicorpVault", raw)
    assert refused.value.reason is Reason.NOT_FOUND
    assert "sk_live" not in str(refused.value) and "admin-api-key" not in str(refused.value)
    mounts["data"]["path"] = "secret/"  # the right mount, of a type the server names
    with pytest.raises(TargetError) as mismatch:
        await connect_and_plan("hashicorpVault", raw)
    assert mismatch.value.reason is Reason.KV_VERSION_MISMATCH and "sk_live" not in str(mismatch.value)


async def test_github_plain_http_needs_allow_local(servers: list[Server]) -> None:
    github = serve(servers, {})
    raw = {"repository": "acme/web", "apiURL": github.url, "auth": {"tokenSecretRef": {"name": "gh"}}}
    with pytest.raises(TargetError) as refused:
        await connect_and_plan("githubActions", raw, EgressPolicy.build(allow_cidrs=["127.0.0.0/8"]))
    assert refused.value.reason is Reason.POLICY_DENIED and "--egress-allow-local" in str(refused.value)
    assert github.hits == []
    with pytest.raises(TargetError):  # allowed: it reaches the (empty) server, which answers 404
        await connect_and_plan("githubActions", raw)
    assert github.hits


async def test_gcp_insecure_needs_allow_local() -> None:
    raw = {"project": "acme-test", "endpoint": "127.0.0.1:1", "insecure": True}
    with pytest.raises(TargetError) as refused:
        await connect_and_plan("gcpSecretManager", raw, EgressPolicy.build(allow_cidrs=["127.0.0.0/8"]))
    assert refused.value.reason is Reason.POLICY_DENIED and "--egress-allow-local" in str(refused.value)
    store = KINDS["gcpSecretManager"]
    with isolated():  # with it, the client is built (nothing listens there: the plan would fail as Unavailable)
        await store.connect(store.parse(raw, "spec.targets[0].gcpSecretManager"), context(LOCAL))


def _client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_an_s3_servers_own_error_code_is_not_quoted() -> None:
    """The review measured the <Code> of a tenant endpoint's answer reflected verbatim into status (remote.py)."""
    from vaultbundle.crypto.configblob import BootstrapConfig
    from vaultbundle.errors import S3UnreachableError
    from vaultbundle.remote import S3Objects

    class Stub:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def get_object(self, **_: Any) -> Any:
            raise self.error

    config = BootstrapConfig("http://s3.invalid", "r", "b", "a", "s", "p/", "prod", "0123456789abcdef", 1000)
    with pytest.raises(S3UnreachableError) as hostile:
        S3Objects(config, client=Stub(_client_error(INTERNAL_SECRET, 500))).get("p/latest")
    assert "sk_live" not in str(hostile.value) and "HTTP 500" in str(hostile.value)
    with pytest.raises(S3UnreachableError, match="SlowDown"):  # a known S3 code is still named
        S3Objects(config, client=Stub(_client_error("SlowDown", 503))).get("p/latest")


def test_an_aws_endpoints_own_error_code_is_not_quoted() -> None:
    from vaultbundle.targets.aws_secrets_manager import _target_error

    error = _target_error(_client_error(INTERNAL_SECRET, 400), "DescribeSecret", "db")
    assert "sk_live" not in str(error) and "HTTP 400" in str(error)
    assert "AccessDeniedException" in str(_target_error(_client_error("AccessDeniedException", 400), "x", None))
