"""Leader election with a coordination.k8s.io Lease, so several replicas can run and exactly one works.

The holder renews the Lease every `renew_seconds`; a standby takes it over once `renewTime + duration` has
passed (its holder died) and becomes active at once. The leader stops working as soon as it cannot renew
before its own lease would expire, so two replicas are never active together (given sane clocks), and it
releases the Lease on shutdown so a standby takes over without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import metrics
from .kube import Kube, KubeError
from .settings import DEFAULTS

logger = logging.getLogger("vaultbundle.leader")
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    text = value.rstrip("Z")
    for layout in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


@dataclass
class LeaderElector:
    kube: Kube
    namespace: str
    on_started: Callable[[], None]
    on_stopped: Callable[[], None]
    name: str = "vaultbundle-operator"
    identity: str = ""
    lease_seconds: float = DEFAULTS.lease_seconds
    renew_seconds: float = DEFAULTS.renew_seconds
    leading: bool = False

    def __post_init__(self) -> None:
        self.identity = self.identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._renewed_at: datetime | None = None

    def _spec(self, lease: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
        old = (lease or {}).get("spec") or {}
        taking_over = old.get("holderIdentity") != self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_seconds)),
            "acquireTime": now.strftime(_TIME) if taking_over else old.get("acquireTime"),
            "renewTime": now.strftime(_TIME),
            "leaseTransitions": int(old.get("leaseTransitions") or 0) + (1 if taking_over and lease else 0),
        }

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when we hold the Lease afterwards."""
        now = _now()
        lease = await self.kube.get_lease(self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None, now),
            }
            await self.kube.create_lease(self.namespace, body)
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime"))
        duration = timedelta(seconds=float(spec.get("leaseDurationSeconds") or self.lease_seconds))
        if holder and holder != self.identity and renewed and now < renewed + duration:
            return False  # someone else holds a live lease
        lease["spec"] = self._spec(lease, now)
        await self.kube.replace_lease(self.namespace, self.name, lease)  # 409 when someone else won the race
        return True

    def _set(self, leading: bool) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        metrics.LEADER.set(1 if leading else 0)
        logger.warning("%s leadership of lease %s/%s", "acquired" if leading else "lost", self.namespace, self.name)
        (self.on_started if leading else self.on_stopped)()

    async def run(self) -> None:
        """Campaign and renew until cancelled; release the Lease when cancelled while leading."""
        try:
            while True:
                try:
                    held = await self.try_acquire_or_renew()
                    if held:
                        self._renewed_at = _now()
                except KubeError as exc:
                    held = False
                    logger.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                if not held and self.leading and self._renewed_at is not None:
                    # keep working only while our last renewal is certainly still valid for everybody else
                    held = _now() < self._renewed_at + timedelta(seconds=self.lease_seconds - self.renew_seconds)
                self._set(held)
                await asyncio.sleep(self.renew_seconds if self.leading else self.renew_seconds / 2)
        finally:
            if self.leading:
                self._set(False)
                await asyncio.shield(self._release())

    async def _release(self) -> None:
        try:
            lease = await self.kube.get_lease(self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = (_now() - timedelta(days=1)).strftime(_TIME)
                await self.kube.replace_lease(self.namespace, self.name, lease)
        except KubeError as exc:
            logger.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, exc)
