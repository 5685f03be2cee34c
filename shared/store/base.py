"""Mapping between domain models and MongoDB documents (``id`` <-> ``_id``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from shared.clock import as_utc
from shared.domain.paging import PageRequest

M = TypeVar("M", bound=BaseModel)
Doc = dict[str, Any]


def to_doc(model: BaseModel) -> Doc:
    doc = model.model_dump(mode="python")
    doc["_id"] = doc.pop("id")
    return doc


def _aware(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, dict):
        return {k: _aware(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_aware(v) for v in value]
    return value


def from_doc(cls: type[M], doc: Mapping[str, Any]) -> M:
    data = {k: _aware(v) for k, v in doc.items() if k != "_id"}
    data["id"] = doc["_id"]
    return cls.model_validate(data)


class Repository(Generic[M]):
    """One aggregate's collection; subclasses add the queries and transitions."""

    model: type[M]

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.col = collection

    async def create_indexes(self) -> None:
        """Called once at start; subclasses declare their indexes."""

    async def get(self, id_: str) -> M | None:
        doc = await self.col.find_one({"_id": id_})
        return None if doc is None else from_doc(self.model, doc)

    async def _find(
        self,
        query: Mapping[str, Any],
        *,
        sort: list[tuple[str, int]] | None = None,
        limit: int = 0,
    ) -> list[M]:
        cursor = self.col.find(dict(query), sort=sort, limit=limit)
        return [from_doc(self.model, doc) async for doc in cursor]

    async def _page(self, query: Mapping[str, Any], field: str, page: PageRequest) -> list[M]:
        """One keyset page of ``query`` in the order of ``field`` then ``_id``."""
        direction = DESCENDING if page.descending else ASCENDING
        filters = dict(query)
        if page.after is not None:
            beyond = "$lt" if page.descending else "$gt"
            key = page.after
            filters = {
                "$and": [
                    filters,
                    {
                        "$or": [
                            {field: {beyond: key.value}},
                            {field: key.value, "_id": {beyond: key.id}},
                        ]
                    },
                ]
            }
        return await self._find(
            filters, sort=[(field, direction), ("_id", direction)], limit=page.limit
        )
