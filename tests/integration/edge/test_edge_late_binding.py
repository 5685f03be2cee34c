"""Layout 1 on the ``local`` batch: the real harvester against the edge api double,
late-binding jobs to real worker agents that run one payload per GPU slot."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edge.batch import BatchState, BatchSystem, LocalBatchConfig, open_batch
from edge.batch.options import ClassBatchOptions
from edge.config import SiteConfig
from edge.documents import NodeStatus
from edge.fsproto import JobPaths, read_json
from edge.harvester.api import EdgeApiClient
from edge.harvester.daemon import Harvester
from edge.workerproto import WORKERS_DIR, WorkerPaths, entries
from shared.edge_api import JobSpec
from tests.integration.edge.conftest import SITE
from tests.integration.edge.test_edge_harvester import until

SpecFactory = Callable[..., JobSpec]

PROBE = """\
printf "%s" "$CUDA_VISIBLE_DEVICES" > gpu.txt
sleep "$1"
echo '{"loss": 0.5}' > output.json
exit "${2:-0}"
"""


def probe_spec(make_spec: SpecFactory, seconds: float, exit_code: int = 0) -> JobSpec:
    return make_spec(f"sh ./probe.sh {seconds} {exit_code}", task_files={"probe.sh": PROBE})


def late_config(site_config: SiteConfig, **batch: Any) -> SiteConfig:
    data = site_config.model_dump()
    data["token"] = site_config.api_token()
    data["batch"] = {"kind": "local", "layout": "per_gpu", "gpus_per_node": 2, **batch}
    data["late_binding"] = {"idle_seconds": 1.0, "poll_interval": 0.1}
    return SiteConfig.model_validate(data)


def workers_of(root: Path) -> list[WorkerPaths]:
    return sorted(
        (WorkerPaths(d) for d in (root / WORKERS_DIR).glob("w-*")), key=lambda w: w.worker_id
    )


@pytest.fixture
def sweep_workers(site_config: SiteConfig) -> Iterator[None]:
    """Stop whatever worker agent a failed test left running."""
    yield
    batch = open_batch(LocalBatchConfig())
    for worker in workers_of(site_config.root):
        record = worker.read_record()
        if record is not None and record.batch_id:
            batch.cancel(record.batch_id)


HarvesterFactory = Callable[[SiteConfig], Harvester]


@pytest.fixture
async def harvesters() -> AsyncIterator[HarvesterFactory]:
    clients: list[EdgeApiClient] = []

    def make(config: SiteConfig) -> Harvester:
        api = EdgeApiClient(config.base_url, SITE, config.api_token, attempts=3, backoff=0.05)
        clients.append(api)
        return Harvester(config, api, open_batch(config.batch))

    yield make
    for client in clients:
        await client.aclose()


@asynccontextmanager
async def running(harvester: Harvester) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(harvester.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def status_of(root: Path, job_id: str) -> NodeStatus:
    return NodeStatus.model_validate(read_json(JobPaths.under(root, job_id).status))


@pytest.mark.usefixtures("sweep_workers")
async def test_one_worker_runs_more_jobs_than_it_has_gpus_one_gpu_each(
    fake_api: Any, harvesters: HarvesterFactory, make_spec: SpecFactory, site_config: SiteConfig
) -> None:
    config = late_config(site_config)
    specs = [probe_spec(make_spec, 0.3) for _ in range(7)]
    for spec in specs:
        fake_api.offer(spec)
    async with running(harvesters(config)):
        await until(lambda: all(fake_api.events_of(s.job_id, "finished") for s in specs))
    workers = workers_of(config.root)
    assert len(workers) == 1  # 2 site slots, 2 GPUs per worker: one worker for all
    claimed = entries(workers[0].claimed)
    assert sorted(claimed) == sorted(s.job_id for s in specs)
    for spec in specs:
        status = status_of(config.root, spec.job_id)
        work = JobPaths.under(config.root, spec.job_id).work
        assert status.gpus == [(work / "gpu.txt").read_text()]
        assert status.gpus[0] in ("0", "1")
        assert len(fake_api.events_of(spec.job_id, "finished")) == 1
    # The heartbeat told the api about the inbox capacity: 2 slots + 2 queued.
    assert max(h.free_slots for h in fake_api.heartbeats) == 4


@pytest.mark.usefixtures("sweep_workers")
async def test_jobs_a_draining_worker_cannot_take_go_to_another_worker(
    fake_api: Any, harvesters: HarvesterFactory, make_spec: SpecFactory, site_config: SiteConfig
) -> None:
    # A job is expected to take longer than the walltime and failing payloads teach a
    # worker nothing better: every worker runs its first job only, then drains; the
    # harvester takes the other entries back and submits new workers for them.
    config = late_config(site_config, gpus_per_node=1, walltime=60)
    config.late_binding.expected_job_seconds = 3600
    config.slots = 1
    specs = [probe_spec(make_spec, 0.2, exit_code=3) for _ in range(3)]
    for spec in specs:
        fake_api.offer(spec)
    async with running(harvesters(config)):
        await until(lambda: all(fake_api.events_of(s.job_id, "failed") for s in specs))
    workers = workers_of(config.root)
    assert len(workers) == 3
    assert sorted(len(entries(w.claimed)) for w in workers) == [1, 1, 1]
    assert sum(len(entries(w.withdrawn)) for w in workers) >= 1  # queued behind job 1
    for worker in workers:
        status = worker.read_status()
        assert status is not None and "walltime" in status.reason


@pytest.mark.usefixtures("sweep_workers")
async def test_harvester_killed_again_and_again_loses_no_job_and_runs_none_twice(
    fake_api: Any, harvesters: HarvesterFactory, make_spec: SpecFactory, site_config: SiteConfig
) -> None:
    config = late_config(site_config)
    config.late_binding.queue_per_slot = 2
    rng = random.Random(7)
    specs = [probe_spec(make_spec, rng.choice([0.1, 0.3, 0.6])) for _ in range(12)]
    for spec in specs:
        fake_api.offer(spec)

    def all_done() -> bool:
        return all(fake_api.events_of(s.job_id, "finished") for s in specs)

    kills = 0
    while not all_done() and kills < 8:
        task = asyncio.create_task(harvesters(config).run(asyncio.Event()))
        await asyncio.sleep(rng.uniform(0.2, 1.2))
        task.cancel()  # like kill -9: nothing in flight is finished
        await asyncio.gather(task, return_exceptions=True)
        kills += 1
    async with running(harvesters(config)):
        await until(all_done)
        await asyncio.sleep(0.5)  # more scans: nothing is reported or dispatched twice
    assert kills >= 2
    for spec in specs:
        # A kill between the api's answer and reported.json repeats the report (the
        # api expects that); what must never repeat is the run.
        assert fake_api.events_of(spec.job_id, "finished")
        assert not fake_api.events_of(spec.job_id, "failed")
        paths = JobPaths.under(config.root, spec.job_id)
        assert paths.agent_log.read_text().count("claimed by worker") == 1
        assert len(status_of(config.root, spec.job_id).points) == 1
    claimed = [job for w in workers_of(config.root) for job in entries(w.claimed)]
    assert sorted(claimed) == sorted(s.job_id for s in specs)
    assert not [job for w in workers_of(config.root) for job in entries(w.inbox)]


@pytest.mark.usefixtures("sweep_workers")
async def test_a_job_cancelled_before_a_slot_took_it_is_taken_back_and_reported(
    fake_api: Any, harvesters: HarvesterFactory, make_spec: SpecFactory, site_config: SiteConfig
) -> None:
    config = late_config(site_config, gpus_per_node=1)
    config.slots = 1
    running_spec = probe_spec(make_spec, 30)
    waiting_spec = probe_spec(make_spec, 0)
    fake_api.offer(running_spec)
    async with running(harvesters(config)):
        # The harvester starts the jobs of one lease reply concurrently, so the order of
        # two offered together is not defined: the second is offered once the first runs.
        await until(lambda: JobPaths.under(config.root, running_spec.job_id).status.exists())
        fake_api.offer(waiting_spec)
        waiting = JobPaths.under(config.root, waiting_spec.job_id)
        await until(lambda: any(entries(w.inbox) for w in workers_of(config.root)))
        fake_api.kill.add(waiting_spec.job_id)
        await until(lambda: fake_api.events_of(waiting_spec.job_id, "failed"))
        fake_api.kill.add(running_spec.job_id)
        await until(lambda: fake_api.events_of(running_spec.job_id, "failed"))
    assert "had not started" in fake_api.events_of(waiting_spec.job_id, "failed")[0].reason
    assert not waiting.status.exists()  # never ran
    assert status_of(config.root, running_spec.job_id).state == "killed"


@pytest.mark.usefixtures("sweep_workers")
async def test_a_job_retried_at_the_site_runs_again_on_the_worker_that_ran_it(
    fake_api: Any, harvesters: HarvesterFactory, make_spec: SpecFactory, site_config: SiteConfig
) -> None:
    config = late_config(site_config, gpus_per_node=1)
    config.slots = 1
    config.late_binding.idle_seconds = 30  # the worker outlives the first attempt
    first = probe_spec(make_spec, 0, exit_code=3)
    fake_api.offer(first)
    async with running(harvesters(config)):
        await until(lambda: fake_api.events_of(first.job_id, "failed"))
        retry = first.model_copy(update={"generation": 2, "attempt": 2, "exec": "sh ./probe.sh 0"})
        fake_api.offer(retry)
        await until(lambda: fake_api.events_of(first.job_id, "finished"))
    (worker,) = workers_of(config.root)
    assert entries(worker.claimed) == [first.job_id]  # the retry's claim
    assert len(list(worker.claimed.glob(f".{first.job_id}.*.done"))) == 1  # the first's
    assert fake_api.events_of(first.job_id, "finished")[0].generation == 2


class ClassRecordingBatch:
    """The local batch system, recording the class options each worker was submitted
    with (a scheduler would put them in the worker's script; local cannot use them)."""

    def __init__(self, inner: BatchSystem) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.options: dict[str, ClassBatchOptions | None] = {}

    def submit(self, job_dir: Path, options: ClassBatchOptions | None = None) -> str:
        return self.inner.submit(job_dir, options)

    def submit_worker(self, worker_dir: Path, options: ClassBatchOptions | None = None) -> str:
        self.options[worker_dir.name] = options
        return self.inner.submit_worker(worker_dir)

    def poll(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        return self.inner.poll(batch_ids)

    def cancel(self, batch_id: str) -> None:
        self.inner.cancel(batch_id)


@pytest.mark.usefixtures("sweep_workers")
async def test_each_class_with_batch_options_runs_its_jobs_on_workers_of_its_own(
    fake_api: Any, make_spec: SpecFactory, site_config: SiteConfig
) -> None:
    data = late_config(site_config).model_dump()
    data["token"] = site_config.api_token()
    data["slots"] = 4
    data["batch"] = {"kind": "slurm", "layout": "per_gpu", "gpus_per_node": 2}
    data["compute_classes"] = [
        {"name": "a100", "gpus_per_node": 2, "batch": {"partition": "gpu-a100"}},
        {"name": "v100", "gpus_per_node": 2, "batch": {"partition": "gpu-v100"}},
    ]
    config = SiteConfig.model_validate(data)
    classes = ["a100", "v100", "a100", "v100", "a100"]
    specs = [probe_spec(make_spec, 0.3).model_copy(update={"compute_class": c}) for c in classes]
    for spec in specs:
        fake_api.offer(spec)
    batch = ClassRecordingBatch(open_batch(LocalBatchConfig(layout="per_gpu", gpus_per_node=2)))
    api = EdgeApiClient(config.base_url, SITE, config.api_token, attempts=3, backoff=0.05)
    try:
        async with running(Harvester(config, api, batch)):
            await until(lambda: all(fake_api.events_of(s.job_id, "finished") for s in specs))
    finally:
        await api.aclose()
    class_of = {s.job_id: s.compute_class for s in specs}
    ran: dict[str, set[str]] = {}
    for worker in workers_of(config.root):
        record = worker.read_record()
        assert record is not None and record.compute_class in ("a100", "v100")
        options = batch.options[worker.worker_id]
        assert options is not None and options.partition == f"gpu-{record.compute_class}"
        for job_id in entries(worker.claimed):
            ran.setdefault(record.compute_class, set()).add(job_id)
            assert class_of[job_id] == record.compute_class, "a job runs on its class's worker"
    assert ran == {c: {s.job_id for s in specs if s.compute_class == c} for c in ("a100", "v100")}
