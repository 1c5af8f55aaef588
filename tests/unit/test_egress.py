"""The egress policy: which addresses tenant URLs may reach, checked before use and at connect time."""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from vaultbundle import egress
from vaultbundle.egress import EgressDenied, EgressPolicy, tenant_egress
from vaultbundle.errors import Reason

DEFAULT = EgressPolicy()


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("169.254.169.254", True),  # AWS/GCP/Azure instance metadata
        ("169.254.170.2", True),  # ECS task metadata
        ("fd00:ec2::254", True),  # AWS IMDS over IPv6
        ("fe80::1%eth0", True),
        ("::ffff:169.254.169.254", True),  # IPv4-mapped IPv6 must not slip through
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("0.0.0.0", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),  # in-cluster services are allowed unless the admin denies the range
        ("192.168.1.10", False),
        ("203.0.113.7", False),
        ("2001:db8::1", False),
        ("not-an-ip", True),
    ],
)
def test_default_policy(address: str, refused: bool) -> None:
    assert (DEFAULT.refusal(address) is not None) is refused


def test_admin_knobs() -> None:
    policy = EgressPolicy.build(
        allow_local=True, own_addresses=["10.1.2.3"], deny_cidrs=["10.0.0.0/8"], allow_cidrs=["10.9.0.0/16"]
    )
    assert policy.refusal("127.0.0.1") is None  # allow_local
    assert policy.refusal("10.1.2.3") is not None  # own address is still in a denied range
    assert policy.refusal("10.5.0.1") is not None  # deny_cidrs
    assert policy.refusal("10.9.0.1") is None  # allow_cidrs re-opens part of it
    assert policy.refusal("169.254.169.254") is not None  # but never the metadata service
    assert EgressPolicy.build(allow_cidrs=["169.254.0.0/16"]).refusal("169.254.169.254") is not None
    assert EgressPolicy.build(own_addresses=["10.1.2.3"]).refusal("10.1.2.3") is not None
    assert EgressPolicy.build(own_addresses=["10.1.2.3"], allow_local=True).refusal("10.1.2.3") is None
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        EgressPolicy.build(deny_cidrs=["10.0.0.0/33"])


def test_check_url_resolves_the_host() -> None:
    with pytest.raises(EgressDenied, match="localhost") as refused:
        DEFAULT.check_url("https://localhost:8200/v1", what="hashicorpVault.address")
    assert refused.value.reason is Reason.POLICY_DENIED
    assert "hashicorpVault.address" in str(refused.value)
    with pytest.raises(EgressDenied):
        DEFAULT.check_url("http://169.254.169.254/latest/meta-data/", what="S3 endpoint")
    with pytest.raises(EgressDenied):
        DEFAULT.check_url("[::1]:9000", what="S3 endpoint")  # host:port without a scheme
    with pytest.raises(EgressDenied, match="no host"):
        DEFAULT.check_url("https:///path", what="S3 endpoint")
    DEFAULT.check_url("https://203.0.113.7/", what="S3 endpoint")
    EgressPolicy(allow_local=True).check_url("http://127.0.0.1:1/", what="S3 endpoint")


class _Handler(http.server.BaseHTTPRequestHandler):
    redirect_to = ""

    def do_GET(self) -> None:
        if self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status)


def test_connect_time_refusal_only_inside_tenant_egress(server: http.server.ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    assert _get(url) == 200  # the operator's own connections are not tenant egress
    with pytest.raises(EgressDenied, match="loopback") as refused, tenant_egress(DEFAULT, what="githubActions.apiURL"):
        _get(url)  # urllib wraps the refusal in URLError; leaving the block names it
    assert "githubActions.apiURL" in str(refused.value)
    with tenant_egress(EgressPolicy(allow_local=True), what="test"):
        assert _get(url) == 200
    with tenant_egress(None, what="admin store"):  # a ClusterTargetStore's connection: unrestricted
        assert _get(url) == 200
    assert _get(url) == 200  # and the thread is unrestricted again afterwards


def test_a_redirect_to_a_denied_address_is_refused(server: http.server.ThreadingHTTPServer) -> None:
    """The first hop (127.0.0.2, re-opened by the admin) is allowed; the redirect to 127.0.0.1 is not."""
    port = server.server_address[1]
    target = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _Handler)
    handler = type("Redirecting", (_Handler,), {"redirect_to": f"http://127.0.0.1:{port}/"})
    target.RequestHandlerClass = handler
    threading.Thread(target=target.serve_forever, daemon=True).start()
    try:
        policy = EgressPolicy.build(allow_cidrs=["127.0.0.2/32"])
        with pytest.raises(EgressDenied), tenant_egress(policy, what="hashicorpVault.address"):
            _get(f"http://127.0.0.2:{target.server_address[1]}/")
    finally:
        target.shutdown()
        target.server_close()


def test_other_threads_are_not_affected(server: http.server.ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    inside, outside = threading.Event(), threading.Event()
    results: list[int] = []

    def operator_own_io() -> None:
        inside.wait(5)
        results.append(_get(url))
        outside.set()

    thread = threading.Thread(target=operator_own_io)
    thread.start()
    with pytest.raises(EgressDenied), tenant_egress(DEFAULT, what="test"):
        inside.set()
        outside.wait(5)
        _get(url)
    thread.join(5)
    assert results == [200]


def test_an_sdk_sees_the_refusal_as_policy_not_as_unreachable(server: http.server.ThreadingHTTPServer) -> None:
    """botocore retries connection errors and wraps them; the block still reports PolicyDenied."""
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="not-a-secret",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=2),
    )
    with pytest.raises(EgressDenied) as refused, tenant_egress(DEFAULT, what="S3 endpoint of the config blob"):
        s3.head_object(Bucket="b", Key="k")
    assert refused.value.reason is Reason.POLICY_DENIED


def _resolving(monkeypatch: pytest.MonkeyPatch, answers: dict[str, str]) -> list[str]:
    """`socket.getaddrinfo` as seen by the policy answers from *answers* (host -> IP); returns the lookups made."""
    lookups: list[str] = []

    def getaddrinfo(host: str, port: int, *_: object, **__: object) -> list[tuple[object, ...]]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(egress.socket, "getaddrinfo", getaddrinfo)
    return lookups


def test_an_allowed_host_is_not_resolved_again_until_its_answer_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(egress, "_now", lambda: clock[0])
    answers = {"s3.example": "203.0.113.7"}
    lookups = _resolving(monkeypatch, answers)
    policy = EgressPolicy()
    for _ in range(3):
        policy.check_url("https://s3.example/bucket", what="S3 endpoint")
    assert lookups == ["s3.example"]
    EgressPolicy().check_url("https://s3.example/", what="S3 endpoint")  # another policy: its own lookups
    policy.check_url("https://s3.example:8443/", what="S3 endpoint")  # another port: another entry
    assert len(lookups) == 3
    answers["s3.example"] = "169.254.169.254"  # the name now points at the metadata service
    clock[0] += egress.ALLOWED_TTL_S + 0.1
    for _ in range(2):  # a refusal is never remembered: each check looks again, and refuses
        with pytest.raises(EgressDenied, match="metadata"):
            policy.check_url("https://s3.example/bucket", what="S3 endpoint")
    assert len(lookups) == 5


def test_the_remembered_hosts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(egress, "ALLOWED_MAX", 3)
    answers = {f"h{i}.example": "203.0.113.7" for i in range(5)}
    lookups = _resolving(monkeypatch, answers)
    policy = EgressPolicy()
    for host in answers:
        policy.check_url(f"https://{host}/", what="S3 endpoint")
    assert len(policy._allowed) <= 3
    policy.check_url("https://h0.example/", what="S3 endpoint")  # forgotten with the rest: looked up again
    assert lookups.count("h0.example") == 2


def test_a_remembered_host_still_meets_the_connect_time_hook(
    monkeypatch: pytest.MonkeyPatch, server: http.server.ThreadingHTTPServer
) -> None:
    """The cache only skips the early lookup: once the name points at a denied address (DNS rebinding), the
    connection is refused at connect time although the check passed from memory."""
    answers = {"s3.example": "203.0.113.7"}
    lookups = _resolving(monkeypatch, answers)
    policy = EgressPolicy()
    policy.check_url("http://s3.example/", what="S3 endpoint")
    answers["s3.example"] = "127.0.0.1"
    port = server.server_address[1]
    with pytest.raises(EgressDenied, match="loopback"), tenant_egress(policy, what="S3 endpoint"):
        policy.check_url("http://s3.example/", what="S3 endpoint")  # from memory: no lookup
        urllib.request.urlopen(f"http://s3.example:{port}/", timeout=5)
    assert lookups == ["s3.example", "s3.example"]  # the check's, then urllib's own for the connection
