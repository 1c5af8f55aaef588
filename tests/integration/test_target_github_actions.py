"""githubActions target end to end: PyGithub against the in-process fake GitHub API (no network, no test bed).

The fake opens every sealed box with its private key, so each assertion on `value` proves what GitHub would
hold; its request counters prove which writes happened.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from e2e.fakes.github_actions import FakeGitHubServer, start_in_process

from tests.kit.policy import with_grant
from vaultbundle.digest import Digester
from vaultbundle.egress import EgressPolicy
from vaultbundle.errors import TargetError
from vaultbundle.selection import SelectionError
from vaultbundle.spec import parse_selection
from vaultbundle.targets import load
from vaultbundle.targets.base import Owner, Plan, TargetContext
from vaultbundle.vault import Vault

PATH = "spec.targets[0].githubActions"
CREDENTIALS = {("gh-token", "token"): "testbed-token", ("gh-bad", "token"): "wrong-token"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGitHubServer]:
    running = start_in_process()
    yield running
    running.stop()


@pytest.fixture
def fake(server: FakeGitHubServer) -> FakeGitHubServer:
    server.state.reset()  # secrets and counters; one server per module keeps the tests fast
    return server


def stats(server: FakeGitHubServer) -> dict[str, int]:
    with server.state.lock:
        return dict(server.state.stats)


def held(server: FakeGitHubServer, **where: str) -> dict[str, str]:
    """NAME -> decrypted plaintext, for the secrets of one scope."""
    return {s["name"]: s["value"] for s in server.state.dump() if all(s.get(k) == v for k, v in where.items())}


def body(server: FakeGitHubServer, **fields: Any) -> dict[str, Any]:
    scope = {"repository": "acme/web"} if "organization" not in fields else {}
    return {
        **scope,
        "apiURL": server.base_url,
        "auth": {"tokenSecretRef": {"name": "gh-token"}},
        **fields,
    }


class Synced:
    def __init__(self, plan: Plan, status: dict[str, Any]) -> None:
        self.plan, self.status = plan, status


async def sync(
    raw: Mapping[str, Any],
    vault: Vault,
    previous: Mapping[str, Any] | None = None,
    credentials: Mapping[tuple[str, str], str] = CREDENTIALS,
) -> Synced:
    """One reconcile of this target, the way reconcile._sync_target drives a kind."""
    kind = load("githubActions")
    spec = kind.parse(raw, PATH)
    desired = kind.desired(vault, parse_selection(raw, PATH), spec)

    async def read_secret(name: str, key: str) -> str:
        return credentials[(name, key)]

    context = TargetContext(
        None,  # type: ignore[arg-type]  # no Kubernetes API: credentials come from read_secret
        Owner("ns", "web", "uid"),
        Digester(b"k" * 32),
        previous or {},
        read_secret,
        egress=EgressPolicy(allow_local=True),  # the fake listens on loopback
    )
    target = await kind.connect(spec, with_grant(context, kind.name, raw))
    plan = await target.plan(desired)
    if plan.changed:
        await target.apply(plan, desired)
    return Synced(plan, target.status_extra())


VAULT = Vault(kv={"DB_URL": "postgres://db/app", "API_KEY": "k-1"})


async def test_repository_create_then_idempotent_then_update_one(fake: FakeGitHubServer) -> None:
    raw = body(fake)
    first = await sync(raw, VAULT)
    assert sorted(first.plan.create) == ["API_KEY", "DB_URL"]
    assert held(fake, scope="repo", owner="acme", repo="web") == {"API_KEY": "k-1", "DB_URL": "postgres://db/app"}
    assert stats(fake)["put_created"] == 2
    assert first.status["remoteScope"] == "repository acme/web"
    assert set(first.status["remoteDigests"]) == {"API_KEY", "DB_URL"}
    assert all(d.startswith("hmac-sha256:") for d in first.status["remoteDigests"].values())
    assert "k-1" not in repr(first.status)

    before = stats(fake)
    second = await sync(raw, VAULT, first.status)
    assert not second.plan.changed and second.plan.unchanged == 2
    after = stats(fake)
    assert after.get("put", 0) == before["put"] and after.get("delete", 0) == 0  # a read-only cycle
    assert second.status == first.status

    changed = Vault(kv={"DB_URL": "postgres://db/app", "API_KEY": "k-2"})
    third = await sync(raw, changed, second.status)
    assert third.plan.update == ["API_KEY"] and third.plan.create == [] and third.plan.unchanged == 1
    assert stats(fake)["put"] == before["put"] + 1 and stats(fake)["put_updated"] == 1
    assert held(fake, scope="repo")["API_KEY"] == "k-2"
    assert third.status["remoteDigests"]["API_KEY"] != second.status["remoteDigests"]["API_KEY"]
    assert third.status["remoteDigests"]["DB_URL"] == second.status["remoteDigests"]["DB_URL"]


async def test_prune_removes_only_our_secrets_and_only_when_asked(fake: FakeGitHubServer) -> None:
    first = await sync(body(fake), VAULT)
    await _put_directly(fake, "THEIRS", "their value")  # someone else's secret, not in the bundle
    smaller = Vault(kv={"DB_URL": "postgres://db/app"})

    kept = await sync(body(fake), smaller, first.status)  # prune defaults to false for external stores
    assert kept.plan.delete == [] and not kept.plan.changed
    assert set(held(fake, scope="repo")) == {"API_KEY", "DB_URL", "THEIRS"}
    assert "API_KEY" in kept.status["remoteDigests"]  # still ours: a later prune may remove it

    pruned = await sync(body(fake, prune=True), smaller, kept.status)
    assert pruned.plan.delete == ["API_KEY"]
    assert held(fake, scope="repo") == {"DB_URL": "postgres://db/app", "THEIRS": "their value"}
    assert stats(fake)["delete"] == 1
    assert set(pruned.status["remoteDigests"]) == {"DB_URL"}


async def _put_directly(fake: FakeGitHubServer, name: str, value: str, repo: str = "acme/web") -> None:
    from github import Auth, Github

    client = Github(
        base_url=fake.base_url,
        auth=Auth.Token("testbed-token"),
        seconds_between_requests=0,
        seconds_between_writes=0,
    )
    client.get_repo(repo).create_secret(name, value)
    client.close()


async def test_unowned_secret_is_left_alone_unless_adopt(fake: FakeGitHubServer) -> None:
    await _put_directly(fake, "API_KEY", "theirs")
    puts = stats(fake)["put"]
    with pytest.raises(TargetError) as caught:
        await sync(body(fake), VAULT)
    assert caught.value.reason == "SecretNotOwned" and "API_KEY" in str(caught.value)
    assert "theirs" not in str(caught.value) and "k-1" not in str(caught.value)
    assert stats(fake)["put"] == puts  # nothing written, not even the unrelated DB_URL
    assert held(fake, scope="repo") == {"API_KEY": "theirs"}

    adopted = await sync(body(fake, adopt=True), VAULT)
    assert adopted.plan.update == ["API_KEY"] and adopted.plan.create == ["DB_URL"]
    assert held(fake, scope="repo") == {"API_KEY": "k-1", "DB_URL": "postgres://db/app"}
    # once adopted it is ours: without adopt the next cycle is a no-op, not a refusal
    again = await sync(body(fake), VAULT, adopted.status)
    assert not again.plan.changed


async def test_books_of_another_scope_are_not_trusted(fake: FakeGitHubServer) -> None:
    first = await sync(body(fake), VAULT)
    await _put_directly(fake, "API_KEY", "other repo's own", repo="acme/api")
    with pytest.raises(TargetError) as caught:  # same names in another repository are not ours
        await sync(body(fake, repository="acme/api"), VAULT, first.status)
    assert caught.value.reason == "SecretNotOwned"


@pytest.mark.parametrize(
    ("kv", "naming", "offenders"),
    [
        ({"GITHUB_TOKEN": "x", "OK": "y"}, None, ["GITHUB_TOKEN"]),
        ({"1ABC": "x"}, None, ["1ABC"]),
        ({"a.b": "x"}, {"case": "Upper"}, ["a.b"]),
        ({"lower": "x"}, None, ["lower"]),  # GitHub would upper-case it silently: refused unless case: Upper
        ({"github_x": "x"}, {"case": "Upper"}, ["github_x"]),
    ],
)
async def test_invalid_names_are_refused_before_any_request(
    fake: FakeGitHubServer, kv: dict[str, str], naming: dict[str, Any] | None, offenders: list[str]
) -> None:
    raw = body(fake, **({"naming": naming} if naming else {}))
    with pytest.raises(SelectionError) as caught:
        await sync(raw, Vault(kv=kv))
    for name in offenders:
        assert repr(name) in str(caught.value)
    assert stats(fake) == {}  # desired() failed: not one request reached GitHub


async def test_naming_transforms_and_collisions(fake: FakeGitHubServer) -> None:
    raw = body(fake, naming={"prefix": "app_", "case": "Upper", "dashesToUnderscores": True})
    result = await sync(raw, Vault(kv={"db-url": "u", "token": "t"}))
    assert held(fake, scope="repo") == {"APP_DB_URL": "u", "APP_TOKEN": "t"}
    assert set(result.status["remoteDigests"]) == {"APP_DB_URL", "APP_TOKEN"}

    fake.state.reset()
    with pytest.raises(SelectionError) as caught:
        await sync(body(fake, naming={"case": "Upper"}), Vault(kv={"db_url": "1", "DB_URL": "2"}))
    assert "'DB_URL' and 'db_url' both map to 'DB_URL'" in str(caught.value)
    assert stats(fake) == {}


async def test_environment_scope(fake: FakeGitHubServer) -> None:
    result = await sync(body(fake, environment="production"), VAULT)
    assert held(fake, scope="environment", environment="production") == {
        "API_KEY": "k-1",
        "DB_URL": "postgres://db/app",
    }
    assert held(fake, scope="repo") == {}
    assert result.status["remoteScope"] == "environment production of repository acme/web"
    again = await sync(body(fake, environment="production"), VAULT, result.status)
    assert not again.plan.changed


async def test_organization_scope_with_visibility(fake: FakeGitHubServer) -> None:
    raw = body(fake, organization="acme", visibility="selected", selectedRepositoryIds=[1001, 1002])
    first = await sync(raw, VAULT)
    org = [s for s in fake.state.dump() if s["scope"] == "org"]
    assert {s["name"]: s["value"] for s in org} == {"API_KEY": "k-1", "DB_URL": "postgres://db/app"}
    assert {s["visibility"] for s in org} == {"selected"}
    assert all(s["selected_repository_ids"] == [1001, 1002] for s in org)

    assert not (await sync(raw, VAULT, first.status)).plan.changed

    # visibility is part of what we wrote: changing it rewrites every secret, values unchanged
    private = await sync(body(fake, organization="acme"), VAULT, first.status)
    assert sorted(private.plan.update) == ["API_KEY", "DB_URL"]
    assert {s["visibility"] for s in fake.state.dump()} == {"private"}
    assert held(fake, scope="org") == {"API_KEY": "k-1", "DB_URL": "postgres://db/app"}

    # someone flips the visibility in the UI: the listing shows it and we put it back
    with fake.state.lock:
        next(iter(fake.state.secrets.values()))["API_KEY"].visibility = "all"
    fixed = await sync(body(fake, organization="acme"), VAULT, private.status)
    assert fixed.plan.update == ["API_KEY"]
    assert {s["visibility"] for s in fake.state.dump()} == {"private"}


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"repository": "acme/missing-repo"}, "repository acme/missing-repo"),
        ({"repository": "acme/web", "environment": "missing-env"}, "environment missing-env"),
        ({"organization": "missing-org"}, "organization missing-org"),
    ],
)
async def test_missing_scope_is_not_found(fake: FakeGitHubServer, fields: dict[str, str], where: str) -> None:
    raw = {k: v for k, v in body(fake).items() if k != "repository"} | fields
    with pytest.raises(TargetError) as caught:
        await sync(raw, VAULT)
    assert caught.value.reason == "NotFound" and where in str(caught.value)
    assert stats(fake).get("put", 0) == 0


async def test_bad_token_is_auth_failed(fake: FakeGitHubServer) -> None:
    raw = body(fake, auth={"tokenSecretRef": {"name": "gh-bad"}})
    with pytest.raises(TargetError) as caught:
        await sync(raw, VAULT)
    assert caught.value.reason == "AuthFailed"
    assert "wrong-token" not in str(caught.value) and "Bad credentials" not in str(caught.value)
    assert stats(fake).get("put", 0) == 0


async def test_unreachable_api_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from vaultbundle.targets import github_actions

    monkeypatch.setattr(github_actions, "RETRIES", 0)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    raw = {
        "repository": "acme/web",
        "apiURL": f"http://127.0.0.1:{port}",
        "auth": {"tokenSecretRef": {"name": "gh-token"}},
    }
    with pytest.raises(TargetError) as caught:
        await sync(raw, VAULT)
    assert caught.value.reason == "Unavailable"


def _app_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


async def test_github_app_auth(fake: FakeGitHubServer) -> None:
    app = {"appID": 42, "installationID": 7, "privateKeySecretRef": {"name": "gh-app"}}
    raw = body(fake, auth={"app": app})
    result = await sync(raw, VAULT, credentials={("gh-app", "private-key.pem"): _app_key()})
    assert held(fake, scope="repo") == {"API_KEY": "k-1", "DB_URL": "postgres://db/app"}
    assert not result.plan.unchanged

    with pytest.raises(TargetError) as caught:
        await sync(raw, VAULT, credentials={("gh-app", "private-key.pem"): "-----BEGIN NOPE-----"})
    assert caught.value.reason == "AuthFailed" and "NOPE" not in str(caught.value)


async def test_values_must_be_text_unless_files_are_base64(fake: FakeGitHubServer) -> None:
    vault = Vault(kv={"TOKEN": "t"}, files={"certs/key.der": b"\xff\x00\x01"})
    raw = body(fake, files={"include": ["certs/*"], "rename": {"certs/key.der": "KEY_DER"}})
    with pytest.raises(SelectionError) as caught:
        await sync(raw, vault)
    assert "'KEY_DER' is not UTF-8 text" in str(caught.value) and "encodeFilesBase64" in str(caught.value)
    assert stats(fake) == {}

    await sync({**raw, "encodeFilesBase64": True}, vault)
    assert held(fake, scope="repo") == {"TOKEN": "t", "KEY_DER": base64.b64encode(b"\xff\x00\x01").decode()}


async def test_deleted_behind_our_back_is_recreated(fake: FakeGitHubServer) -> None:
    first = await sync(body(fake), VAULT)
    with fake.state.lock:
        del next(iter(fake.state.secrets.values()))["API_KEY"]
    again = await sync(body(fake), VAULT, first.status)
    assert again.plan.create == ["API_KEY"] and again.plan.unchanged == 1
    assert held(fake, scope="repo")["API_KEY"] == "k-1"
