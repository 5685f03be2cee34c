"""The memory adapter's base repository: one table per aggregate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic

from shared.store.documents import Doc, M, from_doc
from shared.store.memory.table import Table


class MemoryRepository(Generic[M]):
    model: type[M]

    def __init__(self, table: Table) -> None:
        self.table = table

    async def get(self, id_: str) -> M | None:
        doc = self.table.get(id_)
        return None if doc is None else from_doc(self.model, doc)

    def _find(
        self,
        match: Callable[[Doc], bool],
        *,
        sort: Callable[[Doc], Any] | None = None,
        reverse: bool = False,
        limit: int = 0,
    ) -> list[M]:
        docs = self.table.find(match, sort=sort, reverse=reverse, limit=limit)
        return [from_doc(self.model, d) for d in docs]

    def _first(self, match: Callable[[Doc], bool]) -> M | None:
        found = self._find(match, limit=1)
        return found[0] if found else None
