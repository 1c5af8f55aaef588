"""Every operator default, written once.

`vaultbundle run`'s flags take their defaults and help text from `Settings`, the chart's values.yaml must
agree with it (tests/unit/test_settings.py fails when they drift) and the README's flag table is checked the
same way. Code that needs a default imports `DEFAULTS` instead of re-typing a number. Each field's docstring
is what `--help` shows for its flag (kopf's `OperatorSettings` documents its fields the same way).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from .crypto.kdf import DEFAULT_ITERATIONS, DEFAULT_MAX_ITERATIONS, DEFAULT_MIN_ITERATIONS
from .egress import EgressPolicy, pod_addresses


@dataclass(frozen=True)
class Shard:
    """`--shard INDEX/COUNT`: this process handles the VaultBundles whose stable hash falls in its slot."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, _, count = text.partition("/")
        if not (index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
            raise ValueError("--shard must be INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/2")
        return cls(int(index), int(count))

    def owns(self, namespace: str, name: str) -> bool:
        """sha256 of "namespace/name", not `hash()`: the same answer in every process and on every replica."""
        digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


@dataclass(frozen=True)
class Settings:
    """How one operator process runs. Frozen: built once from the command line, then only read."""

    kubeconfig: str | None = None
    """Kubeconfig file when not running in a cluster (in a pod the ServiceAccount is used)."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch (`--namespace`, repeatable); empty means every namespace (`--all-namespaces`)."""

    workers: int | None = None
    """Crypto worker threads: parallel PBKDF2 derivations (unset: the CPU count)."""

    digest_key_file: str | None = None
    """Key for the HMAC digests shown in status (unset: kept in a Secret in $POD_NAMESPACE, created once)."""

    max_concurrent: int = 16
    """Reconciles running at once (at least 1)."""

    max_concurrent_per_namespace: int = 4
    """Reconciles of one namespace running at once, so one tenant cannot take every slot (namespaces take turns)."""

    reconcile_timeout_seconds: float = 300.0
    """Deadline of one reconcile cycle; a cycle past it is cancelled and reported as ReconcileTimeout."""

    s3_timeout_seconds: float = 60.0
    """Deadline of one whole S3 request (headers and body), so a slow endpoint cannot hold a reconcile."""

    min_kdf_iterations: int = DEFAULT_MIN_ITERATIONS
    """Lowest PBKDF2 iteration count a config blob may ask for (below it: KdfLimit)."""

    max_kdf_iterations: int = DEFAULT_MAX_ITERATIONS
    """Highest PBKDF2 iteration count a config blob may ask for (above it: KdfLimit, before any download)."""

    min_refresh_seconds: float = 10.0
    """Lower bound for any VaultBundle's refreshInterval."""

    drift_check_seconds: float = 3600.0
    """The driftCheckInterval of an external store target that sets none (the CRD's default, 1h)."""

    min_drift_check_seconds: float = 60.0
    """Lowest driftCheckInterval / resyncInterval a target may set, other than 0 (off); lower it on test beds only."""

    drift_debounce_seconds: float = 1.0
    """Wait after a hand edit of a managed Secret before repairing it: more edits meanwhile join the same repair."""

    metrics_host: str = "0.0.0.0"  # noqa: S104 - a pod's probes and Prometheus reach it on the pod IP
    """Address serving /metrics, /healthz and /readyz."""

    metrics_port: int = 8080
    """Port of /metrics, /healthz and /readyz."""

    metrics_tls_cert_file: str | None = None
    """Serve /healthz, /readyz and /metrics over TLS 1.2+ with this PEM certificate (unset: plain HTTP)."""

    metrics_tls_key_file: str | None = None
    """The unencrypted PEM key of the metrics TLS certificate."""

    metrics_token_file: str | None = None
    """Require `Authorization: Bearer <this file's content>` on /metrics (unset: no token; probes never need it)."""

    shard: Shard | None = None
    """INDEX/COUNT: handle only this slot of a stable hash of namespace/name, e.g. 0/2 (unset: all)."""

    leader_election_namespace: str | None = None
    """Run as one of several replicas: only the holder of a Lease in this namespace works (unset: no election)."""

    lease_seconds: float = 15.0
    """Leader Lease duration: how long a dead leader blocks a standby (it renews every third of it)."""

    backoff_base_seconds: float = 2.0
    """First retry delay after a transient failure; it doubles with each consecutive failure."""

    backoff_cap_seconds: float = 300.0
    """Longest delay between retries of a transient failure."""

    refresh_jitter: float = 0.1
    """Refreshes after a success are spread by up to this fraction of refreshInterval (0.1 = +-10%)."""

    rollout_min_interval_seconds: float = 60.0
    """Default of a VaultBundle's spec.rolloutMinInterval: workload restarts at most this often, changes coalesced."""

    kdf_iterations: int = DEFAULT_ITERATIONS
    """PBKDF2 iterations written into new config blobs (`token encode`, `share import`)."""

    egress_allow_local: bool = False
    """Let tenant URLs (S3 endpoint, store URLs) reach loopback and the pod's own IPs (test beds only)."""

    egress_deny_cidrs: tuple[str, ...] = ()
    """Also refuse tenant URLs in this CIDR, e.g. the pod or service network (repeatable)."""

    egress_allow_cidrs: tuple[str, ...] = ()
    """Re-open this CIDR inside a denied range, e.g. one in-cluster S3 (repeatable; never metadata addresses)."""

    def egress_policy(self, environ: Mapping[str, str] = os.environ) -> EgressPolicy:
        """The egress policy for tenant URLs; the pod's own IPs come from `POD_IP` / `POD_IPS` (downward API).
        A malformed CIDR or address is a ValueError naming it."""
        return EgressPolicy.build(
            allow_local=self.egress_allow_local,
            own_addresses=pod_addresses(environ),
            deny_cidrs=self.egress_deny_cidrs,
            allow_cidrs=self.egress_allow_cidrs,
        )

    @property
    def renew_seconds(self) -> float:
        """The leader renews its Lease every third of the lease duration (at least every second)."""
        return max(1.0, self.lease_seconds / 3)


DEFAULTS = Settings()


def format_duration(seconds: float) -> str:
    """Seconds as the duration text flags and chart values use ("10s", "1.5s"); `spec.parse_duration` reads it."""
    return f"{seconds:g}s"


def field_doc(name: str) -> str:
    """The docstring of one `Settings` field (the help text of its flag)."""
    if name not in {f.name for f in fields(Settings)}:
        raise KeyError(name)
    return _FIELD_DOCS.get(name, "")


def _field_docs() -> dict[str, str]:
    """Attribute docstrings are not kept at runtime: read them from this module's source once."""
    import ast  # noqa: PLC0415 - only needed here
    import inspect  # noqa: PLC0415
    import itertools  # noqa: PLC0415

    try:
        source = inspect.getsource(Settings)
    except (OSError, TypeError):  # no source shipped (e.g. a frozen build): flags then have no help text
        return {}
    (cls,) = ast.parse(source).body
    assert isinstance(cls, ast.ClassDef)
    body = cls.body
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = following.value.value
    return docs


_FIELD_DOCS = _field_docs()
