"""Small network helpers shared by the embedded servers, the clients and the dev scripts."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now.

    The kernel picks it by binding port 0. Another process may still take it before the
    caller binds it, so a server started on it must report a failed bind clearly.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


RETRY_AFTER_CAP = 300.0
"""The longest Retry-After a client honours; a longer one is taken as this."""


def retry_after(value: str | None) -> float | None:
    """The pause a ``Retry-After`` header asks for, in seconds (RFC 9110: a number of
    seconds or an HTTP date), capped at :data:`RETRY_AFTER_CAP`; None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), RETRY_AFTER_CAP)
