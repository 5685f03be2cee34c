"""The memory adapter's base repository: one table per aggregate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic

from shared.domain.paging import PageRequest
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

    def _page(self, match: Callable[[Doc], bool], field: str, page: PageRequest) -> list[M]:
        """One keyset page of the matches in the order of ``field`` then ``_id``: the
        records strictly beyond ``page.after`` in that order."""
        after = page.after

        def beyond(d: Doc) -> bool:
            if not match(d):
                return False
            if after is None:
                return True
            key, at = (d.get(field), d["_id"]), (after.value, after.id)
            try:
                return key < at if page.descending else key > at
            except TypeError:  # a value of another type: outside the range, as on a server
                return False

        return self._find(
            beyond,
            sort=lambda d: (d.get(field), d["_id"]),
            reverse=page.descending,
            limit=page.limit,
        )

    def _first(self, match: Callable[[Doc], bool]) -> M | None:
        found = self._find(match, limit=1)
        return found[0] if found else None
