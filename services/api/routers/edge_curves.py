"""``/edge/v1/jobs/{job}/intermediate``: the learning curves a site relays.

The harvester sends the new lines of a job's intermediate-values file under the job's
lease generation. A report from a lost or superseded lease is refused (``kill``), one
for a job that has ended stores nothing, and a step already stored keeps its first
value, so the harvester may resend after a restart. When the task's pruner stops the
point, the reply says ``kill`` with the reason, as the job's heartbeat replies will.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from services.api.curves import record_curve, task_pruner
from services.api.deps import Ctx, EdgeToken
from services.api.routers.edge import job_of, kill_reason
from shared.domain.models import JobStatus
from shared.edge_api import IntermediateReply, IntermediateReport

router = APIRouter(prefix="/edge/v1", tags=["edge"])


@router.post("/jobs/{job_id}/intermediate")
async def intermediate(
    job_id: str, body: IntermediateReport, ctx: Ctx, token: EdgeToken
) -> IntermediateReply:
    job = await job_of(ctx, token, job_id)
    if body.generation != job.generation:
        return IntermediateReply(accepted=False, kill=True, detail="lease lost or superseded")
    if job.status not in (JobStatus.LEASED, JobStatus.RUNNING):
        return IntermediateReply(accepted=False, detail=f"the job is {job.status.value}")
    point_id = body.point_id or job.point_ids[0]
    if point_id not in job.point_ids:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body", "point_id"], "msg": f"not a point of job {job.id}"}],
        )
    task = await ctx.store.tasks.get(job.task_id)
    point = await ctx.store.points.get(point_id)
    if task is None or point is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id} at this site")
    values = [(v.step, v.value) for v in body.values]
    outcome = await record_curve(
        ctx, point, values, task_pruner(task, point.segment), job_id=job.id
    )
    reason = await kill_reason(ctx, job)
    return IntermediateReply(accepted=True, stored=outcome.stored, kill=bool(reason), detail=reason)
