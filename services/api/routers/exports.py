"""``/api/v1/tasks/{id}/record``: a task in one document, for the exports
(``hpo export --optuna-storage``, ``hpo mlflow``) and any tool of the user's own."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from services.api.deps import Ctx, CurrentUser
from services.storage.records import task_record
from shared.exports.record import TaskRecord

router = APIRouter(prefix="/api/v1", tags=["tasks"])


@router.get("/tasks/{task_id}/record")
async def get_record(task_id: str, ctx: Ctx, user: CurrentUser) -> TaskRecord:
    """Every point with its curve, attempts, site, times and metrics download URL."""
    task = await ctx.store.tasks.get_for_owner(task_id, user.owner)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    return await task_record(ctx.store, task, artifacts=ctx.artifacts)
