"""Label-selected watches of Secrets and ConfigMaps: the operator never streams a Secret it has no business with.

Two kinds of Secret matter to a running operator: the target Secrets it wrote (label
`app.kubernetes.io/managed-by=vaultbundle`; drift repair hooks in on their changes) and the source Secrets users
labelled `vaultbundle.io/source=true` so a rotated passphrase or config resyncs at once. ConfigMaps a
VaultBundle reads (a dotsec `.sec` text, a `spec.schema`) are watched the same way, under the same label.

The managed-Secret watch asks for `PartialObjectMetadata` (the apiserver sends names, labels, annotations and
versions, never `data`). A source watch given an `ObjectCache` (sourcecache.py) streams the labelled objects
whole and keeps their copies current, so a refresh cycle reads labelled sources without a GET; an unlabelled
source is still read by name on every cycle. Lists are paged (`_PAGE` objects a request), so a tenant who
labels many large Secrets cannot make one list response the operator must hold at once. What streaming whole
objects does cost: each change of a labelled object is parsed once, whatever its size, so a tenant who keeps
rewriting a large labelled Secret spends operator CPU in proportion to its own API writes (and more of the
apiserver's); none of it is kept beyond the cache's budget.

Why not kopf's `@kopf.on.event("", "v1", "secrets", labels=...)`: kopf opens one watch stream per resource and
namespace; handler `labels=` filters are applied to bodies already received (every Secret still streams in),
and its server-side `settings.watching.label_selectors` are joined with AND into that one stream, so "ours OR
labelled sources" cannot be expressed. kopf also always streams full objects. Here each selector gets its own
stream over the official client's `Watch` in a daemon thread (the client is synchronous; `Watch.stop()`
unblocks its socket read at shutdown). Everything a stream delivers is handed to the event loop in order
(`call_soon_threadsafe`): the cache is updated there, then the handler wakes the readers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from .sourcecache import ObjectCache

logger = logging.getLogger("vaultbundle")

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=vaultbundle"
SOURCE_LABEL = "vaultbundle.io/source"
SOURCE_SELECTOR = f"{SOURCE_LABEL}=true"
# the apiserver's metadata-only representation (what client-go's metadata informers ask for)
_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_WATCH_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_FULL_ACCEPT = "application/json"  # a cached source watch: the objects themselves
_PAGE = 50  # objects per list request: a page of whole Secrets is at most ~50 x 1.4 MiB of JSON
_SERVER_TIMEOUT = 300  # seconds a watch request lives before it is renewed from the last resourceVersion
_MAX_BACKOFF = 30.0

OnChange = Callable[[str, str, dict[str, Any]], object]  # (namespace, name, metadata); result unused


class SecretWatch:
    """One label-selected watch of Secrets (or another core *resource*: `configmaps`) in one namespace (or
    all, `namespace=None`): metadata only, or whole objects kept in *cache*.

    *on_change* runs on *loop* for every added, modified or deleted object after the initial list (which only
    gives the starting point: at start every VaultBundle reconciles anyway), after *cache* took the change. After
    a gap (watch expired, 410 Gone) every object of a fresh list is reported, and every cached one it no longer
    holds, so nothing changed meanwhile is missed.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        selector: str,
        on_change: OnChange,
        loop: asyncio.AbstractEventLoop,
        namespace: str | None = None,
        resource: str = "secrets",
        cache: ObjectCache | None = None,
    ) -> None:
        self.api = api_client
        self.resource = resource
        self.selector = selector
        self.namespace = namespace
        self.on_change = on_change
        self.loop = loop
        self.cache = cache
        self._stopping = threading.Event()
        self._watch: k8s_watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name=f"vaultbundle-watch:{resource}:{selector}", daemon=True)
        self.ready = threading.Event()  # set once the first list succeeded (the watch is established)
        self.version: str | None = None  # the resourceVersion to watch from; None = list first

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/{self.resource}" if self.namespace else f"/api/v1/{self.resource}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()  # shuts the socket down: the blocked read returns at once

    def _request(self, accept: str, **params: Any) -> Any:
        query = [("labelSelector", self.selector), *((k, v) for k, v in params.items() if v is not None)]
        return self.api.call_api(
            self.path,
            "GET",
            query_params=query,
            header_params={"Accept": accept},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=params.get("timeoutSeconds", 30) + 30,
        )

    def _list(self) -> tuple[str, list[dict[str, Any]]]:
        """The listed objects (metadata only unless cached), page by page from one snapshot."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            accept = _LIST_ACCEPT if self.cache is None else _FULL_ACCEPT
            body = json.loads(self._request(accept, limit=str(_PAGE), **{"continue": token}).data)
            # an empty PartialObjectMetadataList has `"items": null`
            page = body.get("items") or []
            items.extend(page if self.cache is not None else [{"metadata": i.get("metadata", {})} for i in page])
            token = body["metadata"].get("continue") or None
            if token is None:
                return body["metadata"]["resourceVersion"], items

    def _stream(self, **kwargs: Any) -> Any:
        """What `Watch.stream` calls: one watch request (it passes `watch`, `resource_version` and friends)."""
        response = self._request(
            _WATCH_ACCEPT if self.cache is None else _FULL_ACCEPT,
            watch="true",
            allowWatchBookmarks="true",
            resourceVersion=kwargs.get("resource_version"),
            timeoutSeconds=kwargs["timeout_seconds"],
        )
        if self.cache is not None:  # established again: the events since `version` follow, in order
            self._post(self.cache.up, self.namespace)
        return response

    def _events(self, version: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) of each change from one watch request; `self.version` follows (bookmarks too).

        `Watch()` without a return type hands over the parsed JSON as is (no model round trip)."""
        self._watch = k8s_watch.Watch()
        for event in self._watch.stream(self._stream, resource_version=version, timeout_seconds=_SERVER_TIMEOUT):
            obj = event.get("raw_object") or {}
            self.version = (obj.get("metadata") or {}).get("resourceVersion") or self.version
            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                yield event["type"], obj

    def _post(self, callback: Callable[..., object], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: the operator is stopping
            self._stopping.set()

    def _changed(self, kind: str, obj: dict[str, Any]) -> None:
        """On the loop: the cache takes the change first, so the readers woken next read the new content."""
        metadata = obj.get("metadata") or {}
        namespace, name = metadata.get("namespace"), metadata.get("name")
        if not namespace or not name:
            return
        if self.cache is not None:
            if kind == "DELETED":
                self.cache.remove(namespace, name)
            else:
                self.cache.put(obj)
        self.on_change(namespace, name, metadata)

    def _listed(self, items: list[dict[str, Any]], report: bool) -> None:
        """On the loop: a fresh list replaces the cache's entries of this scope; after a gap, report it all."""
        gone = self.cache.replace(self.namespace, items) if self.cache is not None else []
        if not report:
            return
        for obj in items:
            metadata = obj.get("metadata") or {}
            if metadata.get("namespace") and metadata.get("name"):
                self.on_change(metadata["namespace"], metadata["name"], metadata)
        for namespace, name in gone:
            self.on_change(namespace, name, {"namespace": namespace, "name": name})

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                if self.version is None:
                    self.version, items = self._list()
                    self._post(self._listed, items, self.ready.is_set())  # a gap: a change may have been missed
                    self.ready.set()
                for kind, obj in self._events(self.version):
                    self._post(self._changed, kind, obj)
                backoff = 1.0
            except ApiException as exc:
                if exc.status == 410:  # our resourceVersion is too old: start over from a fresh list
                    self._lost()
                    self.version = None
                    continue
                self._failed(f"HTTP {exc.status} {exc.reason}", backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
            except Exception as exc:  # noqa: BLE001 - a watch must outlive any network failure
                self._failed(type(exc).__name__, backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)

    def _lost(self) -> None:
        """The stream broke: until it is back, the cached copies may miss changes, so reads GET."""
        if self.cache is not None:
            self._post(self.cache.down, self.namespace)

    def _failed(self, what: str, backoff: float) -> None:
        self._lost()
        if self._stopping.is_set():
            return
        scope = self.namespace or "all namespaces"
        kind = {"secrets": "Secrets", "configmaps": "ConfigMaps"}.get(self.resource, self.resource)
        logger.warning("watch of %s %s in %s failed (%s); retrying in %.0fs", kind, self.selector, scope, what, backoff)
        self._stopping.wait(backoff)


def start_watches(
    api_client: k8s.ApiClient,
    namespaces: tuple[str, ...],
    handlers: dict[str, OnChange],
    loop: asyncio.AbstractEventLoop,
    config_map_handlers: dict[str, OnChange] | None = None,
    caches: dict[tuple[str, str], ObjectCache] | None = None,
) -> list[SecretWatch]:
    """One watch per selector in *handlers* (Secrets) and *config_map_handlers* (ConfigMaps) and per namespace
    (every namespace when *namespaces* is empty); *caches*: (resource, selector) -> the cache its watch feeds."""
    kinds = [("secrets", handlers), ("configmaps", config_map_handlers or {})]
    caches = caches or {}
    watches = [
        SecretWatch(api_client, selector, on_change, loop, namespace, resource, caches.get((resource, selector)))
        for resource, table in kinds
        for selector, on_change in table.items()
        for namespace in (namespaces or (None,))
    ]
    for watch in watches:
        watch.start()
    return watches
