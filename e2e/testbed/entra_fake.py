"""The Microsoft Entra ID token endpoint, for workload identity federation, served by the Key Vault fake.

``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``, ``client_id``,
``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``, ``client_assertion=<JWT>`` and
``scope=https://vault.azure.net/.default`` (what azure-identity's ``ClientAssertionCredential`` sends). Like
Entra, it accepts the assertion only if it is a valid token of the cluster's issuer for the audience
``api://AzureADTokenExchange`` (checked by a TokenReview against the real kube-apiserver) whose subject is one of
the app's federated identity credentials, and the app (``client_id``) lives in the tenant of the URL.

The app table is configurable (``PUT /_fake/federation`` merges ``{"apps": {clientID: {"tenantID": ...,
"subjects": ["system:serviceaccount:<ns>:<name>", ...], "namePrefix": "..."}}}``): ``namePrefix`` stands in for
the app's Key Vault RBAC role assignment, scoped to the secrets whose names start with it. Key Vault then
refuses (403) a token of that app on any other name, and lists only its secrets. ``GET /_fake/token-requests``
is the ledger (client, tenant, verified subject, outcome; never the assertion). Errors use Entra's shape
(``error``, ``error_description`` with an AADSTS code).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from e2e.fakes.federation import Ledger, TokenReviewer

EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KEY_VAULT_SCOPE = "https://vault.azure.net/.default"
TOKEN_PREFIX = "entra-fake-"  # marks the access tokens this endpoint issued
TOKEN_SECONDS = 3599


@dataclass(frozen=True)
class App:
    client_id: str
    tenant_id: str
    subjects: frozenset[str]
    name_prefix: str


class Entra:
    """Apps with federated identity credentials, the access tokens issued, and the ledger."""

    def __init__(self, reviewer: TokenReviewer) -> None:
        self.reviewer = reviewer
        self.ledger = Ledger()
        self._lock = threading.Lock()
        self._apps: dict[str, App] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # access token -> (client id, expiry)

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        apps = body.get("apps") or {}
        with self._lock:
            for client_id, app in apps.items():
                self._apps[client_id.lower()] = App(
                    client_id.lower(),
                    str(app["tenantID"]).lower(),
                    frozenset(app.get("subjects") or ()),
                    str(app.get("namePrefix") or ""),
                )
            return {"apps": sorted(self._apps)}

    def token(self, tenant: str, form: dict[str, str]) -> tuple[HTTPStatus, dict[str, Any]]:
        client_id = form.get("client_id", "").lower()
        entry: dict[str, Any] = {"tenant": tenant.lower(), "client_id": client_id, "grant_type": form.get("grant_type")}
        entry["client_secret"] = "client_secret" in form  # a secret-based sign-in (never recorded itself)
        subject = None
        if form.get("client_assertion"):
            subject = self.reviewer.subject(form["client_assertion"], EXCHANGE_AUDIENCE)
        entry["subject"] = subject
        status, payload = self._decide(tenant.lower(), client_id, form, subject)
        entry["outcome"] = "issued" if status == HTTPStatus.OK else payload["error"]
        self.ledger.record(**entry)
        return status, payload

    def _decide(
        self, tenant: str, client_id: str, form: dict[str, str], subject: str | None
    ) -> tuple[HTTPStatus, dict[str, Any]]:
        if form.get("grant_type") != "client_credentials":
            return _error(HTTPStatus.BAD_REQUEST, "unsupported_grant_type", 70003, "The grant type is not supported.")
        if form.get("scope") != KEY_VAULT_SCOPE:
            return _error(HTTPStatus.BAD_REQUEST, "invalid_scope", 70011, "The provided scope is not valid here.")
        with self._lock:
            app = self._apps.get(client_id)
        if app is None or app.tenant_id != tenant:
            return _error(
                HTTPStatus.BAD_REQUEST, "unauthorized_client", 700016, "Application not found in the directory."
            )
        if form.get("client_assertion_type") != ASSERTION_TYPE or "client_secret" in form:
            return _error(HTTPStatus.UNAUTHORIZED, "invalid_client", 7000215, "Invalid client secret provided.")
        if subject is None:
            return _error(
                HTTPStatus.BAD_REQUEST,
                "invalid_client",
                700211,
                "The assertion is not a valid token of a trusted issuer.",
            )
        if subject not in app.subjects:
            return _error(
                HTTPStatus.BAD_REQUEST,
                "invalid_client",
                70021,
                "No matching federated identity record found for presented assertion.",
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (app.client_id, time.time() + TOKEN_SECONDS)
        return HTTPStatus.OK, {
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
            "ext_expires_in": TOKEN_SECONDS,
            "access_token": token,
        }

    def app_for(self, bearer: str) -> App | None:
        """The app a token issued here belongs to; None for an unknown or expired one."""
        with self._lock:
            client_id, expires = self._tokens.get(bearer, ("", 0.0))
            return self._apps.get(client_id) if expires > time.time() else None


def _error(status: HTTPStatus, error: str, code: int, text: str) -> tuple[HTTPStatus, dict[str, Any]]:
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {text}",
        "error_codes": [code],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
    }
