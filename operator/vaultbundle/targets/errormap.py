"""SDK errors -> `TargetError`, table-driven and the same for every store.

A store's mapper looks up the error's class (`first_match`), its service error code (`code_reason`) or its
HTTP status (`reason_for_status`) to get a `Reason`, and builds the error from its own `Messages` table: a
fixed text per reason, with `{what}` (the operation and object) and facts the mapper chose (`{status}`,
`{code}`, `{type}`: a status number, an error code, an exception class name). The SDK's or the server's own
message text is never used: it may echo request data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from ..errors import Reason, TargetError, VaultBundleError

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]

STATUS_REASONS: Mapping[int, Reason] = {
    400: Reason.REJECTED,
    401: Reason.AUTH_FAILED,
    403: Reason.FORBIDDEN,
    404: Reason.NOT_FOUND,
    409: Reason.CONFLICT,
    412: Reason.CONFLICT,
    422: Reason.REJECTED,
    429: Reason.THROTTLED,
}

# Store-neutral wording, for the reasons a store's table leaves out.
DEFAULT_MESSAGES: Mapping[Reason, str] = {
    Reason.AUTH_FAILED: "{what}: the store rejected the credentials",
    Reason.FORBIDDEN: "{what}: access denied",
    Reason.NOT_FOUND: "{what}: not found",
    Reason.CONFLICT: "{what}: changed concurrently; retrying",
    Reason.REJECTED: "{what}: the store rejected the request",
    Reason.THROTTLED: "{what}: rate limited; retrying later",
    Reason.UNAVAILABLE: "{what}: the store is unreachable or unavailable; retrying later",
    Reason.STORE_API_ERROR: "{what}: unexpected answer from the store",
}


def reason_for_status(status: int, *, default: Reason = Reason.REJECTED) -> Reason:
    """The reason for an HTTP status: the table above, any 5xx is `Unavailable`, else *default*."""
    if status in STATUS_REASONS:
        return STATUS_REASONS[status]
    if status >= 500:
        return Reason.UNAVAILABLE
    return default


def code_reason(code: str, table: Mapping[Reason, Collection[str]]) -> Reason | None:
    """The reason whose set of service error codes holds *code*, if any."""
    return next((reason for reason, codes in table.items() if code in codes), None)


def first_match(exc: BaseException, rules: Sequence[tuple[ExceptionTypes, Reason]]) -> Reason | None:
    """The reason of the first rule whose exception class(es) *exc* is an instance of."""
    return next((reason for types, reason in rules if isinstance(exc, types)), None)


@contextlib.contextmanager
def translated(catch: ExceptionTypes, to_error: Callable[[Any], TargetError | None]) -> Iterator[None]:
    """Around SDK calls: an exception of *catch* becomes `to_error(exc)`, raised `from None` so the SDK's
    text stays out of logs and status; `to_error` returning None lets it pass unchanged. Our own errors pass."""
    try:
        yield
    except VaultBundleError:
        raise
    except catch as exc:
        error = to_error(exc)
        if error is None:
            raise
        raise error from None


class Messages:
    """One store's fixed message per reason (falling back to the store-neutral words)."""

    def __init__(self, table: Mapping[Reason, str]) -> None:
        self.table = {**DEFAULT_MESSAGES, **table}

    def error(self, reason: Reason, what: str, **facts: Any) -> TargetError:
        template = self.table.get(reason, "{what}: " + reason.value)
        return TargetError(reason, template.format(what=what, **facts))
