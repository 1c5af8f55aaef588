"""The Secret watches ask the apiserver for label-selected metadata only, and survive expiry and shutdown.

A recording HTTP server plays the apiserver's list/watch protocol (list, then a watch from its resourceVersion,
bookmarks, `410 Gone`); the real apiserver's view of the same requests is in tests/e2e/test_chart_rbac.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client as k8s

from vaultbundle import controller, secretwatch, sourcecache
from vaultbundle.backoff import Retry
from vaultbundle.reconcile import Reconciler


def metadata(name: str, version: str, **extra: Any) -> dict[str, Any]:
    return {"namespace": "team-a", "name": name, "resourceVersion": version, **extra}


class FakeApiserver:
    """Serves a scripted list and a queue of watch responses; records every request (path, query, headers)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        self.listing: list[dict[str, Any]] = [metadata("old", "5")]
        self.data: dict[str, dict[str, str]] = {}  # name -> data, sent with the listed object (a full list)
        self.list_version = "10"
        self.watches: list[list[dict[str, Any]] | str] = []  # events, or "hold" (block until released)
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # like the apiserver: a watch is one chunked response

            def log_message(self, *_: Any) -> None:
                pass

            def chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                fake.requests.append((url.path, query, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if "watch" not in query:
                    body: dict[str, Any] = {
                        "kind": "PartialObjectMetadataList",
                        "metadata": {"resourceVersion": fake.list_version},
                    }
                    listing = fake.listing
                    if "limit" in query:  # pages, as the apiserver serves them: `continue` names the next one
                        start, limit = int(query.get("continue", ["0"])[0]), int(query["limit"][0])
                        listing = fake.listing[start : start + limit]
                        if start + limit < len(fake.listing):
                            body["metadata"]["continue"] = str(start + limit)
                    items = [
                        {"kind": "PartialObjectMetadata", "metadata": m}
                        | ({"data": fake.data[m["name"]]} if m["name"] in fake.data else {})
                        for m in listing
                    ]
                    body["items"] = items or None  # like the apiserver: an empty list has "items": null
                    self.chunk(json.dumps(body).encode())
                else:
                    script = fake.watches.pop(0) if fake.watches else "hold"
                    if script == "hold":
                        fake.release.wait(10)
                        return
                    for event in script:
                        self.chunk(json.dumps(event).encode() + b"\n")
                self.chunk(b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def api_client(self) -> k8s.ApiClient:
        configuration = k8s.Configuration(host=f"http://127.0.0.1:{self.server.server_port}")
        configuration.api_key = {"BearerToken": "Bearer test-token"}
        return k8s.ApiClient(configuration)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def apiserver() -> Iterator[FakeApiserver]:
    fake = FakeApiserver()
    yield fake
    fake.close()


async def until(condition: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def added(name: str, version: str, kind: str = "ADDED") -> dict[str, Any]:
    return {"type": kind, "object": {"kind": "PartialObjectMetadata", "metadata": metadata(name, version)}}


async def test_watch_is_label_selected_metadata_only_and_resumes(apiserver: FakeApiserver) -> None:
    apiserver.watches = [
        [added("a", "11"), {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}],
        [added("b", "16", "DELETED")],
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}],
    ]
    seen: list[tuple[str, str]] = []
    watch = secretwatch.SecretWatch(
        apiserver.api_client(),
        secretwatch.SOURCE_SELECTOR,
        lambda ns, name, _meta: seen.append((ns, name)),
        asyncio.get_running_loop(),
        namespace="team-a",
    )
    watch.start()
    try:
        await until(lambda: len(seen) >= 3, "a, b, then the relisted Secret")
        await until(lambda: len(apiserver.requests) >= 6, "the watch renewed after the relist")
    finally:
        watch.stop()
    # the initial list only gives the starting point; after 410 Gone the fresh list is reported in full
    assert seen[:3] == [("team-a", "a"), ("team-a", "b"), ("team-a", "old")]
    assert watch.ready.is_set()
    paths = {path for path, _, _ in apiserver.requests}
    assert paths == {"/api/v1/namespaces/team-a/secrets"}
    for _, query, headers in apiserver.requests:
        assert query["labelSelector"] == ["vaultbundle.io/source=true"]
        assert "as=PartialObjectMetadata" in headers["accept"], headers["accept"]  # never the Secrets' data
        assert headers["authorization"] == "Bearer test-token"
    watches = [query for _, query, _ in apiserver.requests if "watch" in query]
    # list at 10 -> watch from 10; bookmark at 15 and b at 16 -> from 16; 410 -> list again -> from 10
    assert [q["resourceVersion"] for q in watches[:4]] == [["10"], ["15"], ["16"], ["10"]]
    assert all(q["allowWatchBookmarks"] == ["true"] for q in watches)
    lists = [query for _, query, _ in apiserver.requests if "watch" not in query]
    assert len(lists) == 2


async def test_stop_unblocks_a_waiting_watch_at_once(apiserver: FakeApiserver) -> None:
    apiserver.listing = []
    watch = secretwatch.SecretWatch(
        apiserver.api_client(), secretwatch.MANAGED_SELECTOR, lambda *_: None, asyncio.get_running_loop()
    )
    watch.start()
    await until(lambda: any("watch" in q for _, q, _ in apiserver.requests), "the watch request")
    assert apiserver.requests[0][0] == "/api/v1/secrets"  # every namespace: one cluster-wide stream
    assert apiserver.requests[0][1]["labelSelector"] == ["app.kubernetes.io/managed-by=vaultbundle"]
    started = time.monotonic()
    watch.stop()
    await asyncio.to_thread(watch._thread.join, 5)
    assert not watch._thread.is_alive() and time.monotonic() - started < 2
    assert watch.ready.is_set()  # the empty list was understood


async def test_failures_are_retried_and_logged_without_bodies(
    apiserver: FakeApiserver, caplog: pytest.LogCaptureFixture
) -> None:
    configuration = k8s.Configuration(host="http://127.0.0.1:1")  # nothing listens: connection refused
    watch = secretwatch.SecretWatch(
        k8s.ApiClient(configuration), secretwatch.SOURCE_SELECTOR, lambda *_: None, asyncio.get_running_loop()
    )
    watch.start()
    try:
        await until(lambda: "watch of Secrets" in caplog.text, "the warning")
    finally:
        watch.stop()
    assert not watch.ready.is_set()
    assert "vaultbundle.io/source=true in all namespaces failed (MaxRetryError); retrying in 1s" in caplog.text


def test_start_watches_one_per_selector_and_namespace(apiserver: FakeApiserver) -> None:
    loop = asyncio.new_event_loop()
    try:
        watches = secretwatch.start_watches(
            apiserver.api_client(), ("a", "b"), {"x=1": lambda *_: None, "y=1": lambda *_: None}, loop
        )
        for watch in watches:
            watch.stop()
    finally:
        loop.close()
    pairs = sorted((w.selector, w.namespace) for w in watches)
    assert pairs == [("x=1", "a"), ("x=1", "b"), ("y=1", "a"), ("y=1", "b")]


def test_scheduler_wakes_source_readers_and_resolves_managed_owners() -> None:
    reconciler = Reconciler(None, None, None)  # type: ignore[arg-type] # only its record of our own writes is used
    scheduler = controller.Scheduler(reconciler=reconciler, max_concurrent=1, active=False)
    scheduler.workers["uid-1"] = controller.Worker({"metadata": {"uid": "uid-1"}}, Retry(scheduler.backoff))
    scheduler.watch("uid-1", "team-a", "web-passphrase")
    scheduler.secret_changed("team-a", "other", {})
    assert not scheduler.workers["uid-1"].wake.is_set()
    scheduler.secret_changed("team-a", "web-passphrase", {})
    assert scheduler.workers["uid-1"].wake.is_set()
    owned = {"annotations": {"vaultbundle.io/owner-uid": "uid-1"}}
    assert scheduler.managed_secret_changed("team-a", "web-env", owned) == "uid-1"
    assert scheduler.managed_secret_changed("team-a", "web-env", {"annotations": {}}) is None


def test_config_maps_are_watched_under_the_same_label() -> None:
    loop = asyncio.new_event_loop()
    try:
        client = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1"))
        watches = secretwatch.start_watches(
            client, ("a",), {"x=1": lambda *_: None}, loop, config_map_handlers={"x=1": lambda *_: None}
        )
        for watch in watches:
            watch.stop()
    finally:
        loop.close()
    assert [w.path for w in watches] == ["/api/v1/namespaces/a/secrets", "/api/v1/namespaces/a/configmaps"]


def test_scheduler_wakes_config_map_readers_but_not_for_a_secret_of_the_same_name() -> None:
    scheduler = controller.Scheduler(reconciler=None, max_concurrent=1, active=False)  # type: ignore[arg-type]
    scheduler.workers["uid-1"] = controller.Worker({"metadata": {"uid": "uid-1"}}, Retry(scheduler.backoff))
    scheduler.watch("uid-1", "team-a", controller.CONFIG_MAP_PREFIX + "app-sec")
    scheduler.secret_changed("team-a", "app-sec", {})
    assert not scheduler.workers["uid-1"].wake.is_set()
    scheduler.config_map_changed("team-a", "app-sec", {})
    assert scheduler.workers["uid-1"].wake.is_set()


def full(name: str, version: str, kind: str, **data: str) -> dict[str, Any]:
    """A watch event carrying the whole object (what a cached source watch asks for)."""
    return {"type": kind, "object": {"kind": "Secret", "metadata": metadata(name, version), "data": data}}


async def test_a_cached_watch_streams_whole_objects_and_updates_the_cache_before_it_wakes(
    apiserver: FakeApiserver,
) -> None:
    apiserver.listing = [metadata(f"s{i:03d}", "5") for i in range(120)]  # three pages
    apiserver.data = {"s000": {"passphrase": "djE="}, "s001": {"passphrase": "b3RoZXI="}}
    apiserver.watches = [
        [full("s000", "11", "MODIFIED", passphrase="djI="), full("s001", "12", "DELETED")],
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}],
    ]
    cache = sourcecache.ObjectCache("secret")
    seen: list[tuple[str, dict[str, Any] | None]] = []  # each change and what a read of the cache gave then

    def on_change(namespace: str, name: str, _meta: dict[str, Any]) -> None:
        seen.append((name, cache.get(namespace, name)))
        if len(seen) == 2:  # the second list (after 410 Gone) lacks s001's deletion and s000's first copy
            apiserver.listing = [metadata("s000", "20")]
            apiserver.data = {"s000": {"passphrase": "djM="}}

    watch = secretwatch.SecretWatch(
        apiserver.api_client(),
        secretwatch.SOURCE_SELECTOR,
        on_change,
        asyncio.get_running_loop(),
        "team-a",
        cache=cache,
    )
    watch.start()
    try:
        await until(lambda: len(seen) >= 3, "two changes, then the relisted Secret")
    finally:
        watch.stop()
    # the cycle a change wakes reads the new value: the cache took it before the handler ran
    assert seen[0][0] == "s000" and seen[0][1] is not None and seen[0][1]["data"] == {"passphrase": "djI="}
    assert seen[1] == ("s001", None)  # deleted (or unlabelled): gone from the cache, the next read GETs
    assert seen[2][0] == "s000" and seen[2][1] is not None and seen[2][1]["data"] == {"passphrase": "djM="}
    assert len(cache) == 1  # the fresh list replaced everything: s001..s119 are no longer listed
    for _, _, headers in apiserver.requests:
        assert headers["accept"] == "application/json"  # whole objects: the values are what the cache keeps
    lists = [query for _, query, _ in apiserver.requests if "watch" not in query]
    assert [q.get("continue") for q in lists[:3]] == [None, ["50"], ["100"]] and lists[0]["limit"] == ["50"]


async def test_a_relist_reports_cached_objects_that_went_away_meanwhile(apiserver: FakeApiserver) -> None:
    apiserver.data = {"old": {"k": "dg=="}}
    apiserver.watches = [
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}]
    ]
    cache = sourcecache.ObjectCache("secret")
    seen: list[str] = []
    watch = secretwatch.SecretWatch(
        apiserver.api_client(),
        secretwatch.SOURCE_SELECTOR,
        lambda _ns, name, _meta: seen.append(name),
        asyncio.get_running_loop(),
        "team-a",
        cache=cache,
    )
    watch.start()
    try:
        await until(lambda: cache.get("team-a", "old") is not None, "the first list in the cache")
        apiserver.listing, apiserver.data = [], {}  # deleted while the watch was gone
        await until(lambda: seen, "the relist")
    finally:
        watch.stop()
    assert seen == ["old"]  # its readers wake and GET it: SecretNotFound
    assert cache.get("team-a", "old") is None


async def test_a_failed_cached_watch_sends_reads_to_the_apiserver(apiserver: FakeApiserver) -> None:
    cache = sourcecache.ObjectCache("secret")
    cache.replace("team-a", [{"metadata": metadata("s", "1"), "data": {"k": "dg=="}}])
    configuration = k8s.Configuration(host="http://127.0.0.1:1")  # nothing listens: connection refused
    watch = secretwatch.SecretWatch(
        k8s.ApiClient(configuration),
        secretwatch.SOURCE_SELECTOR,
        lambda *_: None,
        asyncio.get_running_loop(),
        "team-a",
        cache=cache,
    )
    watch.start()
    try:
        await until(lambda: not cache.live("team-a"), "the cache of the failed scope taken out of service")
    finally:
        watch.stop()
    assert cache.get("team-a", "s") is None


def test_only_the_source_watches_keep_objects() -> None:
    loop = asyncio.new_event_loop()
    reads = sourcecache.CachedReads(None)  # type: ignore[arg-type] # no read is made
    try:
        client = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1"))
        watches = secretwatch.start_watches(
            client,
            (),
            {secretwatch.SOURCE_SELECTOR: lambda *_: None, secretwatch.MANAGED_SELECTOR: lambda *_: None},
            loop,
            config_map_handlers={secretwatch.SOURCE_SELECTOR: lambda *_: None},
            caches={
                ("secrets", secretwatch.SOURCE_SELECTOR): reads.secrets,
                ("configmaps", secretwatch.SOURCE_SELECTOR): reads.config_maps,
            },
        )
        for watch in watches:
            watch.stop()
    finally:
        loop.close()
    kept = {(w.resource, w.selector): w.cache for w in watches}
    assert kept[("secrets", secretwatch.MANAGED_SELECTOR)] is None  # our targets: metadata only, never values
    assert kept[("secrets", secretwatch.SOURCE_SELECTOR)] is reads.secrets
    assert kept[("configmaps", secretwatch.SOURCE_SELECTOR)] is reads.config_maps
