"""Learning curves on the memory points table (see :mod:`shared.store.curves`): every
write needs the point pending and, for a batch point, owned by ``job_id``."""

from __future__ import annotations

import json
from typing import Any

from shared.clock import utcnow
from shared.store.documents import Doc
from shared.store.memory.points import in_segment, move
from shared.store.memory.table import Table, has_field, set_field
from shared.store.records import Trial, trial_from_doc
from shared.store.transitions import HELD, PRUNE


def owned(doc: Doc | None, job_id: str | None) -> bool:
    if doc is None or doc.get("status") != HELD.value:
        return False
    return job_id is None or doc.get("job_id") == job_id


class MemoryCurveRepository:
    def __init__(self, points: Table) -> None:
        self.points = points

    async def trials(self, task_id: str, segment: str) -> list[Trial]:
        docs = self.points.find(in_segment(task_id, segment), sort=lambda d: d["index"])
        return [trial_from_doc(d) for d in docs]

    async def report(self, point_id: str, step: int, value: float, job_id: str | None) -> bool:
        path = f"intermediate.{step}"
        doc = self.points.get(point_id)
        if not owned(doc, job_id) or doc is None or has_field(doc, path):
            return False
        self.points.update(point_id, lambda d: set_field(d, path, value))
        return True

    async def remember(self, point_id: str, attrs: dict[str, Any], job_id: str | None) -> None:
        if owned(self.points.get(point_id), job_id):
            text = json.dumps(attrs)
            self.points.update(point_id, lambda d: d.update(pruner_attrs=text))

    async def prune(self, point_id: str, step: int, value: float, job_id: str | None) -> bool:
        if not owned(self.points.get(point_id), job_id):
            return False

        def change(d: Doc) -> None:
            d.update(loss=value, pruned_step=step, counted_job_id=job_id, evaluated=utcnow())

        return move(self.points, point_id, PRUNE, change)
