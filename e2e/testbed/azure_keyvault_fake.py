"""A small Azure Key Vault (secrets) server over HTTPS, for the test bed.

Why a fake: lowkey-vault, the emulator the notes recommend, is not served by the reachable Maven registry
(``com.github.nagyesta.lowkey-vault:lowkey-vault-app`` has no versions there), and no other registry has a
Key Vault emulator. This server implements the secrets part of the Key Vault REST API that
``azure-keyvault-secrets`` uses, with the same rules a client must follow against lowkey-vault 3.4:

* HTTPS only (azure-core refuses bearer tokens over plain http); the cert is the test bed CA's.
* Challenge authentication: a request without ``Authorization: Bearer ...`` gets 401 with a
  ``WWW-Authenticate`` challenge whose resource is ``https://vault.azure.net``. A token issued by the Entra
  token endpoint below is checked (unknown or expired: 401) and confined to its app's name prefix (another
  name: 403, lists show only its secrets); any other bearer token is accepted, as before (tests that need no
  sign-in). Clients pass ``verify_challenge_resource=False`` since the vault is not on ``*.vault.azure.net``.
* Workload identity federation: ``POST /{tenant}/oauth2/v2.0/token`` is Entra's token endpoint
  (``e2e/testbed/entra_fake.py``: client assertions verified by TokenReview against the kube-apiserver given
  with ``--kube-*``); ``PUT /_fake/federation`` configures its apps, ``GET /_fake/token-requests`` is its ledger.
* ``api-version`` must be one of 7.2 ... 7.6 (so clients pass ``api_version="7.6"``).

Endpoints: set/get/list/versions/update/delete (soft delete), deleted-secret get/list/purge/recover, and
``GET /ping`` for health checks. State is in memory. Run:
``python -m e2e.testbed.azure_keyvault_fake --host 127.0.0.1 --port P --cert C --key K``.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from e2e.fakes.federation import TokenReviewer, kube_access, kube_access_arguments
from e2e.testbed.entra_fake import TOKEN_PREFIX, App, Entra

SUPPORTED_API_VERSIONS = ("7.2", "7.3", "7.4", "7.5", "7.6")
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
VAULT_TENANT = "00000000-0000-0000-0000-000000000000"  # the directory the vault belongs to (its challenge says so)
_CHALLENGE = (
    f'Bearer authorization="https://login.microsoftonline.com/{VAULT_TENANT}", resource="https://vault.azure.net"'
)
_RECOVERY_LEVEL = "Recoverable+Purgeable"
_RECOVERABLE_DAYS = 90


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class SecretVersion:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    enabled: bool = True
    not_before: int | None = None
    expires: int | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    updated: int = field(default_factory=lambda: int(time.time()))

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "enabled": self.enabled,
            "created": self.created,
            "updated": self.updated,
            "recoveryLevel": _RECOVERY_LEVEL,
            "recoverableDays": _RECOVERABLE_DAYS,
        }
        if self.not_before is not None:
            attrs["nbf"] = self.not_before
        if self.expires is not None:
            attrs["exp"] = self.expires
        return attrs

    def apply(self, body: dict[str, Any]) -> None:
        if "contentType" in body:
            self.content_type = body["contentType"]
        if "tags" in body:
            self.tags = body["tags"]
        attrs = body.get("attributes") or {}
        if "enabled" in attrs and attrs["enabled"] is not None:
            self.enabled = bool(attrs["enabled"])
        if "nbf" in attrs:
            self.not_before = attrs["nbf"]
        if "exp" in attrs:
            self.expires = attrs["exp"]
        self.updated = int(time.time())


@dataclass
class Secret:
    name: str
    versions: list[SecretVersion] = field(default_factory=list)  # oldest first
    deleted_date: int | None = None

    @property
    def latest(self) -> SecretVersion:
        return self.versions[-1]

    def find(self, version: str) -> SecretVersion:
        if not version:
            return self.latest
        for candidate in self.versions:
            if candidate.version == version:
                return candidate
        raise ApiError(
            HTTPStatus.NOT_FOUND,
            "SecretNotFound",
            f"A secret with (name/id) {self.name}/{version} was not found in this key vault.",
        )


class Vault:
    """The secrets of one vault, shared by all request threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secrets: dict[str, Secret] = {}  # lower-cased name -> secret (names are case-insensitive)

    def active(self, name: str) -> Secret:
        secret = self.secrets.get(name.lower())
        if secret is None or secret.deleted_date is not None:
            raise ApiError(
                HTTPStatus.NOT_FOUND,
                "SecretNotFound",
                f"A secret with (name/id) {name} was not found in this key vault.",
            )
        return secret

    def deleted(self, name: str) -> Secret:
        secret = self.secrets.get(name.lower())
        if secret is None or secret.deleted_date is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "SecretNotFound", f"Deleted Secret not found: {name}")
        return secret


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vaultbundle-keyvault-fake/1"
    vault: Vault  # set on the subclass made by make_server
    entra: Entra

    # --- plumbing -------------------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, payload: Any | None = None, headers: dict[str, str] | None = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_json(self) -> dict[str, Any]:
        raw = self._read_raw()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, "BadParameter", f"Invalid JSON body: {exc}") from exc
        if not isinstance(data, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "BadParameter", "The body must be a JSON object.")
        return data

    def _base_url(self) -> str:
        return f"https://{self.headers.get('Host', '127.0.0.1')}"

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        if method == "GET" and path == "/ping":
            self._send(HTTPStatus.OK, {"status": "ok"})
            return
        parts = [p for p in path.split("/") if p]
        if method == "POST" and len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            form = {k: v[0] for k, v in parse_qs(self._read_raw().decode("utf-8", "replace")).items()}
            self._send(*self.entra.token(parts[0], form))
            return
        if parts[:1] == ["_fake"]:
            self._control(method, parts[1:])
            return
        # Like Key Vault, read the body before answering, so keep-alive connections stay in sync.
        try:
            body = self._read_json() if method in ("PUT", "PATCH", "POST") else {}
            self._check_api_version(parse_qs(url.query))
            authorization = self.headers.get("Authorization", "")
            if not authorization.startswith("Bearer "):
                error = {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}
                self._send(HTTPStatus.UNAUTHORIZED, {"error": error}, {"WWW-Authenticate": _CHALLENGE})
                return
            app: App | None = None
            bearer = authorization.removeprefix("Bearer ")
            if bearer.startswith(TOKEN_PREFIX):
                app = self.entra.app_for(bearer)
                if app is None:
                    error = {"code": "Unauthorized", "message": "AKV10032: Invalid issuer or expired token."}
                    self._send(HTTPStatus.UNAUTHORIZED, {"error": error}, {"WWW-Authenticate": _CHALLENGE})
                    return
            status, payload = self._route(method, parts, body, app)
        except ApiError as err:
            self._send(err.status, {"error": {"code": err.code, "message": err.message}})
            return
        self._send(status, payload)

    def _control(self, method: str, parts: list[str]) -> None:
        """Test-only endpoints of the Entra fake (no auth; the bed listens on loopback only)."""
        if method == "PUT" and parts == ["federation"]:
            self._send(HTTPStatus.OK, self.entra.configure(json.loads(self._read_raw() or b"{}")))
        elif method == "GET" and parts == ["token-requests"]:
            self._send(HTTPStatus.OK, {"value": self.entra.ledger.entries()})
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": {"code": "NotFound", "message": "no such test endpoint"}})

    @staticmethod
    def _check_api_version(query: dict[str, list[str]]) -> None:
        versions = query.get("api-version")
        if not versions:
            raise ApiError(HTTPStatus.BAD_REQUEST, "BadParameter", "api-version query parameter is missing.")
        if versions[0] not in SUPPORTED_API_VERSIONS:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "BadParameter",
                f"The specified version ({versions[0]}) is not recognized. "
                f"Supported: {', '.join(SUPPORTED_API_VERSIONS)}.",
            )

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --- the API --------------------------------------------------------------------------------------
    def _route(
        self, method: str, parts: list[str], body: dict[str, Any], app: App | None = None
    ) -> tuple[HTTPStatus, Any]:
        if app is not None and len(parts) >= 2 and not parts[1].lower().startswith(app.name_prefix.lower()):
            raise ApiError(  # the app's role assignment covers only its prefix (as Key Vault RBAC per secret)
                HTTPStatus.FORBIDDEN,
                "Forbidden",
                f"Caller is not authorized to perform action on resource. Caller: appid={app.client_id}",
            )
        status, payload = self._route_all(method, parts, body)
        if app is not None and len(parts) == 1 and isinstance(payload, dict):  # a listing: only the app's secrets
            prefix = app.name_prefix.lower()
            named = [(item, item["id"].split("/secrets/", 1)[1].split("/")[0]) for item in payload["value"]]
            payload["value"] = [item for item, name in named if name.lower().startswith(prefix)]
        return status, payload

    def _route_all(self, method: str, parts: list[str], body: dict[str, Any]) -> tuple[HTTPStatus, Any]:
        vault = self.vault
        with vault.lock:
            match method, parts:
                case "GET", ["secrets"]:
                    items = [self._item(s) for s in vault.secrets.values() if s.deleted_date is None]
                    return HTTPStatus.OK, {"value": items, "nextLink": None}
                case "PUT", ["secrets", name]:
                    return HTTPStatus.OK, self._set(name, body)
                case "GET", ["secrets", name, "versions"]:
                    secret = vault.active(name)
                    items = [self._item(secret, v) for v in secret.versions]
                    return HTTPStatus.OK, {"value": items, "nextLink": None}
                case "GET", ["secrets", name]:
                    return HTTPStatus.OK, self._readable_bundle(vault.active(name), "")
                case "GET", ["secrets", name, version]:
                    return HTTPStatus.OK, self._readable_bundle(vault.active(name), version)
                case "PATCH", ["secrets", name, version]:
                    secret = vault.active(name)
                    entry = secret.find(version)
                    entry.apply(body)
                    return HTTPStatus.OK, self._bundle(secret, entry, with_value=False)
                case "DELETE", ["secrets", name]:
                    secret = vault.active(name)
                    secret.deleted_date = int(time.time())
                    return HTTPStatus.OK, self._deleted_bundle(secret)
                case "GET", ["deletedsecrets"]:
                    items = [
                        self._deleted_bundle(s, item=True) for s in vault.secrets.values() if s.deleted_date is not None
                    ]
                    return HTTPStatus.OK, {"value": items, "nextLink": None}
                case "GET", ["deletedsecrets", name]:
                    return HTTPStatus.OK, self._deleted_bundle(vault.deleted(name))
                case "DELETE", ["deletedsecrets", name]:
                    secret = vault.deleted(name)
                    del vault.secrets[secret.name.lower()]
                    return HTTPStatus.NO_CONTENT, None
                case "POST", ["deletedsecrets", name, "recover"]:
                    secret = vault.deleted(name)
                    secret.deleted_date = None
                    return HTTPStatus.OK, self._bundle(secret, secret.latest, with_value=False)
        raise ApiError(HTTPStatus.NOT_FOUND, "NotFound", f"No route for {method} /{'/'.join(parts)}.")

    def _set(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if not _NAME.match(name):
            raise ApiError(HTTPStatus.BAD_REQUEST, "BadParameter", "The request URI contains an invalid name: " + name)
        if not isinstance(body.get("value"), str):
            raise ApiError(HTTPStatus.BAD_REQUEST, "BadParameter", "Property 'value' is required.")
        secret = self.vault.secrets.get(name.lower())
        if secret is not None and secret.deleted_date is not None:
            raise ApiError(
                HTTPStatus.CONFLICT,
                "Conflict",
                f"Secret {name} is currently in a deleted but recoverable state, and its name "
                "cannot be reused; in this state, the secret can only be recovered or purged.",
            )
        if secret is None:
            secret = self.vault.secrets[name.lower()] = Secret(name)
        entry = SecretVersion(uuid.uuid4().hex, body["value"], body.get("contentType"), body.get("tags"))
        entry.apply({"attributes": body.get("attributes") or {}})
        secret.versions.append(entry)
        return self._bundle(secret, entry, with_value=True)

    def _readable_bundle(self, secret: Secret, version: str) -> dict[str, Any]:
        entry = secret.find(version)
        if not entry.enabled:
            raise ApiError(HTTPStatus.FORBIDDEN, "Forbidden", "Operation get is not allowed on a disabled secret.")
        return self._bundle(secret, entry, with_value=True)

    def _bundle(self, secret: Secret, entry: SecretVersion, *, with_value: bool) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "id": f"{self._base_url()}/secrets/{secret.name}/{entry.version}",
            "attributes": entry.attributes(),
        }
        if with_value:
            bundle["value"] = entry.value
        if entry.content_type is not None:
            bundle["contentType"] = entry.content_type
        if entry.tags is not None:
            bundle["tags"] = entry.tags
        return bundle

    def _item(self, secret: Secret, entry: SecretVersion | None = None) -> dict[str, Any]:
        """A list item: without the value; a secret's item (no ``entry``) has the versionless id."""
        item = self._bundle(secret, entry or secret.latest, with_value=False)
        if entry is None:
            item["id"] = f"{self._base_url()}/secrets/{secret.name}"
        return item

    def _deleted_bundle(self, secret: Secret, *, item: bool = False) -> dict[str, Any]:
        assert secret.deleted_date is not None
        bundle = self._bundle(secret, secret.latest, with_value=False)
        if item:
            bundle["id"] = f"{self._base_url()}/secrets/{secret.name}"
        bundle.update(
            {
                "recoveryId": f"{self._base_url()}/deletedsecrets/{secret.name}",
                "deletedDate": secret.deleted_date,
                "scheduledPurgeDate": secret.deleted_date + _RECOVERABLE_DAYS * 86400,
            }
        )
        return bundle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def make_server(
    host: str, port: int, cert: str, key: str, reviewer: TokenReviewer | None = None
) -> ThreadingHTTPServer:
    entra = Entra(reviewer or TokenReviewer(None))
    handler = type("VaultHandler", (Handler,), {"vault": Vault(), "entra": entra})
    server = _Server((host, port), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="PEM serving certificate")
    parser.add_argument("--key", required=True, help="PEM private key of the certificate")
    kube_access_arguments(parser)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, args.cert, args.key, TokenReviewer(kube_access(args)))
    print(f"azure key vault fake listening on https://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
