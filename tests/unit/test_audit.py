"""The audit trail's rows and its append protocol's failure paths (412 retries, 403 skipped, never raises).

The happy paths and a real lost race run against a real S3 server in tests/integration/test_cli_vsync_fidelity.py;
here a stub client answers with the S3 errors that are hard to provoke on a test server.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from vaultbundle import audit
from vaultbundle.crypto.configblob import BootstrapConfig
from vaultbundle.remote import S3Objects

CONFIG = BootstrapConfig(
    endpoint="http://127.0.0.1:9",
    region="us-east-1",
    bucket="b",
    access_key_id="a",
    secret_access_key="s",
    prefix="r/prod/",
    env="prod",
    salt="0123456789abcdef",
    iterations=1,
)
ROW = audit.Row("2026-01-02T03:04:05.006Z", "push", "20260102-030405", "h", "", "u", "", "vaultbundle/0", "", "")


def _error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "op")


class StubClient:
    """Answers GET with an existing trail and PUT with the given errors, in order; records every call."""

    def __init__(self, put_errors: list[Exception], get_error: Exception | None = None) -> None:
        self.put_errors, self.get_error = put_errors, get_error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("get", kwargs))
        if self.get_error:
            raise self.get_error
        body = (audit.HEADER + "\n").encode()
        return {"Body": io.BytesIO(body), "ContentLength": len(body), "ETag": '"e1"'}

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("put", kwargs))
        if self.put_errors:
            raise self.put_errors.pop(0)
        return {"ETag": '"e2"'}


def _append(client: StubClient) -> audit.Outcome:
    return audit.append(S3Objects(CONFIG, client=client), "r/prod/audit.csv", ROW)


def test_row_format_and_minimal_quoting() -> None:
    row = audit.Row("t", "pull", "v", 'a,"b"', "", "line\nbreak", "", "x", "", '{"k":1}')
    assert row.render() == 't,pull,v,"a,""b""",,"line\nbreak",,x,,"{""k"":1}"\n'
    assert audit.csv_field("plain value") == "plain value"
    assert audit.csv_field("cr\r") == '"cr\r"'


def test_meta_is_compact_json_capped_at_2048_bytes() -> None:
    assert audit.encode_meta(None) == ""
    assert audit.encode_meta({"event": "push", "gen": 1}) == '{"event":"push","gen":1}'
    assert audit.encode_meta({"x": "é" * 1100}) == '{"_truncated":true}'


def test_iso_timestamp_like_javascript() -> None:
    assert audit.iso_now(datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC)) == "2026-01-02T03:04:05.006Z"


def test_conditional_put_carries_the_etag_and_keeps_the_old_body() -> None:
    client = StubClient([])
    assert _append(client) is audit.Outcome.APPENDED
    put = client.calls[-1][1]
    assert put["IfMatch"] == '"e1"'
    assert put["Body"] == (audit.HEADER + "\n").encode() + ROW.render().encode()


def test_a_new_trail_is_created_only_if_still_absent() -> None:
    client = StubClient([], get_error=_error(404, "NoSuchKey"))
    assert _append(client) is audit.Outcome.APPENDED
    put = client.calls[-1][1]
    assert put["IfNoneMatch"] == "*" and "IfMatch" not in put
    assert put["Body"].decode() == audit.HEADER + "\n" + ROW.render()


def test_lost_races_are_retried_three_times_then_given_up() -> None:
    client = StubClient([_error(412, "PreconditionFailed")] * 3)
    assert _append(client) is audit.Outcome.FAILED
    assert [name for name, _ in client.calls] == ["get", "put"] * 3


def test_one_lost_race_then_success() -> None:
    client = StubClient([_error(412, "PreconditionFailed")])
    assert _append(client) is audit.Outcome.APPENDED
    assert [name for name, _ in client.calls] == ["get", "put", "get", "put"]


@pytest.mark.parametrize("where", ["get", "put"])
def test_403_on_read_or_write_is_skipped(where: str) -> None:
    denied = _error(403, "AccessDenied")
    client = StubClient([denied] if where == "put" else [], get_error=denied if where == "get" else None)
    assert _append(client) is audit.Outcome.SKIPPED
    assert len(client.calls) == (1 if where == "get" else 2)


def test_an_unreachable_s3_never_raises() -> None:
    client = StubClient([], get_error=EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert _append(client) is audit.Outcome.FAILED
