"""Google's Security Token Service and IAM Credentials API, for workload identity federation, over HTTPS.

What google-auth's identity-pool (external account) credentials call:

* ``POST /v1/token`` (STS, RFC 8693 token exchange; form fields ``grant_type``
  ``urn:ietf:params:oauth:grant-type:token-exchange``, ``audience`` = the pool provider
  ``//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X``, ``subject_token``,
  ``subject_token_type`` ``urn:ietf:params:oauth:token-type:jwt``, ``requested_token_type``, ``scope``). The
  provider must be configured; the subject token must be a token of the cluster's issuer for the provider's
  default audience (``https:`` + audience), verified by a TokenReview against the real kube-apiserver. The
  federated token stands for ``principal://.../subject/system:serviceaccount:<ns>:<name>``.
* ``POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken`` (IAM Credentials) with the federated token:
  allowed only when the principal is a member of the service account (roles/iam.workloadIdentityUser).

What a token may do in Secret Manager is configurable (``PUT /_fake/federation`` merges ``{"providers": [aud],
"principals": {subject: {"project", "namePrefix"}}, "serviceAccounts": {email: {"project", "namePrefix",
"members": [subject]}}}``): ``namePrefix`` stands in for an IAM binding on the secrets whose IDs start with it.
The Secret Manager fake's TLS port asks ``grant_for(token)`` on every call. ``GET /_fake/token-requests`` is the
ledger (endpoint, verified subject, outcome; never a token). Error bodies follow Google's shapes.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from e2e.fakes.federation import Ledger, TokenReviewer

EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_SECONDS = 3600
_GENERATE = re.compile(r"/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken")


@dataclass(frozen=True)
class Grant:
    """What an identity may touch: the secrets of *project* whose IDs start with *name_prefix*."""

    project: str
    name_prefix: str


class GoogleFederation:
    """Providers, IAM bindings of principals and service accounts, issued tokens, and the ledger."""

    def __init__(self, reviewer: TokenReviewer) -> None:
        self.reviewer = reviewer
        self.ledger = Ledger()
        self._lock = threading.Lock()
        self._providers: set[str] = set()
        self._principals: dict[str, Grant] = {}
        self._accounts: dict[str, tuple[Grant, frozenset[str]]] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> ("principal:<subject>" | "sa:<email>", expiry)

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._providers.update(body.get("providers") or ())
            for subject, grant in (body.get("principals") or {}).items():
                self._principals[subject] = Grant(grant["project"], grant.get("namePrefix", ""))
            for email, account in (body.get("serviceAccounts") or {}).items():
                grant = Grant(account["project"], account.get("namePrefix", ""))
                self._accounts[email] = (grant, frozenset(account.get("members") or ()))
            return {"providers": sorted(self._providers), "principals": sorted(self._principals)}

    def _issue(self, identity: str) -> str:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (identity, time.time() + TOKEN_SECONDS)
        return token

    def _identity(self, token: str) -> str | None:
        with self._lock:
            identity, expires = self._tokens.get(token, ("", 0.0))
        return identity if expires > time.time() else None

    def exchange(self, form: dict[str, str]) -> tuple[HTTPStatus, dict[str, Any]]:
        audience = form.get("audience", "")
        subject = None
        if form.get("subject_token"):
            subject = self.reviewer.subject(form["subject_token"], "https:" + audience)
        entry = {"endpoint": "sts", "audience": audience, "subject": subject}
        with self._lock:
            known = audience in self._providers
        if form.get("grant_type") != EXCHANGE_GRANT:
            status, payload = _oauth_error("unsupported_grant_type", "Unsupported grant type.")
        elif form.get("subject_token_type") != JWT_TYPE or form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            status, payload = _oauth_error("invalid_request", "Invalid value for subject_token_type.")
        elif not known:
            status, payload = _oauth_error("invalid_target", "The target service indicated by the audience is invalid.")
        elif subject is None:
            status, payload = _oauth_error("invalid_grant", "The given credential is rejected by the issuer.")
        else:
            status, payload = (
                HTTPStatus.OK,
                {
                    "access_token": self._issue("principal:" + subject),
                    "issued_token_type": ACCESS_TOKEN_TYPE,
                    "token_type": "Bearer",
                    "expires_in": TOKEN_SECONDS,
                },
            )
        self.ledger.record(**entry, outcome="issued" if status == HTTPStatus.OK else payload["error"])
        return status, payload

    def impersonate(self, email: str, bearer: str) -> tuple[HTTPStatus, dict[str, Any]]:
        identity = self._identity(bearer)
        subject = identity.removeprefix("principal:") if identity and identity.startswith("principal:") else None
        with self._lock:
            account = self._accounts.get(email)
        if subject is None:
            status, payload = _google_error(HTTPStatus.UNAUTHORIZED, "UNAUTHENTICATED", "Invalid credentials.")
        elif account is None or subject not in account[1]:
            status, payload = _google_error(
                HTTPStatus.FORBIDDEN,
                "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
            )
        else:
            expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + TOKEN_SECONDS))
            status, payload = HTTPStatus.OK, {"accessToken": self._issue("sa:" + email), "expireTime": expiry}
        self.ledger.record(
            endpoint="generateAccessToken",
            service_account=email,
            subject=subject,
            outcome="issued" if status == HTTPStatus.OK else payload["error"]["status"],
        )
        return status, payload

    def grant_for(self, token: str) -> Grant | None:
        """What a bearer token may touch in Secret Manager; None for an unknown, expired or unbound one."""
        identity = self._identity(token)
        with self._lock:
            if identity is None:
                return None
            if identity.startswith("principal:"):
                return self._principals.get(identity.removeprefix("principal:"))
            account = self._accounts.get(identity.removeprefix("sa:"))
            return account[0] if account else None

    def known(self, token: str) -> bool:
        return self._identity(token) is not None


def _oauth_error(error: str, description: str) -> tuple[HTTPStatus, dict[str, Any]]:
    return HTTPStatus.BAD_REQUEST, {"error": error, "error_description": description}


def _google_error(status: HTTPStatus, code: str, message: str) -> tuple[HTTPStatus, dict[str, Any]]:
    return status, {"error": {"code": int(status), "message": message, "status": code}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    federation: GoogleFederation

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines carry no secrets, but the default goes to stderr on every call

    def _send(self, status: HTTPStatus, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_fake/health":
            self._send(HTTPStatus.OK, {"status": "ok"})
        elif path == "/_fake/token-requests":
            self._send(HTTPStatus.OK, {"value": self.federation.ledger.entries()})
        else:
            self._send(*_google_error(HTTPStatus.NOT_FOUND, "NOT_FOUND", "Not found."))

    def do_PUT(self) -> None:
        if urlsplit(self.path).path == "/_fake/federation":
            self._send(HTTPStatus.OK, self.federation.configure(json.loads(self._body() or b"{}")))
        else:
            self._send(*_google_error(HTTPStatus.NOT_FOUND, "NOT_FOUND", "Not found."))

    def do_POST(self) -> None:
        path, body = urlsplit(self.path).path, self._body()
        if path == "/v1/token":
            text = body.decode("utf-8", "replace")
            fields = json.loads(text) if text.startswith("{") else {k: v[0] for k, v in parse_qs(text).items()}
            self._send(*self.federation.exchange({k: str(v) for k, v in fields.items()}))
            return
        match = _GENERATE.fullmatch(path)
        if match:
            bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
            self._send(*self.federation.impersonate(unquote(match.group(1)), bearer))
            return
        self._send(*_google_error(HTTPStatus.NOT_FOUND, "NOT_FOUND", "Not found."))


def serve(host: str, port: int, cert: str, key: str, federation: GoogleFederation) -> ThreadingHTTPServer:
    """Start the HTTPS server on a daemon thread; returns it (``server_address[1]`` is the port)."""
    handler = type("StsHandler", (_Handler,), {"federation": federation})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="fake-gcp-sts", daemon=True).start()
    return server
