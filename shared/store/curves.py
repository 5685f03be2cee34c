"""Learning curves on point documents: intermediate values, the pruner's memory, and
the decision to prune.

Point documents carry ``intermediate`` (step -> value; Mongo keys are strings),
``pruner_attrs`` (what an Optuna pruner remembers about the trial between calls, as
JSON) and ``pruned_step``. Every write is conditional on the point being ``pending``
and, for batch points, on the attempt (job id) that owns it, so a duplicate, a late
report, or one from a superseded attempt changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from shared.clock import utcnow
from shared.store.base import Doc
from shared.store.records import Trial, trial_from_doc
from shared.store.transitions import HELD, PRUNE, status_filter


def _owned(point_id: str, job_id: str | None) -> dict[str, Any]:
    query: dict[str, Any] = {"_id": point_id, "status": HELD.value}
    if job_id is not None:
        query["job_id"] = job_id
    return query


class CurveRepository:
    """The curve writes on the ``points`` collection (batch and online points alike)."""

    def __init__(self, points: AsyncCollection[Doc]) -> None:
        self.points = points

    async def trials(self, task_id: str, segment: str) -> list[Trial]:
        cursor = self.points.find(
            {"task_id": task_id, "segment": segment}, sort=[("index", ASCENDING)]
        )
        return [trial_from_doc(doc) async for doc in cursor]

    async def report(self, point_id: str, step: int, value: float, job_id: str | None) -> bool:
        """Store one intermediate value; False if the step is known (the first value
        stays) or the point is no longer open to this attempt."""
        field = f"intermediate.{step}"
        result = await self.points.update_one(
            {**_owned(point_id, job_id), field: {"$exists": False}}, {"$set": {field: value}}
        )
        return result.modified_count == 1

    async def remember(self, point_id: str, attrs: dict[str, Any], job_id: str | None) -> None:
        """Keep what the pruner noted about the trial (SuccessiveHalving's rungs)."""
        await self.points.update_one(
            _owned(point_id, job_id), {"$set": {"pruner_attrs": json.dumps(attrs)}}
        )

    async def prune(self, point_id: str, step: int, value: float, job_id: str | None) -> bool:
        """pending -> evaluated with the value reported at ``step``, once."""
        result = await self.points.update_one(
            {**_owned(point_id, job_id), "status": status_filter(PRUNE)},
            {
                "$set": {
                    "status": PRUNE.target.value,
                    "loss": value,
                    "pruned_step": step,
                    "counted_job_id": job_id,
                    "evaluated": utcnow(),
                }
            },
        )
        return result.modified_count == 1


__all__ = ["CurveRepository", "Trial", "trial_from_doc"]
