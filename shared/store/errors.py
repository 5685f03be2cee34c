"""The store's own errors, raised alike by every adapter."""

from __future__ import annotations


class DuplicateKeyError(Exception):
    """An insert collided with a record holding the same unique key (its id, or a
    unique index such as a point's (task, segment, index) or a token's hash)."""
