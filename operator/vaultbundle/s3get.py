"""A lean S3 GetObject: botocore's signer, HTTP session, retry policy and error parser, without its call pipeline.

Every bundle sync GETs three small objects (pointer, envelope, generation). Through `client.get_object` each
cost ~2 ms of CPU, of which the request itself (SigV4 signing and urllib3) is about a quarter; the rest is
botocore's per-call pipeline: a dozen event hooks, endpoint ruleset resolution, parameter validation and
serialization, and parsing ~70 modelled response headers that nothing here reads (bench/s3_get_cpu.py
measures both paths). `SignedGet` sends the same request with botocore's own parts, taken from the client's
public `meta` and from botocore's modules:

* the URL: the client's resolved endpoint (`meta.endpoint_url`) + `/bucket/key`, path-style as the client;
* SigV4: `S3SigV4Auth` with the config's static credentials and the client's region (`meta.region_name`);
* HTTP: a `URLLib3Session` configured like the client's (CA bundle: the argument, else `AWS_CA_BUNDLE` or
  the AWS config file, else `REQUESTS_CA_BUNDLE`; proxies from the environment; the same timeouts and pool);
* retries: botocore's standard policy (3 attempts; transient errors, 5xx, throttling; jittered backoff and
  the retry quota), except that no retry starts past the caller's deadline;
* errors: an answer ≥ 300 is parsed by botocore's rest-xml parser (its body read at most `MAX_ERROR_BYTES`,
  within the deadline) and raised as the `ClientError` the client would raise, so `S3Objects` maps both alike;
* a bucket in another region than configured (the answers botocore's S3 region redirector acts on): that GET
  is handed to the full client, which finds the bucket's region and re-sends, as before.

Only GET goes this way; PUT and LIST (the audit trail, `vsync`) keep the full client.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import quote

import botocore.session
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.httpsession import URLLib3Session
from botocore.parsers import create_parser
from botocore.response import StreamingBody
from botocore.retries import quota, standard
from botocore.utils import get_environ_proxies
from urllib3.exceptions import HTTPError as Urllib3Error

READ_ERRORS = (BotoCoreError, OSError, Urllib3Error)
MAX_ERROR_BYTES = 64 * 1024  # an error answer's XML; a hostile endpoint's longer body is cut (and not parsed)


class SignedGet:
    """GetObject of one client's endpoint, thread-safe like the client. Call it as `client.get_object` is called
    (Bucket, Key, IfNoneMatch), plus *deadline* (`time.monotonic()` value): the answer has the same shape
    (`Body` a `StreamingBody`, `ContentLength`, `ETag`) and errors raise the same exceptions."""

    def __init__(
        self,
        client: Any,
        access_key_id: str,
        secret_access_key: str,
        *,
        user_agent: str,
        ca_bundle: str | None,
        connect_timeout: float,
        read_timeout: float,
        connections: int,
        max_attempts: int,
    ) -> None:
        self._client = client
        self._endpoint = str(client.meta.endpoint_url).rstrip("/")
        self._auth = S3SigV4Auth(Credentials(access_key_id, secret_access_key), "s3", client.meta.region_name)
        self._user_agent = user_agent
        verify: str | bool = (
            ca_bundle
            or botocore.session.Session().get_config_variable("ca_bundle")
            or os.environ.get("REQUESTS_CA_BUNDLE")
            or True
        )
        self._http = URLLib3Session(
            verify=verify,
            proxies=get_environ_proxies(self._endpoint),
            timeout=(connect_timeout, read_timeout),
            max_pool_connections=connections,
        )
        self._operation = client.meta.service_model.operation_model("GetObject")
        self._parser = create_parser("rest-xml")
        throttling = standard.ThrottlingErrorDetector(standard.RetryEventAdapter())
        self._policy = standard.RetryPolicy(
            standard.StandardRetryConditions(max_attempts=max_attempts),
            standard.ExponentialBackoff(throttling_detector=throttling),
        )
        self._quota = standard.RetryQuotaChecker(quota.RetryQuota(), throttling)

    def __repr__(self) -> str:
        return f"<SignedGet {self._endpoint}>"

    def get_object(self, *, Bucket: str, Key: str, deadline: float, IfNoneMatch: str | None = None) -> dict[str, Any]:
        url = f"{self._endpoint}/{quote(Bucket, safe='')}/{quote(Key, safe='/~')}"
        headers = {"User-Agent": self._user_agent, **_if_none_match(IfNoneMatch, "If-None-Match")}
        request_context: dict[str, Any] = {}
        attempt = 1
        while True:
            response: AWSResponse | None = None
            parsed: dict[str, Any] | None = None
            caught: Exception | None = None
            try:
                response = self._send(url, headers)
            except Exception as exc:  # noqa: BLE001 - classified by botocore's retry policy, re-raised below
                caught = exc
            else:
                if response.status_code < 300:
                    self._quota.release_retry_quota(request_context, response)
                    return _answer(response)
                parsed = self._error(response, deadline)
                if _wrong_region(response, parsed):  # the client's S3 region redirector finds the right one
                    return dict(self._client.get_object(Bucket=Bucket, Key=Key, **_if_none_match(IfNoneMatch)))
            context = standard.RetryContext(
                attempt_number=attempt,
                operation_model=self._operation,
                parsed_response=parsed,
                http_response=response,
                caught_exception=caught,
                request_context=request_context,
            )
            delay = self._policy.compute_retry_delay(context) if self._policy.should_retry(context) else None
            if delay is None or time.monotonic() + delay >= deadline or not self._quota.acquire_retry_quota(context):
                if caught is not None:
                    raise caught
                raise ClientError(parsed or {}, "GetObject")
            time.sleep(delay)
            attempt += 1

    def _send(self, url: str, headers: dict[str, str]) -> AWSResponse:
        request = AWSRequest(method="GET", url=url, headers=headers)
        self._auth.add_auth(request)
        prepared = request.prepare()
        prepared.stream_output = True  # the body is read by the caller, one socket read at a time
        return self._http.send(prepared)

    def _error(self, response: AWSResponse, deadline: float) -> dict[str, Any]:
        """The error answer as botocore's client parses it, from at most `MAX_ERROR_BYTES` of its body (a body
        that cannot be read in time counts as empty: the status alone then names the error)."""
        raw = response.raw
        try:
            body = read_within(raw, MAX_ERROR_BYTES + 1, deadline)
        except (TimeoutError, *READ_ERRORS):
            body = b""
        if raw.isclosed() and len(body) <= MAX_ERROR_BYTES:
            raw.release_conn()  # read to its end: the connection goes back to the pool
        else:
            raw.close()
            body = b""
        return self._parse_error(response, body)

    def _parse_error(self, response: AWSResponse, body: bytes) -> dict[str, Any]:
        parsed: dict[str, Any] = self._parser.parse(
            {"status_code": response.status_code, "headers": response.headers, "body": body},
            self._operation.output_shape,
        )
        parsed.setdefault("ResponseMetadata", {})["HTTPStatusCode"] = response.status_code
        return parsed


def _if_none_match(etag: str | None, name: str = "IfNoneMatch") -> dict[str, str]:
    return {name: etag} if etag else {}


def _wrong_region(response: AWSResponse, parsed: dict[str, Any]) -> bool:
    """The answers on which botocore's `S3RegionRedirectorv2` re-sends a GetObject to the bucket's own region."""
    error = parsed.get("Error", {})
    code = error.get("Code")
    return (
        response.status_code in (301, 302, 307)
        or code in ("PermanentRedirect", "IllegalLocationConstraintException")
        or (code == "AuthorizationHeaderMalformed" and "Region" in error)
    )


def _answer(response: AWSResponse) -> dict[str, Any]:
    declared = response.headers.get("Content-Length")
    length = int(declared) if declared is not None and declared.isdigit() else None
    return {
        "Body": StreamingBody(response.raw, length),
        "ContentLength": length,
        "ETag": response.headers.get("ETag", ""),
    }


def read_within(raw: Any, limit: int, deadline: float, chunk_bytes: int = 1024 * 1024) -> bytes:
    """Up to *limit* bytes of a urllib3 response (or any object with `read1`/`read`), one socket read at a time,
    none of them waiting past *deadline*: `TimeoutError` when it passes; read errors (`READ_ERRORS`) propagate."""
    read_once = getattr(raw, "read1", None) or raw.read
    parts: list[bytes] = []
    received = 0
    while received < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        _limit_socket_wait(raw, remaining)
        try:
            chunk = read_once(min(chunk_bytes, limit - received))
        except READ_ERRORS:
            if time.monotonic() >= deadline:
                raise TimeoutError from None
            raise
        if not chunk:
            break
        parts.append(chunk)
        received += len(chunk)
    return b"".join(parts)


def _limit_socket_wait(raw: Any, seconds: float) -> None:
    """Let the next socket read of a urllib3 response wait at most *seconds* (best effort: fakes have none)."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(0.01, seconds))
