"""The retry model (backoff.py): capped exponential backoff with full jitter for transient failures, the
refresh interval for permanent ones, jittered refreshes after success; per VaultBundle, reset on success."""

from __future__ import annotations

import random

import pytest

from vaultbundle.backoff import Backoff, Retry
from vaultbundle.errors import Reason
from vaultbundle.settings import DEFAULTS


class MaxRandom(random.Random):
    """Always the top of the range: makes the ceiling of each delay observable."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_ceilings_double_from_the_base_up_to_the_cap() -> None:
    backoff = Backoff(base=2.0, cap=60.0)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_defaults_come_from_settings() -> None:
    backoff = Backoff()
    assert (backoff.base, backoff.cap, backoff.refresh_jitter) == (
        DEFAULTS.backoff_base_seconds,
        DEFAULTS.backoff_cap_seconds,
        DEFAULTS.refresh_jitter,
    )


def test_full_jitter_stays_within_zero_and_the_ceiling_and_is_seeded() -> None:
    backoff = Backoff(base=1.0, cap=30.0)
    delays = [backoff.delay(n, random.Random(7)) for n in range(1, 10)]
    assert delays == [backoff.delay(n, random.Random(7)) for n in range(1, 10)]  # deterministic per seed
    assert all(0.0 <= d <= backoff.ceiling(n) for n, d in zip(range(1, 10), delays, strict=True))
    spread = [backoff.delay(6, random.Random(seed)) for seed in range(200)]
    assert min(spread) < 5.0 and max(spread) > 25.0  # full jitter: spread over the whole range


def test_transient_failures_back_off_and_a_success_resets_the_count() -> None:
    retry = Retry(Backoff(base=2.0, cap=10.0, refresh_jitter=0.0), MaxRandom())
    schedule = [retry.next_delay(Reason.S3_UNREACHABLE, 60.0) for _ in range(5)]
    assert schedule == [2.0, 4.0, 8.0, 10.0, 10.0] and retry.failures == 5
    assert retry.next_delay(None, 60.0) == 60.0 and retry.failures == 0
    assert retry.next_delay(Reason.THROTTLED, 60.0) == 2.0  # starts again from the base


def test_permanent_failures_wait_for_the_refresh_interval_or_a_change() -> None:
    retry = Retry(Backoff(base=2.0, cap=10.0), MaxRandom())
    assert not Reason.WRONG_PASSPHRASE.transient
    assert retry.next_delay(Reason.WRONG_PASSPHRASE, 60.0) == 60.0
    assert retry.next_delay(Reason.TARGET_FAILED, 60.0) == 60.0
    assert retry.next_delay(Reason.INVALID_SPEC, None) is None  # no timer: only a spec change wakes it
    assert retry.failures == 3
    assert retry.next_delay(Reason.UNAVAILABLE, 60.0) == 10.0  # 4th failure in a row: 2*2**3 = 16, capped at 10


@pytest.mark.parametrize(
    "reason",
    [Reason.S3_UNREACHABLE, Reason.KUBERNETES_API_ERROR, Reason.STATUS_UPDATE_FAILED, Reason.INTERNAL_ERROR],
)
def test_the_failures_the_operator_itself_reports_are_transient(reason: Reason) -> None:
    retry = Retry(Backoff(base=3.0, cap=100.0), MaxRandom())
    assert retry.next_delay(reason, 3600.0) == 3.0


def test_refreshes_after_success_are_spread() -> None:
    retry = Retry(Backoff(refresh_jitter=0.1), random.Random(1))
    delays = [d for d in (retry.next_delay(None, 100.0) for _ in range(200)) if d is not None]
    assert len(delays) == 200 and all(90.0 <= d <= 110.0 for d in delays) and len({round(d, 3) for d in delays}) > 100
    assert retry.next_delay(None, None) is None  # suspended: no timer
