"""Time until N custom objects are Ready, from one list and a watch (not a list every second).

Listing 10,000 objects with their status every second would cost the API server more than the operator under
test; a watch costs one serialisation per change. Both operators' objects (VaultBundles, ExternalSecrets) carry
a ``Ready`` condition in ``status.conditions``, so one watcher serves both. The time an object turned Ready is
taken when its event arrives here (a watch event is delivered within milliseconds of the write).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException


def ready_reason(obj: dict[str, Any]) -> tuple[bool, str]:
    """(Ready is True, the Ready condition's reason or "Pending") of one object as the API returns it."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    condition = next((c for c in conditions if isinstance(c, dict) and c.get("type") == "Ready"), None)
    if condition is None:
        return False, "Pending"
    return condition.get("status") == "True", str(condition.get("reason") or "Unknown")


class ReadyWatch:
    """Watches the objects of (group, version, plural) matching *selector* across namespaces."""

    def __init__(self, api: k8s.ApiClient, group: str, version: str, plural: str, selector: str) -> None:
        self.custom = k8s.CustomObjectsApi(api)
        self.args = (group, version, plural)
        self.selector = selector
        self._state: dict[tuple[str, str], tuple[bool, str]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ready-watch-{plural}", daemon=True)
        self.restarts = 0

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # The thread notices at the watch's next event or timeout (<= 20 s) and ends; a daemon, not waited for.
        self._stop.set()

    def _set(self, obj: dict[str, Any], deleted: bool = False) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            if deleted:
                self._state.pop(key, None)
            else:
                self._state[key] = ready_reason(obj)
        self._changed.set()

    def _list(self) -> str:
        listed = self.custom.list_cluster_custom_object(*self.args, label_selector=self.selector, _request_timeout=120)
        with self._lock:
            self._state = {
                (o["metadata"].get("namespace", ""), o["metadata"]["name"]): ready_reason(o) for o in listed["items"]
            }
        self._changed.set()
        return str(listed["metadata"]["resourceVersion"])

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                version = version or self._list()
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    *self.args,
                    label_selector=self.selector,
                    resource_version=version,
                    timeout_seconds=20,  # short, so that __exit__ ends the thread soon
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        version = ""  # 410 Gone and the like: list again
                        break
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if event["type"] != "BOOKMARK":
                        self._set(obj, deleted=event["type"] == "DELETED")
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                version = "" if exc.status == 410 else version
                self.restarts += 1
                self._stop.wait(0.5)
            except Exception:  # noqa: BLE001 - a dropped connection: watch again from the last version
                self.restarts += 1
                self._stop.wait(0.5)

    def counts(self) -> tuple[int, Counter[str]]:
        with self._lock:
            states = list(self._state.values())
        return sum(ready for ready, _ in states), Counter(reason for _, reason in states)

    def wait(
        self, n: int, started: float, timeout: float, sample_every: float = 0.5
    ) -> tuple[float | None, Counter[str], list[list[float]]]:
        """Seconds from *started* (perf_counter) until *n* objects are Ready, None after *timeout*; the Ready
        curve (elapsed, ready) sampled every *sample_every* s and at the end."""
        curve: list[list[float]] = []
        next_sample = 0.0
        while True:
            self._changed.wait(timeout=sample_every)
            self._changed.clear()
            ready, reasons = self.counts()
            elapsed = time.perf_counter() - started
            if ready >= n:
                curve.append([round(elapsed, 2), ready])
                return elapsed, reasons, curve
            if elapsed >= next_sample:
                curve.append([round(elapsed, 2), ready])
                next_sample = elapsed + sample_every
            if elapsed > timeout:
                return None, reasons, curve
