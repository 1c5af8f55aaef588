"""SDK errors -> reasons: the shared tables, and that messages carry only what the mapper chose."""

from __future__ import annotations

import pytest

from vaultbundle.errors import Reason, TargetError
from vaultbundle.targets.errormap import DEFAULT_MESSAGES, Messages, code_reason, first_match, reason_for_status


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, Reason.REJECTED),
        (401, Reason.AUTH_FAILED),
        (403, Reason.FORBIDDEN),
        (404, Reason.NOT_FOUND),
        (409, Reason.CONFLICT),
        (412, Reason.CONFLICT),
        (422, Reason.REJECTED),
        (429, Reason.THROTTLED),
        (500, Reason.UNAVAILABLE),
        (503, Reason.UNAVAILABLE),
        (418, Reason.REJECTED),
    ],
)
def test_reason_for_status(status: int, reason: Reason) -> None:
    assert reason_for_status(status) is reason


def test_unknown_status_takes_the_stores_default() -> None:
    assert reason_for_status(418, default=Reason.STORE_API_ERROR) is Reason.STORE_API_ERROR
    assert reason_for_status(404, default=Reason.STORE_API_ERROR) is Reason.NOT_FOUND


def test_transient_reasons_from_the_table_are_retried() -> None:
    assert reason_for_status(429).transient and reason_for_status(502).transient and reason_for_status(409).transient
    assert not reason_for_status(403).transient and not reason_for_status(401).transient


def test_code_reason_looks_up_service_codes() -> None:
    table = {Reason.THROTTLED: {"SlowDown", "Throttling"}, Reason.NOT_FOUND: {"NoSuchKey"}}
    assert code_reason("SlowDown", table) is Reason.THROTTLED
    assert code_reason("NoSuchKey", table) is Reason.NOT_FOUND
    assert code_reason("Other", table) is None


class Base(Exception):
    pass


class Child(Base):
    pass


class Other(Exception):
    pass


def test_first_match_is_ordered_and_follows_subclasses() -> None:
    rules = [(Child, Reason.CONFLICT), ((Base, Other), Reason.REJECTED)]
    assert first_match(Child(), rules) is Reason.CONFLICT
    assert first_match(Base(), rules) is Reason.REJECTED
    assert first_match(Other(), rules) is Reason.REJECTED
    assert first_match(ValueError(), rules) is None


def test_messages_are_the_stores_fixed_text_never_the_sdks() -> None:
    messages = Messages({Reason.FORBIDDEN: "{what}: access denied ({status}); check the policy"})
    error = messages.error(Reason.FORBIDDEN, "writing 'DB'", status=403)
    assert isinstance(error, TargetError) and error.reason is Reason.FORBIDDEN
    assert str(error) == "writing 'DB': access denied (403); check the policy"
    # a reason the store's table leaves out gets the store-neutral words
    assert str(messages.error(Reason.THROTTLED, "x")) == DEFAULT_MESSAGES[Reason.THROTTLED].format(what="x")
    # a reason no table knows still names the operation and the reason
    assert str(messages.error(Reason.KMS_ERROR, "x")) == "x: KmsError"
