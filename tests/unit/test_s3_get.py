"""The lean S3 GET (`s3get.SignedGet`, what `S3Objects.get` uses): the same requests and the same outcomes as
`client.get_object`, for every answer an S3 endpoint can give.

A local HTTP server plays the endpoint (127.0.0.1 only); each test scripts its answers and records the
requests. Where it matters the full boto3 client is asked the same thing and must agree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.kit import CONFIG
from tests.kit.local_http import serving
from vaultbundle.errors import S3UnreachableError
from vaultbundle.remote import USER_AGENT, AccessDenied, ObjectMissing, S3Objects, make_client
from vaultbundle.s3get import MAX_ERROR_BYTES

Answer = tuple[int, dict[str, str], bytes]


def _xml_error(code: str) -> bytes:
    return f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>m</Message></Error>".encode()


@dataclasses.dataclass
class Endpoint:
    answers: list[Answer]  # one per request, the last one repeated
    seen: list[tuple[str, dict[str, str]]] = dataclasses.field(default_factory=list)
    url: str = ""

    def objects(self, timeout: float = 5.0) -> S3Objects:
        return S3Objects(dataclasses.replace(CONFIG, endpoint=self.url), timeout=timeout)

    def client_objects(self) -> S3Objects:
        """The same bucket through the full boto3 client (the reference behaviour)."""
        config = dataclasses.replace(CONFIG, endpoint=self.url)
        return S3Objects(config, client=make_client(config))


@pytest.fixture
def endpoint() -> Iterator[Callable[..., Endpoint]]:
    servers = contextlib.ExitStack()

    def start(*answers: Answer) -> Endpoint:
        state = Endpoint(list(answers))

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                state.seen.append((self.path, dict(self.headers.items())))
                status, headers, body = state.answers[min(len(state.seen), len(state.answers)) - 1]
                self.send_response(status)
                length = {} if status == 304 else {"Content-Length": str(len(body))}  # S3 sends none with a 304
                for name, value in {**length, **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:  # the client stopped reading (a cut error body): that is what is tested
                    self.close_connection = True

            def log_message(self, *_: object) -> None:
                pass

        state.url = servers.enter_context(serving(Handler))
        return state

    with servers:
        yield start


OK: Answer = (200, {"ETag": '"e1"'}, b"20260101-000000")


def test_a_get_is_path_style_signed_and_names_us(endpoint: Callable[..., Endpoint]) -> None:
    bed = endpoint(OK)
    stored = bed.objects().get("p/a b+c~/latest")
    assert stored is not None and stored.body == b"20260101-000000" and stored.etag == '"e1"'
    path, headers = bed.seen[0]
    assert path == f"/{CONFIG.bucket}/p/a%20b%2Bc~/latest"  # path-style, the key quoted as botocore quotes it
    assert headers["User-Agent"] == USER_AGENT
    assert "If-None-Match" not in headers


def test_the_signature_is_sigv4_over_what_was_sent(endpoint: Callable[..., Endpoint]) -> None:
    """Re-sign the recorded request with the same key and time: the server would compute the same signature."""
    bed = endpoint(OK)
    bed.objects().get("p/latest")
    path, headers = bed.seen[0]
    assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={CONFIG.access_key_id}/")
    assert f"/{CONFIG.region}/s3/aws4_request" in headers["Authorization"]
    again = AWSRequest(method="GET", url=bed.url + path, headers={"User-Agent": headers["User-Agent"]})
    signer = S3SigV4Auth(Credentials(CONFIG.access_key_id, CONFIG.secret_access_key), "s3", CONFIG.region)
    signer._timestamp = lambda: headers["X-Amz-Date"]  # type: ignore[method-assign]  # the request's own time
    signer.add_auth(again)
    assert again.headers["Authorization"] == headers["Authorization"]
    wrong = S3SigV4Auth(Credentials(CONFIG.access_key_id, "not-the-key"), "s3", CONFIG.region)
    wrong._timestamp = lambda: headers["X-Amz-Date"]  # type: ignore[method-assign]
    other = AWSRequest(method="GET", url=bed.url + path, headers={"User-Agent": headers["User-Agent"]})
    wrong.add_auth(other)
    assert other.headers["Authorization"] != headers["Authorization"]  # the check above can fail


def test_not_modified_is_none_and_sends_the_etag(endpoint: Callable[..., Endpoint]) -> None:
    bed = endpoint((304, {"ETag": '"e1"'}, b""))
    assert bed.objects().get("p/latest", if_none_match='"e1"') is None
    assert bed.seen[0][1]["If-None-Match"] == '"e1"'


@pytest.mark.parametrize(
    ("answer", "raised", "match"),
    [
        ((404, {}, _xml_error("NoSuchKey")), ObjectMissing, "p/latest"),
        ((404, {}, b""), ObjectMissing, "p/latest"),
        ((404, {}, _xml_error("NoSuchBucket")), S3UnreachableError, "does not exist"),
        ((403, {}, _xml_error("AccessDenied")), AccessDenied, "AccessDenied"),
        ((403, {}, b""), AccessDenied, "HTTP 403"),
        ((400, {}, _xml_error("sk_live_not_to_be_quoted")), S3UnreachableError, "HTTP 400"),
        ((500, {}, _xml_error("InternalError")), S3UnreachableError, "InternalError"),
        ((503, {}, _xml_error("SlowDown")), S3UnreachableError, "SlowDown"),
    ],
)
def test_errors_map_as_the_full_client_maps_them(
    endpoint: Callable[..., Endpoint], answer: Answer, raised: type[Exception], match: str
) -> None:
    outcomes = []
    for objects in (endpoint(answer).objects(), endpoint(answer).client_objects()):
        with pytest.raises(raised, match=match) as caught:
            objects.get("p/latest")
        outcomes.append((type(caught.value), str(caught.value)))
        assert "sk_live" not in str(caught.value)
    assert outcomes[0] == outcomes[1]


def test_a_5xx_is_retried_and_a_later_success_returned(endpoint: Callable[..., Endpoint]) -> None:
    bed = endpoint((503, {}, _xml_error("SlowDown")), (500, {}, b""), OK)
    stored = bed.objects().get("p/latest")
    assert stored is not None and stored.body == OK[2]
    assert len(bed.seen) == 3


def test_retries_stop_after_three_attempts(endpoint: Callable[..., Endpoint]) -> None:
    bed = endpoint((500, {}, _xml_error("InternalError")))
    with pytest.raises(S3UnreachableError, match="InternalError"):
        bed.objects().get("p/latest")
    assert len(bed.seen) == 3


def test_a_client_error_is_not_retried(endpoint: Callable[..., Endpoint]) -> None:
    bed = endpoint((403, {}, _xml_error("AccessDenied")))
    with pytest.raises(AccessDenied):
        bed.objects().get("p/latest")
    assert len(bed.seen) == 1


def test_no_retry_starts_past_the_deadline(endpoint: Callable[..., Endpoint]) -> None:
    """A throttled answer asks for a long wait (x-amz-retry-after, 4 s): with 1 s left the GET fails at once."""
    bed = endpoint((503, {"x-amz-retry-after": "4000"}, _xml_error("SlowDown")), OK)
    objects = bed.objects(timeout=1.0)
    started = time.monotonic()
    with pytest.raises(S3UnreachableError, match="SlowDown"):
        objects.get("p/latest")
    assert time.monotonic() - started < 1.0 and len(bed.seen) == 1


def test_a_huge_error_body_is_not_read_or_quoted(endpoint: Callable[..., Endpoint]) -> None:
    body = _xml_error("AccessDenied") + b" " * MAX_ERROR_BYTES
    bed = endpoint((403, {}, body))
    with pytest.raises(AccessDenied, match="HTTP 403"):  # the code is in the body, which was cut: status only
        bed.objects().get("p/latest")


def test_connections_are_reused(endpoint: Callable[..., Endpoint]) -> None:
    bed = endpoint(OK, (404, {}, _xml_error("NoSuchKey")), OK)
    objects = bed.objects()
    assert objects.get("p/one") is not None
    with pytest.raises(ObjectMissing):
        objects.get("p/two")
    assert objects.get("p/three") is not None
    assert objects._getter is not None
    pools: Any = objects._getter._http._manager.pools  # one pool, one connection, kept alive across answers
    assert len(pools.keys()) == 1
    pool = pools[next(iter(pools.keys()))]
    assert pool.num_connections == 1


def test_an_unreachable_endpoint_is_s3_unreachable(endpoint: Callable[..., Endpoint]) -> None:
    bed = endpoint(OK)
    config = dataclasses.replace(CONFIG, endpoint="http://127.0.0.1:1")  # nothing listens on port 1
    del bed
    with pytest.raises(S3UnreachableError, match="EndpointConnectionError"):
        S3Objects(config, timeout=2.0).get("p/latest")


def test_a_bucket_in_another_region_is_found_as_the_full_client_finds_it(endpoint: Callable[..., Endpoint]) -> None:
    """S3 refuses a signature for the wrong region and names the right one; botocore's region redirector (in the
    full client, to which the lean path hands that GET) re-signs for it."""
    refusal = (
        b"<?xml version='1.0'?><Error><Code>AuthorizationHeaderMalformed</Code><Message>m</Message>"
        b"<Region>eu-west-1</Region></Error>"
    )
    wrong = (400, {"x-amz-bucket-region": "eu-west-1"}, refusal)
    bed = endpoint(wrong, wrong, OK)  # the lean GET, the client's first attempt, the client's redirected one
    stored = bed.objects().get("p/latest")
    assert stored is not None and stored.body == OK[2] and stored.etag == '"e1"'
    regions = [headers["Authorization"].split("/")[2] for _, headers in bed.seen]
    assert regions == [CONFIG.region, CONFIG.region, "eu-west-1"]


def test_a_not_modified_answer_keeps_the_connection(endpoint: Callable[..., Endpoint]) -> None:
    """The idle refresh is a conditional GET answered 304: it must not cost a new connection (a TLS handshake)."""
    bed = endpoint((304, {"ETag": '"e1"'}, b""), (304, {"ETag": '"e1"'}, b""), OK)
    objects = bed.objects()
    assert objects.get("p/latest", if_none_match='"e1"') is None
    assert objects.get("p/latest", if_none_match='"e1"') is None
    assert objects.get("p/latest") is not None
    assert objects._getter is not None
    pools: Any = objects._getter._http._manager.pools
    assert pools[next(iter(pools.keys()))].num_connections == 1
