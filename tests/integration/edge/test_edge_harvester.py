"""The harvester against a test double of the edge api, running real node agents
through the local batch system and the process runtime."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edge.config import SiteConfig
from edge.documents import HarvesterRecord, NodeStatus, ReportRecord
from edge.fsproto import JobPaths
from edge.harvester.daemon import Harvester
from shared.edge_api import JobSpec, OutputFiles

SpecFactory = Callable[..., JobSpec]
HarvesterFactory = Callable[[], Harvester]

TRAIN = """\
lr=$(tr -dc '0-9.' < input.json)
echo "training with lr=$lr on %s"
sleep "${SLEEP:-0}"
tar czf metrics.tgz input.json
printf '{"status": 0, "loss": 0.25, "message": "lr %s"}' "$lr" > output.json
"""


async def until(predicate: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(harvester: Harvester) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(harvester.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def started_reported(paths: JobPaths) -> bool:
    text = paths.harvester.read_text() if paths.harvester.exists() else "{}"
    return HarvesterRecord.model_validate_json(text).started_reported


def train_spec(make_spec: SpecFactory, **fields: Any) -> JobSpec:
    return make_spec(
        'sh ./train.sh "$PWD"',
        task_files={"train.sh": TRAIN},
        files=OutputFiles(metrics="metrics.tgz"),
        **fields,
    )


async def test_a_leased_job_runs_and_its_loss_and_artifacts_come_back(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    spec = train_spec(make_spec)
    fake_api.offer(spec)
    async with running(make_harvester()):
        await until(lambda: fake_api.events_of(spec.job_id, "finished"))
    kinds = [e.kind for e in fake_api.events_of(spec.job_id)]
    assert kinds[0] == "started"
    assert kinds[-1] == "finished"
    assert kinds.count("finished") == 1
    finished = fake_api.events_of(spec.job_id, "finished")[0]
    assert finished.generation == 1
    assert [(r.point_id, r.loss, r.status) for r in finished.results] == [("point-1", 0.25, 0)]
    assert finished.results[0].message == "lr 0.01"
    assert finished.host  # the compute node's name, from status.json

    keys = {c.kind: c for c in fake_api.confirms}
    assert set(keys) == {"metrics", "log"}
    log = fake_api.uploads[keys["log"].key]
    assert b"training with lr=0.01" in log
    assert hashlib.sha256(log).hexdigest() == keys["log"].sha256
    assert fake_api.uploads[keys["metrics"].key][:2] == b"\x1f\x8b"  # gzip

    paths = JobPaths.under(site_config.root, spec.job_id)
    report = ReportRecord.model_validate_json(paths.reported.read_text())
    assert (report.kind, report.accepted) == ("finished", True)
    assert fake_api.heartbeats
    assert all(h.total_slots == 2 for h in fake_api.heartbeats)


async def test_a_failing_payload_is_reported_failed_with_an_actionable_reason(
    fake_api: Any, make_harvester: HarvesterFactory, make_spec: SpecFactory
) -> None:
    spec = make_spec("echo 'RuntimeError: CUDA out of memory' >&2; exit 3")
    no_output = make_spec("echo done")
    fake_api.offer(spec)
    fake_api.offer(no_output)
    async with running(make_harvester()):
        await until(lambda: fake_api.events_of(spec.job_id, "failed"))
        await until(lambda: fake_api.events_of(no_output.job_id, "failed"))
    failed = fake_api.events_of(spec.job_id, "failed")[0]
    assert "exited with code 3" in failed.reason
    assert "CUDA out of memory" in failed.reason
    assert [r.status for r in failed.results] == [3]
    reason = fake_api.events_of(no_output.job_id, "failed")[0].reason
    assert "wrote no output.json" in reason
    assert reason.endswith("done")
    assert not fake_api.events_of(spec.job_id, "finished")


async def test_harvester_killed_and_restarted_mid_job_reports_once(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    spec = train_spec(make_spec, env={"SLEEP": "2"})
    fake_api.offer(spec)
    paths = JobPaths.under(site_config.root, spec.job_id)
    stop = asyncio.Event()
    first = asyncio.create_task(make_harvester().run(stop))
    # Running, and its start answered (the agent may write its status before that).
    await until(lambda: paths.status.exists() and started_reported(paths))
    first.cancel()  # like kill -9: no clean shutdown of anything in flight
    await asyncio.gather(first, return_exceptions=True)
    record = HarvesterRecord.model_validate_json(paths.harvester.read_text())
    assert record.batch_id and record.started_reported
    assert not fake_api.events_of(spec.job_id, "finished")

    async with running(make_harvester()):
        await until(lambda: fake_api.events_of(spec.job_id, "finished"))
        await asyncio.sleep(1.0)  # several more scans: nothing reported twice
    assert len(fake_api.events_of(spec.job_id, "finished")) == 1
    assert len(fake_api.events_of(spec.job_id, "started")) == 1
    assert fake_api.events_of(spec.job_id, "heartbeat")  # relayed while it ran
    assert len([c for c in fake_api.confirms if c.kind == "log"]) == 1


async def test_a_job_ending_while_the_harvester_is_down_is_reported_after_restart(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    spec = train_spec(make_spec, env={"SLEEP": "0.5"})
    fake_api.offer(spec)
    paths = JobPaths.under(site_config.root, spec.job_id)
    first = asyncio.create_task(make_harvester().run(asyncio.Event()))
    await until(lambda: paths.status.exists())
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await until(lambda: json.loads(paths.status.read_text())["state"] == "finished")

    async with running(make_harvester()):
        await until(lambda: paths.reported.exists())
        await asyncio.sleep(0.5)
    assert len(fake_api.events_of(spec.job_id, "finished")) == 1


async def test_a_job_the_api_cancels_is_killed_and_reported(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    spec = make_spec("sleep 60")
    fake_api.offer(spec)
    paths = JobPaths.under(site_config.root, spec.job_id)
    began = time.monotonic()
    async with running(make_harvester()):
        await until(lambda: paths.status.exists())
        fake_api.kill.add(spec.job_id)
        await until(lambda: fake_api.events_of(spec.job_id, "failed"))
    assert time.monotonic() - began < 20
    assert paths.kill.exists()
    failed = fake_api.events_of(spec.job_id, "failed")[0]
    assert "stopped" in failed.reason


async def test_unsafe_job_is_refused_without_touching_the_filesystem(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    spec = make_spec("true", task_files={"../escape.sh": "echo"})
    fake_api.offer(spec)
    async with running(make_harvester()):
        await until(lambda: fake_api.events_of(spec.job_id, "failed"))
    assert "unsafe file name" in fake_api.events_of(spec.job_id, "failed")[0].reason
    assert not (site_config.root / "escape.sh").exists()
    assert not (site_config.root / "jobs" / spec.job_id).exists()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_node_agent_killed_with_sigkill_is_reported_lost_and_swept(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    spec = make_spec("sleep 60")
    fake_api.offer(spec)
    paths = JobPaths.under(site_config.root, spec.job_id)
    async with running(make_harvester()):
        await until(lambda: paths.harvester.exists() and paths.status.exists())
        await until(lambda: NodeStatus.model_validate_json(paths.status.read_text()).pid)
        payload_pid = NodeStatus.model_validate_json(paths.status.read_text()).pid
        assert payload_pid is not None
        record = HarvesterRecord.model_validate_json(paths.harvester.read_text())
        assert record.batch_id is not None
        os.kill(int(record.batch_id.split(":")[0]), signal.SIGKILL)
        await until(lambda: fake_api.events_of(spec.job_id, "failed"))
    reason = fake_api.events_of(spec.job_id, "failed")[0].reason
    assert "the batch job ended but the node agent (started) wrote no final status" in reason
    await until(lambda: not _alive(payload_pid))


PROBE = """\
import json, socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    reached = 1
except OSError:
    reached = 0
json.dump({"status": 0, "loss": float(reached)}, open("output.json", "w"))
"""


@pytest.mark.parametrize(("isolate", "reached"), [(True, 0.0), (False, 1.0)])
async def test_with_isolate_network_the_payload_cannot_reach_the_api(
    fake_api: Any, make_spec: SpecFactory, site_config: SiteConfig, isolate: bool, reached: float
) -> None:
    port = fake_api.base_url.rsplit(":", 1)[1]
    spec = make_spec(
        f"{shlex.quote(sys.executable)} probe.py {port}", task_files={"probe.py": PROBE}
    )
    fake_api.offer(spec)
    config = site_config.model_copy(update={"isolate_network": isolate})
    async with running(Harvester(config)):  # builds its own client and batch adapter
        await until(lambda: fake_api.events_of(spec.job_id, "finished"))
    assert fake_api.events_of(spec.job_id, "finished")[0].results[0].loss == reached


async def test_run_once_steps_through_a_job(
    fake_api: Any, make_harvester: HarvesterFactory, make_spec: SpecFactory
) -> None:
    spec = make_spec("printf '{\"loss\": 3}' > output.json")
    fake_api.offer(spec)
    harvester = make_harvester()
    await harvester.run_once()
    assert set(harvester.jobs) == {spec.job_id}
    assert [e.kind for e in fake_api.events_of(spec.job_id)] == ["started"]
    assert fake_api.heartbeats[-1].free_slots == 2  # sent before the lease
    job = harvester.jobs[spec.job_id]
    await until(lambda: (status := job.read_status()) is not None and status.terminal)
    await harvester.run_once()
    assert not harvester.jobs
    assert fake_api.events_of(spec.job_id, "finished")[0].results[0].loss == 3.0


async def test_a_containerised_job_on_a_process_site_fails_with_a_clear_reason(
    fake_api: Any, make_harvester: HarvesterFactory, make_spec: SpecFactory
) -> None:
    spec = make_spec("bash ./exec_in_container.sh", container="docker://reg.example/eval:1")
    fake_api.offer(spec)
    async with running(make_harvester()):
        await until(lambda: fake_api.events_of(spec.job_id, "failed"))
    reason = fake_api.events_of(spec.job_id, "failed")[0].reason
    assert reason.startswith("the job could not start: this site runs payloads without a")
    assert "runtime.ignore_image" in reason
