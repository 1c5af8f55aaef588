"""Drive the two e2e fakes (e2e/fakes) in-process with the real client libraries.

Run: .venv/bin/python -m pytest tests/e2e/test_fakes.py -q -p no:cacheprovider
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google_crc32c
import grpc
import pytest
import requests
from github import Auth, Github, GithubException, UnknownObjectException
from google.api_core import exceptions as gexc
from google.protobuf import field_mask_pb2
from nacl.public import PrivateKey, PublicKey, SealedBox

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from e2e.fakes import gcp_secret_manager as gsm  # noqa: E402
from e2e.fakes import github_actions as gha  # noqa: E402

PROJECT = "projects/test-project"
TOKEN = "unit-token"


# ============================================================================ GCP Secret Manager
@pytest.fixture(scope="module")
def gcp_server() -> Iterator[gsm.FakeSecretManagerServer]:
    server = gsm.start_in_process()
    yield server
    server.stop()


@pytest.fixture()
def gcp(gcp_server: gsm.FakeSecretManagerServer) -> Any:
    gcp_server.state.reset()
    return gsm.make_client(f"127.0.0.1:{gcp_server.port}")


def _create(client: Any, secret_id: str, **secret: Any) -> Any:
    return client.create_secret(
        request={"parent": PROJECT, "secret_id": secret_id, "secret": {"replication": {"automatic": {}}, **secret}}
    )


def test_gcp_create_get_duplicate_and_validation(gcp: Any, gcp_server: gsm.FakeSecretManagerServer) -> None:
    created = _create(gcp, "db-password", labels={"team": "core"}, annotations={"owner": "ops"})
    assert created.name == f"{PROJECT}/secrets/db-password"
    assert created.replication.automatic is not None and "automatic" in created.replication
    assert created.etag.startswith('"') and created.create_time.year >= 2024
    got = gcp.get_secret(name=created.name)
    assert dict(got.labels) == {"team": "core"} and dict(got.annotations) == {"owner": "ops"}
    assert got.etag == created.etag

    with pytest.raises(gexc.AlreadyExists):
        _create(gcp, "db-password")
    for bad_id in ("has.dot", "", "x" * 256, "slash/id"):
        with pytest.raises(gexc.InvalidArgument):
            _create(gcp, bad_id)
    with pytest.raises(gexc.InvalidArgument):  # replication is required on the global endpoint
        gcp.create_secret(request={"parent": PROJECT, "secret_id": "norepl", "secret": {}})
    with pytest.raises(gexc.InvalidArgument):  # label keys must be lower-case
        _create(gcp, "badlabel", labels={"Team": "x"})
    with pytest.raises(gexc.NotFound):
        gcp.get_secret(name=f"{PROJECT}/secrets/nope")
    assert list(gcp_server.state.snapshot()) == [created.name]


def test_gcp_versions_access_latest_and_crc(gcp: Any, gcp_server: gsm.FakeSecretManagerServer) -> None:
    secret = _create(gcp, "api-key")
    v1 = gcp.add_secret_version(
        request={"parent": secret.name, "payload": {"data": b"first", "data_crc32c": google_crc32c.value(b"first")}}
    )
    assert v1.name.endswith("/versions/1") and v1.state == v1.State.ENABLED
    assert v1.client_specified_payload_checksum is True
    v2 = gcp.add_secret_version(request={"parent": secret.name, "payload": {"data": "zweite ✓".encode()}})
    assert v2.name.endswith("/versions/2") and v2.client_specified_payload_checksum is False

    resp = gcp.access_secret_version(name=f"{secret.name}/versions/latest")
    assert resp.name == v2.name  # the alias resolves to the concrete version name
    assert resp.payload.data == "zweite ✓".encode()
    assert resp.payload.data_crc32c == google_crc32c.value(resp.payload.data)
    assert gcp.access_secret_version(name=v1.name).payload.data == b"first"
    assert gcp.get_secret_version(name=f"{secret.name}/versions/latest").name == v2.name

    before = gcp_server.state.calls["AddSecretVersion"]
    with pytest.raises(gexc.InvalidArgument):  # a corrupted upload is rejected, nothing stored
        gcp.add_secret_version(
            request={
                "parent": secret.name,
                "payload": {"data": b"tampered", "data_crc32c": google_crc32c.value(b"original")},
            }
        )
    assert gcp_server.state.calls["AddSecretVersion"] == before + 1
    assert sorted(gcp_server.state.snapshot()[secret.name]["versions"]) == [1, 2]
    with pytest.raises(gexc.NotFound):
        gcp.add_secret_version(request={"parent": f"{PROJECT}/secrets/nope", "payload": {"data": b"x"}})
    with pytest.raises(gexc.NotFound):
        gcp.access_secret_version(name=f"{secret.name}/versions/7")
    empty = _create(gcp, "no-versions")
    with pytest.raises(gexc.NotFound):
        gcp.access_secret_version(name=f"{empty.name}/versions/latest")


def test_gcp_list_filter_and_pagination(gcp: Any) -> None:
    _create(gcp, "a1", labels={"managed-by": "vaultbundle", "team": "a"})
    _create(gcp, "a2", labels={"managed-by": "vaultbundle", "team": "b"})
    _create(gcp, "a3", labels={"team": "a"})
    _create(gcp, "a4")
    gcp.create_secret(
        request={
            "parent": "projects/other",
            "secret_id": "a5",
            "secret": {"replication": {"automatic": {}}, "labels": {"team": "a"}},
        }
    )

    def names(flt: str = "", **kw: Any) -> list[str]:
        pager = gcp.list_secrets(request={"parent": PROJECT, "filter": flt, **kw})
        return [s.name.rsplit("/", 1)[1] for s in pager]

    assert names() == ["a1", "a2", "a3", "a4"]
    assert names("labels.managed-by=vaultbundle") == ["a1", "a2"]
    assert names("labels.team:*") == ["a1", "a2", "a3"]
    assert names("labels.team=a AND labels.managed-by:*") == ["a1"]
    assert names("NOT labels.managed-by:*") == ["a3", "a4"]
    assert names("labels.team=zzz") == []
    with pytest.raises(gexc.InvalidArgument):
        names("labels.team=a OR labels.team=b")

    first = gcp.list_secrets(request={"parent": PROJECT, "page_size": 3})
    pages = list(first.pages)
    assert [len(p.secrets) for p in pages] == [3, 1]
    assert pages[0].next_page_token and not pages[1].next_page_token
    assert pages[0].total_size == 4


def test_gcp_update_labels_with_mask_and_etags(gcp: Any) -> None:
    secret = _create(gcp, "cfg", labels={"a": "1"}, annotations={"note": "keep"})
    updated = gcp.update_secret(
        request={
            "secret": {"name": secret.name, "labels": {"b": "2"}, "annotations": {"note": "ignored"}},
            "update_mask": field_mask_pb2.FieldMask(paths=["labels"]),
        }
    )
    assert dict(updated.labels) == {"b": "2"}
    assert dict(updated.annotations) == {"note": "keep"}  # not in the mask -> untouched
    assert updated.etag != secret.etag
    assert gcp.get_secret(name=secret.name).etag == updated.etag

    with pytest.raises(gexc.FailedPrecondition):  # stale etag
        gcp.update_secret(
            request={
                "secret": {"name": secret.name, "etag": secret.etag, "labels": {"c": "3"}},
                "update_mask": {"paths": ["labels"]},
            }
        )
    ok = gcp.update_secret(
        request={
            "secret": {"name": secret.name, "etag": updated.etag, "annotations": {"x": "y"}},
            "update_mask": {"paths": ["annotations"]},
        }
    )
    assert dict(ok.annotations) == {"x": "y"} and dict(ok.labels) == {"b": "2"}
    with pytest.raises(gexc.InvalidArgument):  # update_mask is required
        gcp.update_secret(request={"secret": {"name": secret.name, "labels": {"c": "3"}}})
    with pytest.raises(gexc.InvalidArgument):  # replication is immutable
        gcp.update_secret(request={"secret": {"name": secret.name}, "update_mask": {"paths": ["replication"]}})
    with pytest.raises(gexc.NotFound):
        gcp.update_secret(request={"secret": {"name": f"{PROJECT}/secrets/nope"}, "update_mask": {"paths": ["labels"]}})


def test_gcp_disable_enable_destroy(gcp: Any, gcp_server: gsm.FakeSecretManagerServer) -> None:
    secret = _create(gcp, "rotating")
    v1 = gcp.add_secret_version(request={"parent": secret.name, "payload": {"data": b"one"}})
    v2 = gcp.add_secret_version(request={"parent": secret.name, "payload": {"data": b"two"}})

    disabled = gcp.disable_secret_version(name=v2.name)
    assert disabled.state == disabled.State.DISABLED and disabled.etag != v2.etag
    with pytest.raises(gexc.FailedPrecondition):  # latest = most recently created, even if disabled
        gcp.access_secret_version(name=f"{secret.name}/versions/latest")
    with pytest.raises(gexc.FailedPrecondition):
        gcp.enable_secret_version(request={"name": v2.name, "etag": v2.etag})  # stale etag
    gcp.enable_secret_version(request={"name": v2.name, "etag": disabled.etag})
    assert gcp.access_secret_version(name=f"{secret.name}/versions/latest").payload.data == b"two"

    destroyed = gcp.destroy_secret_version(name=v2.name)
    assert destroyed.state == destroyed.State.DESTROYED and destroyed.destroy_time is not None
    assert gcp_server.state.snapshot()[secret.name]["versions"][2]["data"] is None  # data really gone
    with pytest.raises(gexc.FailedPrecondition):
        gcp.access_secret_version(name=v2.name)
    with pytest.raises(gexc.FailedPrecondition):
        gcp.enable_secret_version(name=v2.name)
    with pytest.raises(gexc.FailedPrecondition):
        gcp.destroy_secret_version(name=v2.name)
    assert gcp.access_secret_version(name=v1.name).payload.data == b"one"

    listed = list(gcp.list_secret_versions(request={"parent": secret.name}))
    assert [(v.name.rsplit("/", 1)[1], v.state.name) for v in listed] == [("2", "DESTROYED"), ("1", "ENABLED")]
    enabled = list(gcp.list_secret_versions(request={"parent": secret.name, "filter": "state:ENABLED"}))
    assert [v.name for v in enabled] == [v1.name]
    v3 = gcp.add_secret_version(request={"parent": secret.name, "payload": {"data": b"three"}})
    assert v3.name.endswith("/versions/3")  # numbering never reuses destroyed ids


def test_gcp_delete_honours_etag_and_counts_writes(gcp: Any, gcp_server: gsm.FakeSecretManagerServer) -> None:
    secret = _create(gcp, "doomed")
    gcp.add_secret_version(request={"parent": secret.name, "payload": {"data": b"x"}})
    relabelled = gcp.update_secret(
        request={"secret": {"name": secret.name, "labels": {"l": "v"}}, "update_mask": {"paths": ["labels"]}}
    )
    with pytest.raises(gexc.FailedPrecondition):
        gcp.delete_secret(request={"name": secret.name, "etag": secret.etag})
    gcp.delete_secret(request={"name": secret.name, "etag": relabelled.etag})
    with pytest.raises(gexc.NotFound):
        gcp.get_secret(name=secret.name)
    with pytest.raises(gexc.NotFound):
        gcp.delete_secret(name=secret.name)
    assert gcp_server.state.snapshot() == {}
    assert gcp_server.state.write_calls() == {
        "CreateSecret": 1,
        "AddSecretVersion": 1,
        "UpdateSecret": 1,
        "DeleteSecret": 3,
    }
    assert gcp_server.state.calls["GetSecret"] == 1


def test_gcp_project_numbers_like_the_real_api() -> None:
    with gsm.FakeSecretManagerServer(project_numbers={"my-proj": "123456"}) as server:
        client = gsm.make_client(server.address)
        created = client.create_secret(
            request={"parent": "projects/my-proj", "secret_id": "s", "secret": {"replication": {"automatic": {}}}}
        )
        assert created.name == "projects/123456/secrets/s"
        assert client.get_secret(name="projects/my-proj/secrets/s").name == created.name


# ============================================================================ GitHub Actions
def _github(base_url: str, auth: Auth.Auth) -> Github:
    # PyGithub throttles writes to one per second by default; the fake needs no throttling.
    return Github(base_url=base_url, auth=auth, retry=None, seconds_between_requests=0, seconds_between_writes=0)


@pytest.fixture(scope="module")
def gh_server() -> Iterator[gha.FakeGitHubServer]:
    server = gha.start_in_process(token=TOKEN)
    yield server
    server.stop()


@pytest.fixture()
def gh(gh_server: gha.FakeGitHubServer) -> Github:
    assert requests.post(f"{gh_server.base_url}/_fake/reset", timeout=5).status_code == 204
    return _github(gh_server.base_url, Auth.Token(TOKEN))


def _fake_secrets(server: gha.FakeGitHubServer) -> list[dict[str, Any]]:
    resp = requests.get(f"{server.base_url}/_fake/secrets", timeout=5)
    resp.raise_for_status()
    return resp.json()  # type: ignore[no-any-return]


def _stats(server: gha.FakeGitHubServer) -> dict[str, int]:
    return requests.get(f"{server.base_url}/_fake/stats", timeout=5).json()  # type: ignore[no-any-return]


def test_github_repo_secret_lifecycle(gh: Github, gh_server: gha.FakeGitHubServer) -> None:
    repo = gh.get_repo("octo/app")
    assert repo.url == f"{gh_server.base_url}/repos/octo/app"
    plaintext = "p@ss wörd ✓\nline2"
    repo.create_secret("db_password", plaintext)
    repo.create_secret("DB_PASSWORD", plaintext + "-v2")  # names are case-insensitive -> update
    repo.create_secret("OTHER", "x")

    [db, other] = [s for s in _fake_secrets(gh_server)]
    assert (db["scope"], db["owner"], db["repo"], db["type"], db["name"]) == (
        "repo",
        "octo",
        "app",
        "actions",
        "DB_PASSWORD",
    )
    assert db["value"] == plaintext + "-v2" and other["value"] == "x"
    assert db["created_at"] <= db["updated_at"]
    stats = _stats(gh_server)
    assert (stats["put_created"], stats["put_updated"], stats.get("put_rejected", 0)) == (2, 1, 0)

    listed = repo.get_secrets()
    assert listed.totalCount == 2 and sorted(s.name for s in listed) == ["DB_PASSWORD", "OTHER"]
    got = repo.get_secret("db_password")
    assert got.name == "DB_PASSWORD" and got.created_at.year >= 2024
    assert repo.delete_secret("OTHER") is True
    assert repo.delete_secret("OTHER") is False  # 404 the second time
    assert [s["name"] for s in _fake_secrets(gh_server)] == ["DB_PASSWORD"]
    with pytest.raises(UnknownObjectException):
        repo.get_secret("OTHER").name  # noqa: B018  (lazy object: the attribute triggers the GET)


def test_github_dependabot_and_pagination(gh: Github, gh_server: gha.FakeGitHubServer) -> None:
    repo = gh.get_repo("octo/many")
    for i in range(35):
        repo.create_secret(f"S_{i:02d}", f"value-{i}")
    repo.create_secret("DEP", "d", secret_type="dependabot")
    names = [s.name for s in repo.get_secrets()]  # follows the Link header over two pages
    assert names == [f"S_{i:02d}" for i in range(35)]
    assert [s.name for s in repo.get_secrets(secret_type="dependabot")] == ["DEP"]

    raw = requests.get(
        f"{gh_server.base_url}/repos/octo/many/actions/secrets",
        params={"per_page": 10, "page": 2},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert raw.status_code == 200 and raw.json()["total_count"] == 35 and len(raw.json()["secrets"]) == 10
    assert raw.links["next"]["url"].endswith("page=3") and raw.links["last"]["url"].endswith("page=4")
    assert raw.links["prev"]["url"].startswith(gh_server.base_url)


def test_github_environment_secret(gh: Github, gh_server: gha.FakeGitHubServer) -> None:
    env = gh.get_repo("octo/app").get_environment("production")
    assert env.name == "production" and env.url.startswith(gh_server.base_url)
    env.create_secret("DEPLOY_KEY", "-----BEGIN KEY-----")
    assert [s.name for s in env.get_secrets()] == ["DEPLOY_KEY"]
    [stored] = _fake_secrets(gh_server)
    assert (stored["scope"], stored["environment"], stored["value"]) == (
        "environment",
        "production",
        "-----BEGIN KEY-----",
    )
    assert env.delete_secret("DEPLOY_KEY") is True and _fake_secrets(gh_server) == []


def test_github_org_secret_visibility(gh: Github, gh_server: gha.FakeGitHubServer) -> None:
    org = gh.get_organization("acme")
    assert org.url == f"{gh_server.base_url}/orgs/acme"
    r1, r2 = gh.get_repo("acme/one"), gh.get_repo("acme/two")
    org.create_secret("ORG_ALL", "everyone", visibility="all")
    org.create_secret("ORG_SEL", "some", visibility="selected", selected_repositories=[r1])
    stored = {s["name"]: s for s in _fake_secrets(gh_server)}
    assert stored["ORG_ALL"]["visibility"] == "all" and stored["ORG_ALL"]["value"] == "everyone"
    assert stored["ORG_SEL"]["selected_repository_ids"] == [r1.id] and stored["ORG_SEL"]["value"] == "some"

    sel = org.get_secret("ORG_SEL")
    assert sel.visibility == "selected"
    assert [r.full_name for r in sel.selected_repositories] == ["acme/one"]
    assert sel.add_repo(r2) is True
    assert sorted(r.id for r in sel.selected_repositories) == sorted([r1.id, r2.id])
    assert sel.remove_repo(r1) is True
    assert _fake_secrets(gh_server)[1]["selected_repository_ids"] == [r2.id]
    assert {s.name: s.visibility for s in org.get_secrets()} == {"ORG_ALL": "all", "ORG_SEL": "selected"}
    assert sel.edit("changed", visibility="private") is True
    # like GitHub: repository lists only make sense for visibility=selected
    conflict = requests.put(
        f"{gh_server.base_url}/orgs/acme/actions/secrets/ORG_ALL/repositories/{r1.id}",
        headers={"Authorization": f"token {TOKEN}"},
        timeout=5,
    )
    assert conflict.status_code == 409
    put_set = requests.put(
        f"{gh_server.base_url}/orgs/acme/actions/secrets/ORG_ALL/repositories",
        json={"selected_repository_ids": [r1.id]},
        headers={"Authorization": f"token {TOKEN}"},
        timeout=5,
    )
    assert put_set.status_code == 409
    assert {s["name"]: (s["visibility"], s["value"]) for s in _fake_secrets(gh_server)}["ORG_SEL"] == (
        "private",
        "changed",
    )


def test_github_rejects_bad_requests(gh: Github, gh_server: gha.FakeGitHubServer) -> None:
    base, auth = gh_server.base_url, {"Authorization": f"token {TOKEN}"}
    url = f"{base}/repos/octo/raw/actions/secrets"
    key = requests.get(f"{url}/public-key", headers=auth, timeout=5).json()
    sealed = base64.b64encode(SealedBox(PublicKey(base64.b64decode(key["key"]))).encrypt(b"good")).decode()

    def put(name: str, body: dict[str, Any], headers: dict[str, str] = auth) -> int:
        return requests.put(f"{url}/{name}", json=body, headers=headers, timeout=5).status_code

    good = {"encrypted_value": sealed, "key_id": key["key_id"]}
    assert put("RAW", good) == 201 and put("RAW", good) == 204
    other_key = PrivateKey.generate().public_key  # sealed for a different key: undecryptable
    assert (
        put(
            "X",
            {"encrypted_value": base64.b64encode(SealedBox(other_key).encrypt(b"v")).decode(), "key_id": key["key_id"]},
        )
        == 422
    )
    assert put("X", {"encrypted_value": "not base64 !!", "key_id": key["key_id"]}) == 422
    assert put("X", {"encrypted_value": base64.b64encode(os.urandom(64)).decode(), "key_id": key["key_id"]}) == 422
    assert put("X", {"encrypted_value": sealed, "key_id": "12345"}) == 422
    assert put("X", {"key_id": key["key_id"]}) == 422
    for bad in ("1STARTS_WITH_DIGIT", "GITHUB_TOKEN", "github_lower", "HAS-DASH", "HAS%20SPACE"):
        assert put(bad, good) == 422, bad
    assert put("Y", good, {"Authorization": "token wrong"}) == 401
    assert put("Y", good, {}) == 401
    assert requests.get(f"{url}/public-key", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    org_url = f"{base}/orgs/acme/actions/secrets/ORG"
    assert requests.put(org_url, json={**good, "visibility": "public"}, headers=auth, timeout=5).status_code == 422
    assert (
        requests.put(
            org_url, json={**good, "visibility": "selected", "selected_repository_ids": ["1"]}, headers=auth, timeout=5
        ).status_code
        == 422
    )
    assert requests.delete(f"{url}/NOPE", headers=auth, timeout=5).status_code == 404

    assert [(s["name"], s["value"]) for s in _fake_secrets(gh_server)] == [("RAW", "good")]
    stats = _stats(gh_server)
    assert stats["put_rejected"] == 12 and stats["put"] == 2 and stats.get("delete", 0) == 0

    with pytest.raises(GithubException) as exc:
        _github(base, Auth.Token("wrong")).get_repo("octo/app")
    assert exc.value.status == 401
    with pytest.raises(UnknownObjectException):
        gh.get_repo("octo/missing-repo")
    with pytest.raises(UnknownObjectException):
        gh.get_organization("missing-org")
    with pytest.raises(UnknownObjectException):
        gh.get_repo("octo/app").get_environment("missing-env").name  # noqa: B018
    assert (
        requests.get(f"{base}/repos/octo/missing-x/actions/secrets/public-key", headers=auth, timeout=5).status_code
        == 404
    )


def test_github_app_installation_token(gh_server: gha.FakeGitHubServer) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    auth = Auth.AppAuth(12345, pem).get_installation_auth(42)
    gh = _github(gh_server.base_url, auth)
    gh.get_repo("octo/app-auth").create_secret("VIA_APP", "app-value")
    assert any(s["name"] == "VIA_APP" and s["value"] == "app-value" for s in _fake_secrets(gh_server))
    # a plain token is not a JWT: the app endpoint refuses it
    assert (
        requests.post(
            f"{gh_server.base_url}/app/installations/42/access_tokens",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        ).status_code
        == 401
    )


# ============================================================================ CLI contract
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_cli(module: str, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), *extra],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=15)


def test_cli_gcp_fake_serves_and_stops_on_sigterm() -> None:
    port = _free_port()
    proc = _run_cli("e2e.fakes.gcp_secret_manager", port)
    try:
        assert proc.stdout is not None and f"127.0.0.1:{port}" in proc.stdout.readline()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=10)
        client = gsm.make_client(f"127.0.0.1:{port}")
        secret = _create(client, "cli")
        client.add_secret_version(request={"parent": secret.name, "payload": {"data": b"v"}})
        assert client.access_secret_version(name=f"{secret.name}/versions/latest").payload.data == b"v"
    finally:
        assert _stop(proc) == 0


def test_cli_github_fake_serves_and_stops_on_sigterm() -> None:
    port = _free_port()
    proc = _run_cli("e2e.fakes.github_actions", port, "--token", "cli-token")
    try:
        assert proc.stdout is not None and f"127.0.0.1:{port}" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/_fake/health", timeout=5).status_code == 200
        _github(base, Auth.Token("cli-token")).get_repo("o/r").create_secret("A", "b")
        assert [(s["name"], s["value"]) for s in requests.get(f"{base}/_fake/secrets", timeout=5).json()] == [
            ("A", "b")
        ]
        assert (
            requests.get(f"{base}/repos/o/r", headers={"Authorization": "token testbed-token"}, timeout=5).status_code
            == 401
        )
    finally:
        started = time.monotonic()
        assert _stop(proc) == 0
        assert time.monotonic() - started < 10
