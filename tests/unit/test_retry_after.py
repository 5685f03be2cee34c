"""Reading Retry-After (RFC 9110): seconds or an HTTP date, bounded, None otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from shared.netutil import RETRY_AFTER_CAP, retry_after


def test_seconds_and_dates_are_read_and_bounded() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(" 0 ") == 0.0
    assert retry_after("86400") == RETRY_AFTER_CAP
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    pause = retry_after(soon)
    assert pause is not None and 80 <= pause <= 90
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after(past) == 0.0


def test_absent_or_unreadable_is_none() -> None:
    assert retry_after(None) is None
    assert retry_after("") is None
    assert retry_after("soon") is None
    assert retry_after("-3") is None
