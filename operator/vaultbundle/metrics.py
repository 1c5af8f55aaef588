"""Prometheus metrics. Labels are names and reasons only; no value, digest or key name of a secret."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

SYNCS = Counter(
    "vaultbundle_syncs_total",
    "Reconcile cycles by result (Synced, Idle, or a failure reason).",
    ["result"],
    registry=REGISTRY,
)
TARGET_SYNCS = Counter(
    "vaultbundle_target_syncs_total", "Target syncs by kind and result.", ["kind", "result"], registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "vaultbundle_reconcile_duration_seconds",
    "Duration of one reconcile cycle.",
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
KDF_SECONDS = Histogram(
    "vaultbundle_kdf_duration_seconds",
    "Wall time of cycles that derived a key (PBKDF2).",
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
KDF_DERIVATIONS = Counter(
    "vaultbundle_kdf_derivations_total", "PBKDF2 derivations performed (cache misses).", registry=REGISTRY
)


def observe_kdf(seconds: float) -> None:
    """One real PBKDF2 derivation (a cache miss) and how long it took, including any wait for a worker."""
    KDF_DERIVATIONS.inc()
    KDF_SECONDS.observe(seconds)


DRIFT_REPAIRS = Counter(
    "vaultbundle_drift_repairs_total",
    "Targets found edited behind the operator's back (keys, labels, a deleted Secret) and rewritten, by kind.",
    ["kind"],
    registry=REGISTRY,
)
DRIFT_CHECKS = Counter(
    "vaultbundle_drift_checks_total",
    "Read-only drift checks of a target (a managed Secret's watch event, or a store's driftCheckInterval), by kind.",
    ["kind"],
    registry=REGISTRY,
)
ROLLOUT_RESTARTS = Counter(
    "vaultbundle_rollout_restarts_total",
    "Restarts of spec.rolloutRestartTargets workloads by kind and result (RolloutRestarted or a failure reason).",
    ["kind", "result"],
    registry=REGISTRY,
)
DOTSEC_OPENS = Counter(
    "vaultbundle_dotsec_opens_total",
    "dotsec .sec files verified and decrypted (an unchanged file costs none).",
    registry=REGISTRY,
)
S3_REQUESTS = Counter("vaultbundle_s3_requests_total", "Requests sent to S3.", registry=REGISTRY)
SOURCE_READS = Counter(
    "vaultbundle_source_reads_total",
    "Reads of source Secrets and ConfigMaps by kind and origin (cache: the watch's copy; api: a GET).",
    ["kind", "origin"],
    registry=REGISTRY,
)
API_WRITES = Counter(
    "vaultbundle_kubernetes_writes_total",
    "Write requests sent to the Kubernetes API.",
    ["operation"],
    registry=REGISTRY,
)


class _PerBundle(Collector):
    """A gauge with one sample per VaultBundle (labels namespace, name), kept in a plain dict: a labelled
    `Gauge` keeps a child object with its own lock per VaultBundle (~800 B each; 8 MiB at 10,000). *at_scrape*
    turns the stored number into the sample when /metrics is read."""

    def __init__(self, name: str, documentation: str, at_scrape: Callable[[float], float] = float) -> None:
        self.name, self.documentation, self.at_scrape = name, documentation, at_scrape
        self.values: dict[tuple[str, str], float] = {}

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The family without samples: the registry learns the name without a collect (`?name[]=` filtering)."""
        yield GaugeMetricFamily(self.name, self.documentation, labels=["namespace", "name"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["namespace", "name"])
        for (namespace, name), value in list(self.values.items()):
            family.add_metric([namespace, name], self.at_scrape(value))
        yield family


BUNDLE_AGE = _PerBundle(
    "vaultbundle_bundle_age_seconds",
    "Age of the applied bundle (now - its sealed timestamp).",
    lambda stamp: time.time() - stamp,  # stored: the sealed timestamp (epoch seconds)
)
REGISTRY.register(BUNDLE_AGE)
LEADER = Gauge(
    "vaultbundle_leader", "1 while this process holds the leader Lease (or runs without election).", registry=REGISTRY
)
READY = _PerBundle("vaultbundle_ready", "1 when the VaultBundle is Ready, else 0.")
REGISTRY.register(READY)


def forget(namespace: str, name: str) -> None:
    """A VaultBundle was deleted: drop its series, so create/delete churn does not grow memory or cardinality."""
    BUNDLE_AGE.values.pop((namespace, name), None)
    READY.values.pop((namespace, name), None)
