"""Mapping between domain models and stored documents (``id`` <-> ``_id``).

Both adapters keep documents in this shape: the MongoDB one on the server, the memory one
in dictionaries, so that the monitor's raw rows look the same from either.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from shared.clock import as_utc

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
