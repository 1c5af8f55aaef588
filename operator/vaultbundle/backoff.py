"""When a VaultBundle is reconciled next: the one retry model of the operator.

* **Success**: after its refreshInterval, spread by +-`refresh_jitter` so a thousand VaultBundles created
  together do not all poll S3 in the same second. The failure count goes back to 0.
* **Transient failure** (`Reason.transient`: S3 or an API unreachable, throttling, a lost check-and-set, a
  status patch that failed, a crash): capped exponential backoff with full jitter, a random delay between 0 and
  `min(cap, base * 2**(failures - 1))`, so retries of one outage neither hammer the server nor synchronise.
* **Permanent failure** (wrong passphrase, refused rollback, a Secret we do not own, ...): waiting does not fix
  it, so the next try is at the refresh interval, or at once when the spec or a source Secret changes (the
  controller wakes the worker). No timer at all when there is no refresh interval (invalid spec, suspended).

The counter is per VaultBundle (one `Retry` per worker); the random source is injectable for tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .errors import Reason
from .settings import DEFAULTS

_SHARED_RNG = random.Random()  # noqa: S311 - jitter for retry timing, not a secret


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter; the numbers come from `Settings`."""

    base: float = DEFAULTS.backoff_base_seconds
    cap: float = DEFAULTS.backoff_cap_seconds
    refresh_jitter: float = DEFAULTS.refresh_jitter

    def ceiling(self, failures: int) -> float:
        """The longest delay after *failures* consecutive failures (1, 2, ...)."""
        return min(self.cap, self.base * 2.0 ** max(0, failures - 1))

    def delay(self, failures: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.ceiling(failures))

    def refresh(self, seconds: float, rng: random.Random) -> float:
        return seconds * rng.uniform(1.0 - self.refresh_jitter, 1.0 + self.refresh_jitter)


@dataclass
class Retry:
    """The retry state of one VaultBundle: how many cycles in a row failed."""

    backoff: Backoff = field(default_factory=Backoff)
    # one generator for all (the event loop is one thread): a Random holds ~2.5 KiB of state, 25 MiB at 10,000
    rng: random.Random = field(default_factory=lambda: _SHARED_RNG)
    failures: int = 0

    def next_delay(self, failure: Reason | None, refresh_seconds: float | None) -> float | None:
        """Seconds until the next cycle (None: only when something changes), given how this one ended."""
        if failure is None:
            self.failures = 0
            return None if refresh_seconds is None else self.backoff.refresh(refresh_seconds, self.rng)
        self.failures += 1
        if failure.transient:
            return self.backoff.delay(self.failures, self.rng)
        return refresh_seconds
