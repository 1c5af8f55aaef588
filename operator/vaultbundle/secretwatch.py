"""Label-selected, metadata-only watches of Secrets: the operator never streams a Secret it has no business with.

Two kinds of Secret matter to a running operator: the target Secrets it wrote (label
`app.kubernetes.io/managed-by=vaultbundle`; drift repair hooks in on their changes) and the source Secrets users
labelled `vaultbundle.io/source=true` so a rotated passphrase or config resyncs at once. An unlabelled source
still works: every refresh cycle GETs it by name, so a change is seen within `refreshInterval`. ConfigMaps a
VaultBundle reads (a dotsec `.sec` text, a `spec.schema`) are watched the same way, under the same label.

Why not kopf's `@kopf.on.event("", "v1", "secrets", labels=...)`: kopf opens one watch stream per resource and
namespace; handler `labels=` filters are applied to bodies already received (every Secret still streams in),
and its server-side `settings.watching.label_selectors` are joined with AND into that one stream, so "ours OR
labelled sources" cannot be expressed. kopf also always streams full objects. Here each selector gets its own
stream, asked for as `PartialObjectMetadata` (the apiserver sends names, labels, annotations and versions, never
`data`), over the official client's `Watch` in a daemon thread (the client is synchronous; `Watch.stop()`
unblocks its socket read at shutdown).
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

logger = logging.getLogger("vaultbundle")

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=vaultbundle"
SOURCE_LABEL = "vaultbundle.io/source"
SOURCE_SELECTOR = f"{SOURCE_LABEL}=true"
# the apiserver's metadata-only representation (what client-go's metadata informers ask for)
_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_WATCH_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_SERVER_TIMEOUT = 300  # seconds a watch request lives before it is renewed from the last resourceVersion
_MAX_BACKOFF = 30.0

OnChange = Callable[[str, str, dict[str, Any]], object]  # (namespace, name, metadata); result unused


class SecretWatch:
    """One label-selected watch of Secrets (or another core *resource*: `configmaps`) in one namespace (or
    all, `namespace=None`), metadata only.

    *on_change* runs on *loop* for every added, modified or deleted Secret after the initial list (which only
    gives the starting point: at start every VaultBundle reconciles anyway). After a gap (watch expired, 410
    Gone) every Secret of a fresh list is reported, so nothing changed meanwhile is missed.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        selector: str,
        on_change: OnChange,
        loop: asyncio.AbstractEventLoop,
        namespace: str | None = None,
        resource: str = "secrets",
    ) -> None:
        self.api = api_client
        self.resource = resource
        self.selector = selector
        self.namespace = namespace
        self.on_change = on_change
        self.loop = loop
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
        body = json.loads(self._request(_LIST_ACCEPT).data)
        # an empty PartialObjectMetadataList has `"items": null`
        return body["metadata"]["resourceVersion"], [item.get("metadata", {}) for item in body.get("items") or []]

    def _stream(self, **kwargs: Any) -> Any:
        """What `Watch.stream` calls: one watch request (it passes `watch`, `resource_version` and friends)."""
        return self._request(
            _WATCH_ACCEPT,
            watch="true",
            allowWatchBookmarks="true",
            resourceVersion=kwargs.get("resource_version"),
            timeoutSeconds=kwargs["timeout_seconds"],
        )

    def _events(self, version: str) -> Iterator[dict[str, Any]]:
        """Metadata of each changed Secret from one watch request; `self.version` follows (bookmarks too)."""
        self._watch = k8s_watch.Watch(return_type="object")
        for event in self._watch.stream(self._stream, resource_version=version, timeout_seconds=_SERVER_TIMEOUT):
            self.version = self._watch.resource_version or self.version
            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                yield event["raw_object"].get("metadata", {})

    def _emit(self, metadata: dict[str, Any]) -> None:
        namespace, name = metadata.get("namespace"), metadata.get("name")
        if namespace and name:
            try:
                self.loop.call_soon_threadsafe(self.on_change, namespace, name, metadata)
            except RuntimeError:  # the loop is closed: the operator is stopping
                self._stopping.set()

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                if self.version is None:
                    self.version, items = self._list()
                    if self.ready.is_set():  # a gap: report everything, a change may have been missed
                        for metadata in items:
                            self._emit(metadata)
                    self.ready.set()
                for metadata in self._events(self.version):
                    self._emit(metadata)
                backoff = 1.0
            except ApiException as exc:
                if exc.status == 410:  # our resourceVersion is too old: start over from a fresh list
                    self.version = None
                    continue
                self._failed(f"HTTP {exc.status} {exc.reason}", backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
            except Exception as exc:  # noqa: BLE001 - a watch must outlive any network failure
                self._failed(type(exc).__name__, backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)

    def _failed(self, what: str, backoff: float) -> None:
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
) -> list[SecretWatch]:
    """One watch per selector in *handlers* (Secrets) and *config_map_handlers* (ConfigMaps) and per namespace
    (every namespace when *namespaces* is empty)."""
    kinds = [("secrets", handlers), ("configmaps", config_map_handlers or {})]
    watches = [
        SecretWatch(api_client, selector, on_change, loop, namespace, resource)
        for resource, table in kinds
        for selector, on_change in table.items()
        for namespace in (namespaces or (None,))
    ]
    for watch in watches:
        watch.start()
    return watches
