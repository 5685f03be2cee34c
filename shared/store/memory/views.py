"""The monitor's stored views in memory (see :mod:`shared.store.views`)."""

from __future__ import annotations

import copy
from typing import Any

from shared.store.documents import Doc


class MemoryViewRepository:
    def __init__(self) -> None:
        self._views: dict[str, Doc] = {}

    async def get(self, task_id: str) -> Doc | None:
        view = self._views.get(task_id)
        return None if view is None else copy.deepcopy(view)

    async def put(self, task_id: str, stamp: dict[str, Any], body: dict[str, Any]) -> None:
        self._views[task_id] = copy.deepcopy({"_id": task_id, "stamp": stamp, **body})
