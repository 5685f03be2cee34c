"""When the harvester declares a job lost, and what it tells the user."""

from __future__ import annotations

from edge.batch import BatchState
from edge.documents import NodeStatus
from edge.harvester.liveness import Observation, lost_reason

RUNNING = NodeStatus(state="running")


def verdict(
    obs: Observation, state: BatchState = "running", done_scans: int = 0, submitted: bool = True
) -> str | None:
    return lost_reason(obs, state, done_scans=done_scans, submitted=submitted, limit=60.0)


def test_a_fresh_heartbeat_is_alive() -> None:
    assert verdict(Observation(RUNNING, 5.0, 100.0, False)) is None


def test_a_stale_heartbeat_is_lost_with_its_age() -> None:
    reason = verdict(Observation(RUNNING, 95.0, 300.0, False))
    assert reason is not None
    assert "no heartbeat from the node agent for 95 s (limit 60 s)" in reason


def test_a_queued_job_without_heartbeat_is_not_lost() -> None:
    assert verdict(Observation(None, None, 3600.0, False)) is None


def test_batch_done_without_final_status_needs_two_scans() -> None:
    obs = Observation(RUNNING, 1.0, 10.0, False)
    assert verdict(obs, "done", done_scans=1) is None
    reason = verdict(obs, "done", done_scans=2)
    assert reason is not None
    assert "node agent (started) wrote no final status" in reason


def test_a_kill_that_never_reached_an_agent_says_so() -> None:
    reason = verdict(Observation(None, None, 10.0, True), "done", done_scans=2)
    assert reason is not None
    assert reason.startswith("it was asked to stop; ")
    assert "never started" in reason


def test_a_job_staged_but_never_submitted_is_lost_after_the_limit() -> None:
    assert verdict(Observation(None, None, 30.0, False), "unknown", submitted=False) is None
    reason = verdict(Observation(None, None, 90.0, False), "unknown", submitted=False)
    assert reason == "the job was staged but never submitted to the batch system"
