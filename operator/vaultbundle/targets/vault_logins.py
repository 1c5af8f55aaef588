"""Vault tokens from Kubernetes-auth logins, kept between cycles until shortly before their TTL ends.

Without it every sync and every drift check of a `hashicorpVault` target with Kubernetes auth costs a
TokenRequest (an API write) and a login (for which Vault sends a TokenReview to the apiserver). With it, a cycle
that still holds a token for the same login identity re-uses it after one `lookup-self` (the same check token
auth makes); a token Vault no longer accepts is dropped and the cycle logs in afresh.

What is NOT skipped: the policy admission of the ServiceAccount (`Credentials`) and the read of the
ServiceAccount with its `vaultbundle.io/token-audiences` opt-in (`tokens.opted_in_account`) run on every cycle,
so revoking the opt-in takes effect on the next cycle, not at the token's expiry.

The key is everything that decides which token a login returns: Vault address, Vault namespace, CA bundle,
auth mount, role, and the ServiceAccount's namespace, name and audiences. Two targets with the same key would
log in as the same identity and get equivalent tokens. Tokens are kept in this process's memory only (never
logged, never in a repr), at most `MAX_ENTRIES` of them, each at most `MAX_SECONDS`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_ENTRIES = 4096
MAX_SECONDS = 3600.0  # even a long-lived token is looked up anew at least hourly
MARGIN_SECONDS = 60.0  # dropped this long before Vault would expire it (plus a tenth of its TTL)

LoginKey = tuple[str, ...]


@dataclass
class _Entry:
    token: str = field(repr=False)
    expires: float


class VaultLogins:
    """A bounded map from login identity to a Vault token and its expiry (monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_ENTRIES) -> None:
        self._clock, self._max = clock, max_entries
        self._entries: OrderedDict[LoginKey, _Entry] = OrderedDict()

    def __repr__(self) -> str:
        return f"VaultLogins({len(self._entries)} held)"

    def get(self, key: LoginKey) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry.expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.token

    def put(self, key: LoginKey, token: str, ttl_seconds: float) -> None:
        """Keep *token* until shortly before *ttl_seconds* from now; a token too short-lived to gain anything
        (or without a TTL Vault told us) is not kept."""
        keep = min(ttl_seconds, MAX_SECONDS) - MARGIN_SECONDS - ttl_seconds / 10
        if not token or keep <= 0:
            self.drop(key)
            return
        self._entries[key] = _Entry(token, self._clock() + keep)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def drop(self, key: LoginKey) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


LOGINS = VaultLogins()  # the operator's one cache (one process, one event loop)
