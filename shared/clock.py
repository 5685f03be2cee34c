"""Time and identifiers, in one place so that every record uses the same conventions."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Timezone-aware UTC now, truncated to milliseconds (MongoDB stores milliseconds)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(value: datetime) -> datetime:
    """Values read back from MongoDB are naive UTC; make them aware again."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def new_id(prefix: str = "") -> str:
    """A short random identifier, URL- and filename-safe."""
    return prefix + secrets.token_hex(8)
