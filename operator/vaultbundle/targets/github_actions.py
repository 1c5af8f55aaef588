"""GitHub Actions secrets target: repository, environment or organisation secrets, written with PyGithub.

GitHub secrets are write-only and carry no metadata, so this target keeps its own books in status:
`remoteDigests` maps every secret name this target created (or adopted) to a keyed digest (HMAC under the
operator's key, never a plain hash) of the value it last wrote, and `remoteScope` says where they live.
Ownership is that set of names: a secret of the same name that we did not create is left alone and reported
(`SecretNotOwned`) unless `adopt: true`; `prune: true` deletes only names from the set. An unchanged digest
means no write. Values are sealed with the scope's public key (libsodium sealed box) before they leave.

With `storeRef` a cluster admin's ClusterTargetStore supplies the API URL and the token or GitHub App (its
Secrets live in the operator's namespace), and the target's repository (and environment) or organization must lie
in the store's scope: checked by `authorize` on the spec and again here before every read and write
(`BoundScope.check_github`).

PyGithub is synchronous: every call runs in a worker thread. It is imported lazily, so spec parsing works
without the `github` extra.
"""

from __future__ import annotations

import base64
import contextlib
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .. import stores
from ..errors import PolicyDeniedError, Reason, SpecError, TargetError
from ..fields import SecretRef, Selection, boolean, obj, positive_integer, secret_ref, string
from ..selection import SelectionError, select
from ..vault import Vault
from .base import Plan, StoreKind, TargetContext
from .checks import is_loopback, is_utf8
from .credentials import Credentials, credentials_for
from .errormap import Messages, reason_for_status, translated
from .naming import NameRule, Naming, parse_naming, remote_names
from .ownership import claim
from .threads import ThreadedTarget, in_thread

if TYPE_CHECKING:
    from github import Auth, Github

DEFAULT_API_URL = "https://api.github.com"
# PyGithub's pacing (its defaults) keeps us clear of GitHub's secondary rate limits; it is skipped only when
# apiURL is a loopback address (a local fake or a port-forward in tests), where it would only slow things down.
SECONDS_BETWEEN_REQUESTS = 0.25
SECONDS_BETWEEN_WRITES = 1.0
REQUEST_TIMEOUT = 15  # seconds per HTTP request
RETRIES = 3  # transient 5xx / connection errors, with backoff
MAX_RATE_LIMIT_WAIT = 10.0  # seconds; a longer rate-limit wait fails the target with Throttled (retried later)
MAX_VALUE_BYTES = 48 * 1024  # GitHub's limit per secret value
VISIBILITIES = ("all", "private", "selected")

NAME_RULE = NameRule(
    store="GitHub Actions",
    pattern=re.compile(r"[A-Z_][A-Z0-9_]*"),
    max_length=255,
    description=(
        "only upper-case letters, digits and '_', not starting with a digit "
        "(GitHub upper-cases names; set naming.case: Upper to accept lower-case bundle keys)"
    ),
    forbidden_prefixes=("GITHUB_",),
)

_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_ORGANIZATION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")


@dataclass(frozen=True)
class GitHubApp:
    app_id: str
    installation_id: int
    private_key_ref: SecretRef


@dataclass(frozen=True)
class GitHubActionsSpec:
    repository: str = ""  # "owner/name", or
    organization: str = ""
    environment: str = ""  # repository scope only
    visibility: str = "private"  # organization scope only
    selected_repository_ids: tuple[int, ...] = ()
    api_url: str = DEFAULT_API_URL
    token_ref: SecretRef | None = None
    app: GitHubApp | None = None
    naming: Naming = field(default_factory=Naming)
    encode_files_base64: bool = False
    adopt: bool = False
    prune: bool = False

    @property
    def scope(self) -> str:
        """Where the secrets live; status books kept for another scope are not trusted."""
        if self.organization:
            return f"organization {self.organization}"
        if self.environment:
            return f"environment {self.environment} of repository {self.repository}"
        return f"repository {self.repository}"


def _api_url(value: Any, path: str) -> str:
    url = string(value, path, default=DEFAULT_API_URL).rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise SpecError(f"{path} must be an http(s) URL like {DEFAULT_API_URL} or https://ghe.example.com/api/v3")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise SpecError(f"{path}: plain http is only allowed for a loopback address (the token would travel in clear)")
    return url


def _repository_ids(value: Any, path: str, visibility: str) -> tuple[int, ...]:
    if value is not None and visibility != "selected":
        raise SpecError(f"{path} is only allowed with visibility: selected")
    if value is not None and not isinstance(value, list):
        raise SpecError(f"{path} must be a list of repository ids")
    ids = tuple(positive_integer(v, f"{path}[{i}]") for i, v in enumerate(value or []))
    if len(set(ids)) != len(ids):
        raise SpecError(f"{path} lists a repository twice")
    return ids


def _auth(value: Any, path: str) -> tuple[SecretRef | None, GitHubApp | None]:
    """Exactly one of a token Secret or a GitHub App (its ids and private-key Secret)."""
    auth = obj(value, path)
    token_raw, app_raw = auth.get("tokenSecretRef"), auth.get("app")
    if (token_raw is None) == (app_raw is None):
        raise SpecError(f"{path} must set exactly one of tokenSecretRef or app (GitHub has no ambient identity)")
    if token_raw is not None:
        return secret_ref(token_raw, f"{path}.tokenSecretRef", "token"), None
    app_body = obj(app_raw, f"{path}.app")
    app_id_raw = app_body.get("appID")
    if isinstance(app_id_raw, int) and not isinstance(app_id_raw, bool):
        app_id = str(positive_integer(app_id_raw, f"{path}.app.appID"))
    else:  # a numeric id or an app's client ID (Iv1...)
        app_id = string(app_id_raw, f"{path}.app.appID", required=True)
    installation = positive_integer(app_body.get("installationID"), f"{path}.app.installationID")
    key_ref = secret_ref(app_body.get("privateKeySecretRef"), f"{path}.app.privateKeySecretRef", "private-key.pem")
    return None, GitHubApp(app_id=app_id, installation_id=installation, private_key_ref=key_ref)


class GitHubActionsKind(StoreKind):
    name = "githubActions"
    extra = "github"
    sdk = ("github", "nacl")

    def parse(self, raw: Mapping[str, Any], path: str) -> GitHubActionsSpec:
        repository = string(raw.get("repository"), f"{path}.repository")
        organization = string(raw.get("organization"), f"{path}.organization")
        if bool(repository) == bool(organization):
            raise SpecError(f"{path} must set exactly one of repository or organization")
        if repository and not _REPOSITORY.fullmatch(repository):
            raise SpecError(f"{path}.repository must look like owner/name")
        if organization and not _ORGANIZATION.fullmatch(organization):
            raise SpecError(f"{path}.organization must be a GitHub organization login (letters, digits, '-')")
        environment = string(raw.get("environment"), f"{path}.environment")
        if environment and organization:
            raise SpecError(f"{path}.environment is only allowed with repository")
        if len(environment) > 255 or "/" in environment:
            raise SpecError(f"{path}.environment must be an environment name (at most 255 characters, no '/')")
        visibility = string(raw.get("visibility"), f"{path}.visibility", default="private")
        if raw.get("visibility") is not None and not organization:
            raise SpecError(f"{path}.visibility is only allowed with organization")
        if visibility not in VISIBILITIES:
            raise SpecError(f"{path}.visibility must be one of {', '.join(VISIBILITIES)}")
        ids = _repository_ids(raw.get("selectedRepositoryIds"), f"{path}.selectedRepositoryIds", visibility)
        token_ref: SecretRef | None = None
        app: GitHubApp | None = None
        if raw.get("storeRef") is None or raw.get("auth") is not None:  # with storeRef: the store's auth
            token_ref, app = _auth(raw.get("auth"), f"{path}.auth")
        return GitHubActionsSpec(
            repository=repository,
            organization=organization,
            environment=environment,
            visibility=visibility,
            selected_repository_ids=ids,
            api_url=_api_url(raw.get("apiURL"), f"{path}.apiURL"),
            token_ref=token_ref,
            app=app,
            naming=parse_naming(raw.get("naming"), f"{path}.naming"),
            encode_files_base64=boolean(raw.get("encodeFilesBase64"), f"{path}.encodeFilesBase64", False),
            adopt=boolean(raw.get("adopt"), f"{path}.adopt", False),
            prune=boolean(raw.get("prune"), f"{path}.prune", False),
        )

    def desired(self, vault: Vault, selection: Selection, spec: GitHubActionsSpec) -> dict[str, bytes]:
        """Remote name -> UTF-8 value; names checked against GitHub's rule, values must be text."""
        selected = select(vault, selection)
        from_files = set(select(vault, replace(selection, include_keys=()))) if selection.include_files else set()
        values: dict[str, bytes] = {}
        problems: list[str] = []
        for name, raw in selected.items():
            value = base64.b64encode(raw) if name in from_files and spec.encode_files_base64 else raw
            if not is_utf8(value):
                hint = " (set encodeFilesBase64: true to send files base64-encoded)" if name in from_files else ""
                problems.append(f"{name!r} is not UTF-8 text{hint}")
                continue
            if len(value) > MAX_VALUE_BYTES:
                problems.append(f"{name!r} is larger than GitHub's {MAX_VALUE_BYTES // 1024} KB limit")
                continue
            values[name] = value
        if problems:
            raise SelectionError("GitHub secrets must be text: " + "; ".join(sorted(problems)))
        return remote_names(values, spec.naming, NAME_RULE)

    async def connect(self, spec: GitHubActionsSpec, context: TargetContext) -> GitHubActionsTarget:
        from github import Auth, Github, GithubRetry  # the `github` extra

        if urllib.parse.urlsplit(spec.api_url).scheme == "http" and not context.allow_local:
            raise PolicyDeniedError(
                f"apiURL {spec.api_url} is plain http: allowed only on a test bed, where the operator runs with "
                "--egress-allow-local; use https"
            )
        credentials: Credentials = credentials_for(context, self.name, spec.api_url)
        grant = context.grant
        scope: stores.BoundScope | None = None
        if grant is not None and grant.store is not None:
            spec, auth = await _from_store(spec, grant, credentials)
            scope = grant.scope
        else:
            auth = await _tenant_auth(spec, credentials)
        pace = not is_loopback(urllib.parse.urlsplit(spec.api_url).hostname)
        client = Github(
            base_url=spec.api_url,
            auth=auth,
            timeout=REQUEST_TIMEOUT,
            retry=GithubRetry(total=RETRIES, max_rate_limit_wait=MAX_RATE_LIMIT_WAIT),
            seconds_between_requests=SECONDS_BETWEEN_REQUESTS if pace else 0,
            seconds_between_writes=SECONDS_BETWEEN_WRITES if pace else 0,
        )
        if isinstance(auth, Auth.AppInstallationAuth):  # fetch the installation token now: precise errors
            with _errors("GitHub App installation"):
                await in_thread(lambda: auth.token)
        return GitHubActionsTarget(client, spec, context, scope=scope)


async def _tenant_auth(spec: GitHubActionsSpec, credentials: Credentials) -> Auth.Auth:
    """The target's own token or App, from Secrets of the VaultBundle's namespace."""
    from github import Auth

    if spec.app is not None:
        ref = spec.app.private_key_ref
        pem = await credentials.secret(ref)
        return _app_auth(spec.app.app_id, spec.app.installation_id, pem, f"Secret {ref.name!r} key {ref.key!r}")
    if spec.token_ref is None:  # parse requires auth without storeRef
        raise SpecError("githubActions.auth is required (or storeRef)")
    return Auth.Token(await credentials.secret(spec.token_ref))


async def _from_store(
    spec: GitHubActionsSpec, grant: stores.Grant, credentials: Credentials
) -> tuple[GitHubActionsSpec, Auth.Auth]:
    """The spec with the ClusterTargetStore's API URL, and its token or App from the OPERATOR's namespace."""
    from github import Auth

    connection = grant.connection
    assert isinstance(connection, stores.GitHubConnection)  # authorize's contract for GitHub
    spec = replace(spec, api_url=connection.api_url.rstrip("/"), token_ref=None, app=None)
    auth = connection.auth
    if auth.method == "app":
        ref = auth.private_key_secret_ref
        assert ref is not None  # parse_store's contract
        pem = await credentials.store_secret(ref, "key")
        where = f"the ClusterTargetStore's Secret {ref.name!r} key {ref.key('key')!r}"
        return spec, _app_auth(auth.app_id, auth.installation_id, pem, where)
    assert auth.token_secret_ref is not None  # parse_store's contract
    return spec, Auth.Token(await credentials.store_secret(auth.token_secret_ref, "key"))


def _app_auth(app_id: str, installation_id: int, pem: str, where: str) -> Auth.Auth:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from github import Auth

    try:
        load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError):
        raise TargetError(
            Reason.AUTH_FAILED, f"{where} is not an unencrypted PEM private key of a GitHub App"
        ) from None
    return Auth.AppAuth(app_id, pem).get_installation_auth(installation_id)


_MESSAGES = Messages(
    {
        Reason.AUTH_FAILED: "{what}: GitHub rejected the credentials ({status})",
        Reason.NOT_FOUND: "{what}: not found ({status}), or the credentials cannot see it",
        Reason.THROTTLED: "{what}: GitHub rate limit exceeded ({status}); retrying later",
        Reason.FORBIDDEN: "{what}: access denied ({status}); the token or App needs secrets read/write permission",
        Reason.REJECTED: "{what}: GitHub rejected the request ({status})",
        Reason.CONFLICT: "{what}: GitHub answered {status}: changed concurrently; retrying",
        Reason.UNAVAILABLE: "{what}: GitHub answered {status}; retrying later",
        Reason.STORE_API_ERROR: "{what}: GitHub answered {status}",
    }
)


def _errors(what: str) -> contextlib.AbstractContextManager[None]:
    """SDK errors -> TargetError with a fixed message: GitHub's error bodies are never copied into status."""
    import requests
    from github import GithubException, RateLimitExceededException

    def to_error(exc: Exception) -> TargetError:
        if isinstance(exc, RateLimitExceededException):
            return _MESSAGES.error(Reason.THROTTLED, what, status=exc.status)
        if isinstance(exc, GithubException):
            reason = reason_for_status(exc.status, default=Reason.STORE_API_ERROR)
            return _MESSAGES.error(reason, what, status=exc.status)
        return TargetError(Reason.UNAVAILABLE, f"{what}: GitHub API unreachable ({type(exc).__name__})")

    return translated((GithubException, requests.RequestException), to_error)


@dataclass
class StoreState:
    """What plan() read: the secrets' base URL and the names (and org visibilities) that exist."""

    url: str
    names: dict[str, str | None]  # NAME -> visibility (organization scope) or None


class GitHubActionsTarget(ThreadedTarget[StoreState]):
    def __init__(
        self, client: Github, spec: GitHubActionsSpec, context: TargetContext, scope: stores.BoundScope | None = None
    ) -> None:
        self.client, self.spec, self.digester = client, spec, context.digester
        self.resync = context.resync  # resyncInterval passed: PUT every key again (GitHub never shows values)
        self.scope = scope  # a ClusterTargetStore's scope: checked before every read and write
        previous = context.previous
        books = previous.get("remoteDigests") if previous.get("remoteScope") == spec.scope else None
        # name -> digest of what we last wrote; the keys are the secrets this target owns
        self.owned: dict[str, str] = {str(k): str(v) for k, v in books.items()} if isinstance(books, Mapping) else {}

    def describe(self) -> str:
        return f"GitHub Actions {self.spec.scope}"

    def status_extra(self) -> dict[str, Any]:
        return {"remoteScope": self.spec.scope, "remoteDigests": dict(sorted(self.owned.items()))}

    def _digest(self, name: str, value: bytes) -> str:
        items = {name: value}
        if self.spec.organization:  # visibility is part of what we wrote ('#' never occurs in a name)
            ids = ",".join(str(i) for i in self.spec.selected_repository_ids)
            items[f"{name}#visibility"] = f"{self.spec.visibility}:{ids}".encode()
        return self.digester.digest(items)

    # ---- reads ---------------------------------------------------------------------------------
    def _read_remote(self) -> StoreState:
        spec = self.spec
        if spec.organization:
            with _errors(f"organization {spec.organization}"):
                org = self.client.get_organization(spec.organization)
                listing: Any = org.get_secrets("actions")
                names = {s.name.upper(): s.visibility for s in listing}
                return StoreState(f"{org.url}/actions/secrets", names)
        with _errors(f"repository {spec.repository}"):
            repo = self.client.get_repo(spec.repository)
            base = f"{repo.url}/actions/secrets"
            if not spec.environment:
                return StoreState(base, {s.name.upper(): None for s in repo.get_secrets("actions")})
        with _errors(spec.scope):
            env = repo.get_environment(spec.environment)
            return StoreState(f"{env.url}/secrets", {s.name.upper(): None for s in env.get_secrets()})

    def _check_scope(self) -> None:
        """With a ClusterTargetStore: the repository (and environment) or organization is (still) in scope."""
        if self.scope is not None:
            spec = self.spec
            self.scope.check_github(spec.repository, spec.environment, spec.organization, spec.visibility)

    def _check_selected_repositories(self) -> None:
        """With a ClusterTargetStore: every repository an organization secret is shared with is in scope too (read
        by id before anything is written)."""
        if self.scope is None or not self.spec.organization:
            return
        for repository_id in self.spec.selected_repository_ids:
            with _errors(f"repository id {repository_id}"):
                name = self.client.get_repo(repository_id).full_name
            self.scope.check_repository(name)

    def _plan(self, desired: Mapping[str, bytes]) -> Plan[StoreState]:
        self._check_scope()
        self._check_selected_repositories()
        remote = self._read_remote()
        # GitHub secrets carry no metadata: ours are the names this target recorded in status
        claim(
            {name: name if name in remote.names else None for name in desired},
            owner_of=lambda name: "this target" if name in self.owned else None,
            me="this target",
            adopt=self.spec.adopt,
            where=self.describe(),
            marker="not created by this target: not in its status remoteDigests",
        )
        plan = Plan(state=remote)
        for name, value in desired.items():
            drift = self.spec.organization and remote.names.get(name) != self.spec.visibility
            if name not in remote.names:
                plan.create.append(name)
            elif self.resync or self.owned.get(name) != self._digest(name, value) or drift:
                plan.update.append(name)
            else:
                plan.unchanged += 1
        # secrets we created that someone else deleted meanwhile: nothing left to own
        for name in [n for n in self.owned if n not in remote.names and n not in desired]:
            del self.owned[name]
        if self.spec.prune:
            plan.delete = sorted(name for name in self.owned if name not in desired)
        return plan

    # ---- writes --------------------------------------------------------------------------------
    def _apply(self, plan: Plan[StoreState], desired: Mapping[str, bytes]) -> None:
        from github import UnknownObjectException

        self._check_scope()
        remote = plan.state
        assert remote is not None
        requester = self.client.requester
        writes = sorted(plan.create + plan.update)
        if writes:
            with _errors(f"{self.spec.scope}: public key"):
                key_url = f"{remote.url}/public-key"
                _, data = requester.requestJsonAndCheck("GET", key_url)
                key_id, public_key = str(data["key_id"]), str(data["key"])
        for name in writes:
            body: dict[str, Any] = {"key_id": key_id, "encrypted_value": _seal(public_key, desired[name])}
            if self.spec.organization:
                body["visibility"] = self.spec.visibility
                if self.spec.visibility == "selected":
                    body["selected_repository_ids"] = list(self.spec.selected_repository_ids)
            with _errors(f"{self.spec.scope}: writing {name}"):
                requester.requestJsonAndCheck("PUT", f"{remote.url}/{urllib.parse.quote(name, safe='')}", input=body)
            self.owned[name] = self._digest(name, desired[name])
        for name in plan.delete:
            with _errors(f"{self.spec.scope}: deleting {name}"), contextlib.suppress(UnknownObjectException):
                requester.requestJsonAndCheck("DELETE", f"{remote.url}/{urllib.parse.quote(name, safe='')}")
            self.owned.pop(name, None)  # deleted, or already gone (404)


def _seal(public_key_b64: str, value: bytes) -> str:
    """libsodium sealed box to the scope's Curve25519 public key, as GitHub requires."""
    from nacl.public import PublicKey, SealedBox

    box = SealedBox(PublicKey(base64.b64decode(public_key_b64)))
    return base64.b64encode(box.encrypt(value)).decode("ascii")


KIND = GitHubActionsKind()
