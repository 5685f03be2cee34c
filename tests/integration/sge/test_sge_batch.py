"""The Grid Engine adapter against a real one-node Grid Engine 8.1.9: jobs run the real
node agent, GPUs are counted by the cell's ``gpu`` consumable, qdel stops a payload."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from edge.batch.port import BatchState
from edge.documents import NodeStatus
from edge.fsproto import JobPaths
from tests.integration.sge.conftest import SgeFactory, StageFactory, TrackedSge

pytestmark = [pytest.mark.sge, pytest.mark.timeout(120)]

WRITE_OUTPUT = 'printf \'{"status": 0, "loss": 0.25}\' > output.json\n'


def wait_until(predicate: Callable[[], bool], what: str, limit: float = 90.0) -> None:
    """Poll; the limit only keeps a broken cell from hanging the suite."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"not within {limit:.0f} s: {what}"
        time.sleep(0.25)


def agent_log(paths: JobPaths) -> str:
    return paths.agent_log.read_text() if paths.agent_log.exists() else "(none)"


def status_of(paths: JobPaths) -> NodeStatus | None:
    if not paths.status.exists():
        return None
    return NodeStatus.model_validate_json(paths.status.read_text())


def poll_until_done(batch: TrackedSge, batch_id: str, paths: JobPaths) -> list[BatchState]:
    seen: list[BatchState] = []

    def done() -> bool:
        seen.append(batch.poll([batch_id])[batch_id])
        return seen[-1] == "done"

    wait_until(done, f"job {batch_id} done; agent.log: {agent_log(paths)}")
    return seen


def test_a_job_runs_the_real_agent_and_its_payload(sge: SgeFactory, stage: StageFactory) -> None:
    paths = stage("sh ./run.sh", task_files={"run.sh": WRITE_OUTPUT})
    batch = sge(walltime="00:05:00", gpus_per_node=1)
    batch_id = batch.submit(paths.dir)
    assert batch_id.isdigit()
    seen = poll_until_done(batch, batch_id, paths)
    assert set(seen) <= {"running", "done"}
    status = status_of(paths)
    assert status is not None and status.state == "finished", agent_log(paths)
    assert json.loads((paths.point_dir(0) / "output.json").read_text()) == {
        "status": 0,
        "loss": 0.25,
    }
    assert f"batch job {batch_id}" in agent_log(paths)
    (worker,) = (paths.dir.parent.parent / "workers").iterdir()
    script = (worker / "batch.sh").read_text()
    assert "#$ -l h_rt=0:05:00" in script and "#$ -l gpu=1" in script


def test_the_gpu_consumable_holds_back_a_job_that_does_not_fit(
    sge: SgeFactory, stage: StageFactory
) -> None:
    """Six GPUs: a 4-GPU job runs, a second 4-GPU job waits, a 1-GPU job passes it."""
    hold = "while [ ! -e release ]; do sleep 0.2; done; " + WRITE_OUTPUT
    first = stage(hold, job_id="job-a")
    second = stage(WRITE_OUTPUT, job_id="job-b")
    small = stage(WRITE_OUTPUT, job_id="job-c")
    four = sge(gpus_per_node=4)
    a = four.submit(first.dir)
    wait_until(lambda: status_of(first) is not None, f"job a started; {agent_log(first)}")
    b = four.submit(second.dir)
    c = sge(gpus_per_node=1).submit(small.dir)
    wait_until(lambda: four.poll([c])[c] == "done", f"job c done; {agent_log(small)}")
    assert status_of(small) is not None  # a scheduling pass ran after b was queued...
    assert status_of(second) is None  # ...and did not start b: 4 + 4 > 6
    assert four.poll([a, b]) == {a: "running", b: "running"}  # b is queued
    (first.work / "release").touch()
    poll_until_done(four, b, second)
    status = status_of(second)
    assert status is not None and status.state == "finished", agent_log(second)


def test_qdel_stops_the_payload(sge: SgeFactory, stage: StageFactory) -> None:
    paths = stage("touch started; sleep 600")
    batch = sge()
    batch_id = batch.submit(paths.dir)
    wait_until(lambda: (paths.work / "started").exists(), f"payload started; {agent_log(paths)}")
    batch.cancel(batch_id)
    poll_until_done(batch, batch_id, paths)
    wait_until(
        lambda: (s := status_of(paths)) is not None and s.state != "running",
        f"agent recorded the end; {agent_log(paths)}",
    )
    status = status_of(paths)
    assert status is not None and status.state in ("killed", "preempted"), agent_log(paths)
