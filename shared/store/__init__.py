"""Persistence: the store port and its adapters, chosen by URL scheme.

``mongodb://host:port/db`` (any MongoDB-protocol server: MongoDB, or SecantusDB in the
embedded default and the contract tests) and ``memory://name`` (one process's
dictionaries: tests and ephemeral runs). See :mod:`shared.store.port` for the contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.store.errors import DuplicateKeyError
from shared.store.port import Store
from shared.store.transitions import attempt_job_id

SCHEMES = ("mongodb", "mongodb+srv", "memory")
"""The URL schemes :func:`open_store` has an adapter for."""


def open_store(url: str, *, timeout_ms: int = 10_000, listeners: Sequence[Any] = ()) -> Store:
    """Build (not yet connect) the adapter for ``url``.

    ``listeners`` are PyMongo command listeners (the operations metrics count the
    database's errors with them); the memory adapter has no commands to listen to.
    """
    scheme = url.split(":", 1)[0]
    if scheme in ("mongodb", "mongodb+srv"):
        from shared.store.mongo import MongoStore

        return MongoStore(url, timeout_ms=timeout_ms, listeners=listeners)
    if scheme == "memory":
        from shared.store.memory import MemoryStore

        return MemoryStore.named(url)
    raise ValueError(f"unsupported store URL scheme {scheme!r}: use mongodb:// or memory://")


__all__ = ["SCHEMES", "DuplicateKeyError", "Store", "attempt_job_id", "open_store"]
