"""Protocol-faithful fake of the GitHub REST API for Actions (and Dependabot) secrets, for e2e tests.

PyGithub talks to it unmodified: ``Github(base_url=server.base_url, auth=Auth.Token(token))``.

Run it:  ``python -m e2e.fakes.github_actions --host 127.0.0.1 --port PORT [--token TOKEN]``
In-process: ``server = start_in_process()`` then ``server.base_url``, ``server.state``, ``server.stop()``.

What it does like GitHub: a real Curve25519 key pair; every ``encrypted_value`` is opened with
``SealedBox(private_key)``; wrong ``key_id``, undecryptable values and invalid names give 422; secret
names are case-insensitive and stored upper-case; 201 on create, 204 on update/delete; ``Link``
pagination; object ``url`` fields point back at the fake (built from the request's Host header).
Owners, repos, orgs and environments are auto-created unless they match ``--missing-pattern``
(default ``missing-*``), which answers 404. Test-only endpoints (no auth): ``GET /_fake/health``,
``GET /_fake/secrets`` (includes plaintexts), ``GET /_fake/stats``, ``POST /_fake/reset``.
GitHub App auth is minimal: ``POST /app/installations/{id}/access_tokens`` with any well-formed, unexpired
JWT (signature NOT verified) returns a token the fake then accepts. Plaintexts are never logged.
``state.requests`` lists every request as (method, path), for tests that prove a request never arrived.
With ``tls=(cert_file, key_file)`` it serves HTTPS (and its ``url`` fields say https), e.g. for a
ClusterTargetStore, whose apiURL must be https.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import fnmatch
import json
import logging
import re
import secrets as pyrandom
import signal
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

log = logging.getLogger("fake-github-actions")

DEFAULT_TOKEN = "testbed-token"
DOCS = "https://docs.github.com/rest"
MAX_SECRET_BYTES = 48 * 1024
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEG = r"([^/]+)"
_KIND = r"(actions|dependabot)"


def _ts(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HttpError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.body = status, {"message": message, **extra, "documentation_url": DOCS, "status": str(status)}


def _unprocessable(message: str) -> HttpError:
    return HttpError(422, message)


@dataclass
class StoredSecret:
    name: str
    value: bytes
    key_id: str
    created_at: float
    updated_at: float
    visibility: str | None = None  # org secrets only
    selected_repository_ids: list[int] = field(default_factory=list)


# A scope is ("repo", "owner/repo", kind) | ("environment", "owner/repo", env) | ("org", org, kind)
Scope = tuple[str, str, str]


class GitHubState:
    """Thread-safe store of secrets, repos (with stable ids) and request counters."""

    def __init__(self, token: str = DEFAULT_TOKEN, missing_pattern: str = "missing-*") -> None:
        self.lock = threading.RLock()
        self.token = token
        self.missing_pattern = missing_pattern
        self.private_key = PrivateKey.generate()
        self.public_key_b64 = base64.b64encode(bytes(self.private_key.public_key)).decode()
        self.key_id = str(pyrandom.randbits(60))
        self.installation_tokens: dict[str, float] = {}
        self.secrets: dict[Scope, dict[str, StoredSecret]] = {}
        self.ids: dict[str, int] = {}  # "repo:owner/repo", "org:name", ... (lower-case) -> stable numeric id
        self.repo_names: dict[int, str] = {}  # repo id -> "owner/repo"
        self.stats: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order

    def reset(self) -> None:
        with self.lock:
            self.secrets.clear()
            self.requests.clear()
            self.stats.clear()
            self.installation_tokens.clear()

    def check_exists(self, *names: str) -> None:
        if any(fnmatch.fnmatchcase(n.lower(), self.missing_pattern) for n in names):
            raise HttpError(404, "Not Found")

    def stable_id(self, key: str) -> int:
        with self.lock:
            return self.ids.setdefault(key.lower(), 1001 + len(self.ids))

    def repo_id(self, full_name: str) -> int:
        with self.lock:
            rid = self.stable_id(f"repo:{full_name}")
            self.repo_names.setdefault(rid, full_name)
            return rid

    def dump(self) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for (scope, target, extra), items in sorted(self.secrets.items()):
                for s in sorted(items.values(), key=lambda s: s.name):
                    entry: dict[str, Any] = {
                        "scope": scope,
                        "name": s.name,
                        "value": s.value.decode("utf-8", "replace"),
                        "value_b64": base64.b64encode(s.value).decode(),
                        "created_at": _ts(s.created_at),
                        "updated_at": _ts(s.updated_at),
                        "key_id": s.key_id,
                    }
                    if scope == "org":
                        entry.update(
                            org=target,
                            type=extra,
                            visibility=s.visibility,
                            selected_repository_ids=list(s.selected_repository_ids),
                        )
                    else:
                        owner, repo = target.split("/", 1)
                        entry.update(owner=owner, repo=repo, type=extra)
                        if scope == "environment":
                            entry.update(environment=extra, type="actions")
                    out.append(entry)
            return out

    def decrypt(self, body: dict[str, Any]) -> tuple[bytes, str]:
        key_id, encrypted = body.get("key_id"), body.get("encrypted_value")
        if not isinstance(encrypted, str) or not isinstance(key_id, str):
            raise _unprocessable('Invalid request.\n\n"encrypted_value" and "key_id" are required strings.')
        if key_id != self.key_id:
            raise _unprocessable("Invalid request.\n\nkey_id does not match the current public key.")
        try:
            value = SealedBox(self.private_key).decrypt(base64.b64decode(encrypted, validate=True))
        except (binascii.Error, ValueError, CryptoError):
            raise _unprocessable("Invalid request.\n\nencrypted_value could not be decrypted.") from None
        if len(value) > MAX_SECRET_BYTES:
            raise _unprocessable("Secret value is too large (maximum 48 KB).")
        return value, key_id


def _secret_name(raw: str) -> str:
    if not _NAME.fullmatch(raw) or raw.upper().startswith("GITHUB_"):
        raise _unprocessable(
            "Invalid request.\n\nSecret names can only contain alphanumeric characters "
            "or underscores, must not start with a number and must not start with GITHUB_."
        )
    return raw.upper()


class Handler(BaseHTTPRequestHandler):
    server: FakeGitHubServer
    query: dict[str, str]
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid 40 ms delayed-ACK stalls
    server_version = "GitHub.com-fake"

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):  # TLS: handshake here, in this request's thread
            self.request.do_handshake()
        super().setup()

    # ---- plumbing ----------------------------------------------------------------------------
    @property
    def st(self) -> GitHubState:
        return self.server.state

    @property
    def base(self) -> str:
        scheme = "https" if self.server.tls else "http"
        return f"{scheme}://{self.headers.get('Host') or self.server.host_port}"

    def log_message(self, fmt: str, *args: Any) -> None:  # request lines only, never bodies
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None or status == 204 else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/") or "/"
        with self.st.lock:
            self.st.stats["requests"] += 1
            self.st.requests.append((self.command, path))
        try:
            for method, pattern, handler in ROUTES:
                m = pattern.fullmatch(path)
                if m and method == self.command:
                    if not path.startswith("/_fake/"):
                        self._authenticate(app=path.startswith("/app/") or path.endswith("/installation"))
                    try:
                        body = json.loads(raw) if raw.strip() else {}
                    except ValueError:
                        raise HttpError(400, "Problems parsing JSON") from None
                    if not isinstance(body, dict):
                        raise HttpError(400, "Problems parsing JSON")
                    status, payload, headers = handler(self, body, *[unquote(g) for g in m.groups()])
                    self._send(status, payload, headers)
                    return
            self._authenticate(app=False)
            raise HttpError(404, "Not Found")
        except HttpError as e:
            log.info("%s %s -> %d %s", self.command, path, e.status, e.body["message"].splitlines()[0])
            self._send(e.status, e.body)
        except Exception:  # a bug in the fake: answer 500 instead of dropping the connection
            log.exception("%s %s failed", self.command, path)
            self._send(500, HttpError(500, "Internal error in the fake GitHub server").body)

    def _authenticate(self, app: bool) -> None:
        scheme, _, cred = (self.headers.get("Authorization") or "").partition(" ")
        scheme, cred = scheme.lower(), cred.strip()
        if app:
            if scheme == "bearer" and _jwt_ok(cred):
                return
            raise HttpError(401, "A JSON web token could not be decoded")
        if scheme in ("token", "bearer"):
            if pyrandom.compare_digest(cred, self.st.token):
                return
            with self.st.lock:
                if self.st.installation_tokens.get(cred, 0) > time.time():
                    return
        raise HttpError(401, "Bad credentials" if cred else "Requires authentication")

    # ---- objects -----------------------------------------------------------------------------
    def _owner(self, login: str, kind: str = "User") -> dict[str, Any]:
        return {
            "login": login,
            "id": self.st.stable_id(f"{kind}:{login}"),
            "type": kind,
            "url": f"{self.base}/users/{login}",
        }

    def _repo(self, owner: str, repo: str) -> dict[str, Any]:
        self.st.check_exists(owner, repo)
        full, rid = f"{owner}/{repo}", self.st.repo_id(f"{owner}/{repo}")
        return {
            "id": rid,
            "node_id": f"R_{rid}",
            "name": repo,
            "full_name": full,
            "private": True,
            "visibility": "private",
            "owner": self._owner(owner),
            "default_branch": "main",
            "url": f"{self.base}/repos/{full}",
            "html_url": f"http://github.invalid/{full}",
        }

    def _secret_json(self, s: StoredSecret, scope: Scope) -> dict[str, Any]:
        out: dict[str, Any] = {"name": s.name, "created_at": _ts(s.created_at), "updated_at": _ts(s.updated_at)}
        if scope[0] == "org":
            out["visibility"] = s.visibility
            if s.visibility == "selected":
                out["selected_repositories_url"] = (
                    f"{self.base}/orgs/{scope[1]}/{scope[2]}/secrets/{s.name}/repositories"
                )
        return out

    def _page(self, items: list[Any], item_key: str, path: str) -> tuple[int, Any, dict[str, str]]:
        try:
            per_page = max(1, min(int(self.query.get("per_page", 30)), 100))
            page = max(1, int(self.query.get("page", 1)))
        except ValueError:
            raise HttpError(400, "Invalid pagination parameters") from None
        last = max(1, -(-len(items) // per_page))
        links = []
        for rel, num in (("prev", page - 1), ("next", page + 1), ("last", last), ("first", 1)):
            if (rel in ("prev", "first") and page > 1) or (rel in ("next", "last") and page < last):
                links.append(f'<{self.base}{path}?{urlencode({"per_page": per_page, "page": num})}>; rel="{rel}"')
        chunk = items[(page - 1) * per_page : page * per_page]
        return 200, {"total_count": len(items), item_key: chunk}, ({"Link": ", ".join(links)} if links else {})

    # ---- scopes ------------------------------------------------------------------------------
    def _scope(self, kind: str, a: str, b: str, c: str = "") -> Scope:
        if kind == "org":
            self.st.check_exists(a)
            return ("org", a.lower(), b)
        self.st.check_exists(a, b, *([c] if kind == "environment" else []))
        self.st.repo_id(f"{a}/{b}")
        return (kind, f"{a}/{b}".lower(), c.lower() if kind == "environment" else c)

    def _list(self, scope: Scope, path: str) -> tuple[int, Any, dict[str, str]]:
        with self.st.lock:
            items = [self._secret_json(s, scope) for _, s in sorted(self.st.secrets.get(scope, {}).items())]
        return self._page(items, "secrets", path)

    def _get(self, scope: Scope, name: str) -> StoredSecret:
        s = self.st.secrets.get(scope, {}).get(name.upper())
        if s is None:
            raise HttpError(404, "Not Found")
        return s

    def _put(self, scope: Scope, raw_name: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        try:
            name = _secret_name(raw_name)
            value, key_id = self.st.decrypt(body)
            visibility, selected = None, []
            if scope[0] == "org":
                visibility = body.get("visibility")
                if visibility not in ("all", "private", "selected"):
                    raise _unprocessable("Invalid request.\n\nvisibility must be one of all, private, selected.")
                selected = _repo_ids(body.get("selected_repository_ids", []), as_str=scope[2] == "dependabot")
        except HttpError:
            with self.st.lock:
                self.st.stats["put_rejected"] += 1
            raise
        now = time.time()
        with self.st.lock:
            store = self.st.secrets.setdefault(scope, {})
            existing = store.get(name)
            store[name] = StoredSecret(
                name, value, key_id, existing.created_at if existing else now, now, visibility, selected
            )
            self.st.stats.update(["put", f"put:{scope[0]}", "put_updated" if existing else "put_created"])
        return (204, None, {}) if existing else (201, {}, {})

    def _delete(self, scope: Scope, name: str) -> tuple[int, Any, dict[str, str]]:
        with self.st.lock:
            if name.upper() not in self.st.secrets.get(scope, {}):
                self.st.stats["delete_missing"] += 1
                raise HttpError(404, "Not Found")
            del self.st.secrets[scope][name.upper()]
            self.st.stats.update(["delete", f"delete:{scope[0]}"])
        return 204, None, {}


def _repo_ids(value: Any, as_str: bool) -> list[int]:
    ok = isinstance(value, list) and all(
        (isinstance(v, str) and v.isdigit()) if as_str else (isinstance(v, int) and not isinstance(v, bool))
        for v in value
    )
    if not ok:
        kind = "strings" if as_str else "integers"
        raise _unprocessable(f"Invalid request.\n\nselected_repository_ids must be an array of {kind}.")
    return [int(v) for v in value]


def _jwt_ok(token: str) -> bool:
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return bool(claims.get("iss")) and float(claims.get("exp", 0)) > time.time() - 60
    except (ValueError, TypeError, binascii.Error, AttributeError):
        return False


# ---- route table: (method, regex, handler(h, body, *groups) -> (status, json, headers)) ----------
R = tuple[int, Any, dict[str, str]]
_routes: list[tuple[str, str, Callable[..., R]]] = []


def route(method: str, pattern: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    def deco(fn: Callable[..., R]) -> Callable[..., R]:
        _routes.append((method, pattern, fn))
        return fn

    return deco


@route("GET", "/_fake/health")
def _health(h: Handler, body: dict[str, Any]) -> R:
    return 200, {"status": "ok"}, {}


@route("GET", "/_fake/secrets")
def _fake_secrets(h: Handler, body: dict[str, Any]) -> R:
    return 200, h.st.dump(), {}


@route("GET", "/_fake/stats")
def _fake_stats(h: Handler, body: dict[str, Any]) -> R:
    with h.st.lock:
        return 200, dict(h.st.stats), {}


@route("POST", "/_fake/reset")
def _fake_reset(h: Handler, body: dict[str, Any]) -> R:
    h.st.reset()
    return 204, None, {}


@route("POST", r"/app/installations/(\d+)/access_tokens")
def _access_token(h: Handler, body: dict[str, Any], installation: str) -> R:
    token, expires = "ghs_" + pyrandom.token_hex(18), time.time() + 3600
    with h.st.lock:
        h.st.installation_tokens[token] = expires
    return (
        201,
        {
            "token": token,
            "expires_at": _ts(expires),
            "permissions": body.get("permissions") or {"secrets": "write", "metadata": "read"},
            "repository_selection": "all",
        },
        {},
    )


@route("GET", rf"/repos/{_SEG}/{_SEG}/installation")
def _repo_installation(h: Handler, body: dict[str, Any], owner: str, repo: str) -> R:
    h.st.check_exists(owner, repo)
    return (
        200,
        {
            "id": 1,
            "app_id": 1,
            "account": h._owner(owner),
            "target_type": "User",
            "access_tokens_url": f"{h.base}/app/installations/1/access_tokens",
        },
        {},
    )


@route("GET", rf"/orgs/{_SEG}/installation")
def _org_installation(h: Handler, body: dict[str, Any], org: str) -> R:
    h.st.check_exists(org)
    return (
        200,
        {
            "id": 1,
            "app_id": 1,
            "account": h._owner(org, "Organization"),
            "target_type": "Organization",
            "access_tokens_url": f"{h.base}/app/installations/1/access_tokens",
        },
        {},
    )


@route("GET", rf"/repos/{_SEG}/{_SEG}")
def _get_repo(h: Handler, body: dict[str, Any], owner: str, repo: str) -> R:
    return 200, h._repo(owner, repo), {}


@route("GET", r"/repositories/(\d+)")
def _get_repo_by_id(h: Handler, body: dict[str, Any], rid: str) -> R:
    full = h.st.repo_names.get(int(rid))
    if full is None:
        raise HttpError(404, "Not Found")
    return 200, h._repo(*full.split("/", 1)), {}


@route("GET", rf"/orgs/{_SEG}")
def _get_org(h: Handler, body: dict[str, Any], org: str) -> R:
    h.st.check_exists(org)
    return (
        200,
        {
            "login": org,
            "id": h.st.stable_id(f"Organization:{org}"),
            "type": "Organization",
            "url": f"{h.base}/orgs/{org}",
            "repos_url": f"{h.base}/orgs/{org}/repos",
        },
        {},
    )


def _environment(h: Handler, owner: str, repo: str, env: str) -> R:
    h._scope("environment", owner, repo, env)
    now = _ts(time.time())
    return (
        200,
        {
            "id": h.st.stable_id(f"env:{owner}/{repo}/{env}"),
            "node_id": "EN_fake",
            "name": env,
            "created_at": now,
            "updated_at": now,
            "url": f"{h.base}/repos/{owner}/{repo}/environments/{quote(env, safe='')}",
            "html_url": f"http://github.invalid/{owner}/{repo}/deployments/activity_log?environments_filter={env}",
            "protection_rules": [],
            "deployment_branch_policy": None,
        },
        {},
    )


route("GET", rf"/repos/{_SEG}/{_SEG}/environments/{_SEG}")(lambda h, b, o, r, e: _environment(h, o, r, e))
route("PUT", rf"/repos/{_SEG}/{_SEG}/environments/{_SEG}")(lambda h, b, o, r, e: _environment(h, o, r, e))


def _public_key(h: Handler, scope: Scope) -> R:
    return 200, {"key_id": h.st.key_id, "key": h.st.public_key_b64}, {}


# The three secret scopes share handlers; only the scope tuple and URL prefix differ.
_PREFIXES: list[tuple[str, str, Callable[..., Scope]]] = [
    ("repo", rf"/repos/{_SEG}/{_SEG}/{_KIND}/secrets", lambda h, o, r, k: h._scope("repo", o, r, k)),
    (
        "environment",
        rf"/repos/{_SEG}/{_SEG}/environments/{_SEG}/secrets",
        lambda h, o, r, e: h._scope("environment", o, r, e),
    ),
    ("org", rf"/orgs/{_SEG}/{_KIND}/secrets", lambda h, o, k: h._scope("org", o, k)),
]
for _kind, _prefix, _mk in _PREFIXES:
    n = 3 if _kind != "org" else 2
    route("GET", _prefix + "/public-key")(lambda h, b, *g, mk=_mk: _public_key(h, mk(h, *g)))
    route("GET", _prefix)(lambda h, b, *g, mk=_mk: h._list(mk(h, *g), urlsplit(h.path).path))
    route("GET", _prefix + f"/{_SEG}")(
        lambda h, b, *g, mk=_mk, n=n: (200, h._secret_json(h._get(mk(h, *g[:n]), g[n]), mk(h, *g[:n])), {})
    )
    route("PUT", _prefix + f"/{_SEG}")(lambda h, b, *g, mk=_mk, n=n: h._put(mk(h, *g[:n]), g[n], b))
    route("DELETE", _prefix + f"/{_SEG}")(lambda h, b, *g, mk=_mk, n=n: h._delete(mk(h, *g[:n]), g[n]))


def _org_selected(h: Handler, org: str, kind: str, name: str) -> StoredSecret:
    return h._get(h._scope("org", org, kind), name)


@route("GET", rf"/orgs/{_SEG}/{_KIND}/secrets/{_SEG}/repositories")
def _list_selected(h: Handler, body: dict[str, Any], org: str, kind: str, name: str) -> R:
    with h.st.lock:
        s = _org_selected(h, org, kind, name)
        repos = [
            h._repo(*h.st.repo_names[i].split("/", 1)) if i in h.st.repo_names else {"id": i}
            for i in s.selected_repository_ids
        ]
    return h._page(repos, "repositories", urlsplit(h.path).path)


@route("PUT", rf"/orgs/{_SEG}/{_KIND}/secrets/{_SEG}/repositories")
def _set_selected(h: Handler, body: dict[str, Any], org: str, kind: str, name: str) -> R:
    ids = _repo_ids(body.get("selected_repository_ids"), as_str=False)
    with h.st.lock:
        s = _org_selected(h, org, kind, name)
        if s.visibility != "selected":
            raise HttpError(409, "Conflict: the secret's visibility is not 'selected'.")
        s.selected_repository_ids = ids
        h.st.stats["put:selected_repositories"] += 1
    return 204, None, {}


@route("PUT", rf"/orgs/{_SEG}/{_KIND}/secrets/{_SEG}/repositories/(\d+)")
@route("DELETE", rf"/orgs/{_SEG}/{_KIND}/secrets/{_SEG}/repositories/(\d+)")
def _add_remove_selected(h: Handler, body: dict[str, Any], org: str, kind: str, name: str, rid: str) -> R:
    with h.st.lock:
        s = _org_selected(h, org, kind, name)
        if s.visibility != "selected":
            raise HttpError(409, "Conflict: the secret's visibility is not 'selected'.")
        ids = [i for i in s.selected_repository_ids if i != int(rid)]
        s.selected_repository_ids = [*ids, int(rid)] if h.command == "PUT" else ids
        h.st.stats[f"{h.command.lower()}:selected_repositories"] += 1
    return 204, None, {}


ROUTES = [(m, re.compile(p), fn) for m, p, fn in _routes]


class FakeGitHubServer(ThreadingHTTPServer):
    daemon_threads = True  # SO_REUSEADDR (inherited) still refuses a second listener on Linux

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str = DEFAULT_TOKEN,
        missing_pattern: str = "missing-*",
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.state = GitHubState(token, missing_pattern)
        super().__init__((host, port), Handler)
        self.tls = tls is not None
        if tls is not None:  # the handshake runs in the handler's thread (do_handshake_on_connect=False)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.host_port = f"{host}:{self.server_address[1]}"
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host_port}"

    def start(self) -> FakeGitHubServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fake-github", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(5)


def start_in_process(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> FakeGitHubServer:
    """Serve on a background thread; ``.base_url`` is e.g. ``http://127.0.0.1:PORT``. ``.stop()`` when done."""
    return FakeGitHubServer(host, port, **kwargs).start()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fake GitHub Actions secrets API")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    ap.add_argument("--token", default=DEFAULT_TOKEN, help="accepted as 'token X' or 'Bearer X'")
    ap.add_argument(
        "--missing-pattern",
        default="missing-*",
        help="fnmatch pattern: owners/repos/orgs/environments matching it answer 404",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="log request lines (never bodies)")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    server = FakeGitHubServer(args.host, args.port, token=args.token, missing_pattern=args.missing_pattern)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"fake GitHub Actions API listening on {server.base_url}", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
