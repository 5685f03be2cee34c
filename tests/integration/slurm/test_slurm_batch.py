"""The Slurm adapter against a real one-node Slurm: jobs run the real node agent."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.batch.port import BatchState, BatchSubmitError
from edge.batch.script import WorkerRecord
from edge.documents import NodeStatus
from edge.fsproto import JobPaths
from tests.integration.slurm.conftest import SlurmFactory, StageFactory, TrackedSlurm

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(60)]

WRITE_OUTPUT = 'printf \'{"status": 0, "loss": 0.25}\' > output.json\n'


def wait_until(predicate: Callable[[], bool], timeout: float = 40.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.25)


def poll_until_done(
    batch: TrackedSlurm, batch_id: str, paths: JobPaths, timeout: float = 40.0
) -> list[BatchState]:
    seen: list[BatchState] = []

    def done() -> bool:
        seen.append(batch.poll([batch_id])[batch_id])
        return seen[-1] == "done"

    wait_until(done, timeout, f"batch job {batch_id} done; agent.log: {agent_log(paths)}")
    return seen


def agent_log(paths: JobPaths) -> str:
    return paths.agent_log.read_text() if paths.agent_log.exists() else "(none)"


def status_of(paths: JobPaths) -> NodeStatus:
    return NodeStatus.model_validate_json(paths.status.read_text())


def test_a_job_runs_the_real_agent_and_its_payload(
    slurm: SlurmFactory, stage: StageFactory
) -> None:
    paths = stage("sh ./run.sh", task_files={"run.sh": WRITE_OUTPUT})
    batch = slurm(walltime="00:05:00")
    batch_id = batch.submit(paths.dir)
    assert batch_id.isdigit()
    seen = poll_until_done(batch, batch_id, paths)
    assert set(seen) <= {"running", "done"}
    status = status_of(paths)
    assert status.state == "finished", agent_log(paths)
    assert status.exit_code == 0 and status.host
    output = json.loads((paths.point_dir(0) / "output.json").read_text())
    assert output == {"status": 0, "loss": 0.25}
    assert f"batch job {batch_id}" in agent_log(paths)
    (worker,) = (paths.dir.parent.parent / "workers").iterdir()
    record = WorkerRecord.model_validate_json((worker / "worker.json").read_text())
    assert (record.kind, record.batch_id, record.jobs) == ("slurm", batch_id, [paths.job_id])
    assert "#SBATCH --time=00:05:00" in (worker / "batch.sh").read_text()


def test_a_gpu_request_reaches_the_payload_as_cuda_visible_devices(
    slurm: SlurmFactory, stage: StageFactory
) -> None:
    paths = stage(
        'echo "$CUDA_VISIBLE_DEVICES" > gpus.txt; ' + WRITE_OUTPUT,
        pass_env=("CUDA_VISIBLE_DEVICES",),
    )
    batch = slurm(gpus_per_node=2)
    batch_id = batch.submit(paths.dir)
    poll_until_done(batch, batch_id, paths)
    assert status_of(paths).state == "finished", agent_log(paths)
    gpus = (paths.work / "gpus.txt").read_text().strip()
    assert re.fullmatch(r"[0-5],[0-5]", gpus), f"CUDA_VISIBLE_DEVICES={gpus!r}"


def test_an_isolated_agent_sees_no_network(slurm: SlurmFactory, stage: StageFactory) -> None:
    paths = stage("cat /proc/net/dev > net.txt; " + WRITE_OUTPUT)
    batch = slurm(isolate_network=True)
    poll_until_done(batch, batch.submit(paths.dir), paths)
    assert status_of(paths).state == "finished", agent_log(paths)
    interfaces = {
        line.split(":")[0].strip()
        for line in (paths.work / "net.txt").read_text().splitlines()
        if ":" in line
    }
    assert interfaces == {"lo"}


def test_scancel_stops_a_sleeping_job(slurm: SlurmFactory, stage: StageFactory) -> None:
    paths = stage("sleep 300")
    batch = slurm()
    batch_id = batch.submit(paths.dir)
    wait_until(
        lambda: paths.status.exists() and status_of(paths).pid is not None,
        what=f"payload started; agent.log: {agent_log(paths)}",
    )
    payload_pid = status_of(paths).pid
    assert batch.poll([batch_id]) == {batch_id: "running"}
    started = time.monotonic()
    batch.cancel(batch_id)
    poll_until_done(batch, batch_id, paths)
    assert time.monotonic() - started < 20
    wait_until(lambda: status_of(paths).terminal, 10, "a final status")
    # Slurm signals the agent and the payload together; the agent records the kill.
    assert status_of(paths).state == "killed", status_of(paths)
    assert not Path(f"/proc/{payload_pid}").exists()
    batch.cancel(batch_id)  # again: harmless


def test_unknown_ids_are_done_and_one_query_answers_for_all(
    slurm: SlurmFactory, stage: StageFactory
) -> None:
    batch = slurm()
    assert batch.poll(["99999999"]) == {"99999999": "done"}
    paths = stage("sleep 300")
    batch_id = batch.submit(paths.dir)
    states = batch.poll([batch_id, "99999999", "not-an-id"])
    assert states == {batch_id: "running", "99999999": "done", "not-an-id": "done"}


def test_a_refused_submission_carries_sbatch_message(
    slurm: SlurmFactory, stage: StageFactory
) -> None:
    paths = stage("true")
    with pytest.raises(BatchSubmitError, match="Invalid partition name specified"):
        slurm(partition="no-such-partition").submit(paths.dir)
