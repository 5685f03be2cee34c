"""Is a job still alive? What one scan reads from a job directory, and the verdict.

A job is lost when its node agent stopped touching the heartbeat for longer than the
configured limit (node crash, agent killed, filesystem trouble), or when the batch
system says the job is over but no final status was written (the agent died before
it could write one, or never started). The "done" verdict needs two scans in a row,
so a status written just before the batch job ended is never mistaken for a loss.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.batch import BatchState
from edge.documents import NodeStatus
from edge.fsproto import file_age, heartbeat_age
from edge.harvester.jobs import TrackedJob
from edge.harvester.payloadfile import PayloadFileLimits

DONE_SCANS_BEFORE_LOST = 2


@dataclass(frozen=True)
class Observation:
    status: NodeStatus | None
    heartbeat_age: float | None
    staged_age: float | None
    kill_requested: bool


def observe(job: TrackedJob, limits: PayloadFileLimits | None = None) -> Observation:
    """Read the job's files (blocking: call it off the event loop). PayloadFileError
    if its status.json cannot be read safely (edge/harvester/payloadfile.py)."""
    return Observation(
        status=job.read_status(limits),
        heartbeat_age=heartbeat_age(job.paths),
        staged_age=file_age(job.paths.job_json),
        kill_requested=job.paths.kill.exists(),
    )


def lost_reason(
    obs: Observation, state: BatchState, *, done_scans: int, submitted: bool, limit: float
) -> str | None:
    """Why the (non-terminal) job is lost, for the user; None while it looks alive.

    ``done_scans`` counts consecutive scans, this one included, in which the batch
    system said done.
    """
    stopped = "it was asked to stop; " if obs.kill_requested else ""
    if obs.heartbeat_age is not None and obs.heartbeat_age > limit:
        return (
            f"{stopped}no heartbeat from the node agent for {obs.heartbeat_age:.0f} s "
            f"(limit {limit:.0f} s): the node or the agent was lost"
        )
    if state == "done" and done_scans >= DONE_SCANS_BEFORE_LOST:
        started = "started" if obs.heartbeat_age is not None else "never started"
        return (
            f"{stopped}the batch job ended but the node agent ({started}) wrote no final "
            "status; see agent.log in the job directory"
        )
    if not submitted and obs.heartbeat_age is None and (obs.staged_age or 0.0) > limit:
        return "the job was staged but never submitted to the batch system"
    return None
