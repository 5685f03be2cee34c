"""A service started before its servers waits for them, and survives their crashes.

The real entry point (``hpo-services run broker``) as its own process, a private
RabbitMQ node and a private SecantusDB that start down and are killed with ``kill -9``
and restarted while the service runs. The broker is the witness: a defined job and a
live site written to the database get the job assigned only if the broker's database
connection and its bus subscription both work again (the reconcile interval is an hour,
so only the ``job.defined`` message can trigger it).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from shared.bus import BusUnavailableError, open_bus
from shared.domain.models import Job, JobStatus, Site, Task
from shared.domain.taskconfig import TaskConfig
from shared.messages import JobDefined
from shared.store.mongo import MongoStore
from tests.integration.faults.conftest import PrivateMongo
from tests.servers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq, pytest.mark.mongo, pytest.mark.timeout(900)]


class ServiceProcess:
    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services", "run", "broker"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> None:
        assert self.proc.poll() is None, f"the service exited:\n{self.text()[-3000:]}"

    async def wait_for_log(self, needle: str, *, after: int = 0) -> int:
        """Wait until ``needle`` appears in the log past offset ``after``."""
        while True:
            self.alive()
            found = self.text().find(needle, after)
            if found >= 0:
                return found + len(needle)
            await asyncio.sleep(0.2)


@pytest.fixture
def service_env(tmp_path: Path) -> Callable[[str, str, str], dict[str, str]]:
    def env(bus_url: str, mongo_url: str, prefix: str) -> dict[str, str]:
        return {
            **os.environ,
            "HPO_BUS_URL": bus_url,
            "HPO_BUS_PREFIX": prefix,
            "HPO_MONGO_URL": mongo_url,
            "HPO_ARTIFACTS_URL": f"file://{tmp_path / 'artifacts'}",
            "HPO_DEV_MODE": "1",
            "HPO_HOME": str(tmp_path / "home"),
            "HPO_RECONCILE_INTERVAL": "3600",
            "HPO_RETRY_MAX_SECONDS": "1",
            "HPO_SITE_ALIVE_SECONDS": "3600",
        }

    return env


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for service in started:
        service.proc.terminate()
        try:
            service.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.proc.kill()
            service.proc.wait()


async def define_job(mongo_url: str, name: str) -> str:
    """A task, its defined job and a live site, straight into the database."""
    store = MongoStore(mongo_url)
    try:
        await store.start()
        await store.sites.heartbeat(Site(id="siteA", free_slots=4, total_slots=4))
        config = TaskConfig.model_validate({"evaluationExec": "true"})
        await store.tasks.insert(Task(id=name, owner="alice", config=config))
        job = Job(
            id=f"{name}.main.0.a1",
            task_id=name,
            owner="alice",
            segment="main",
            point_ids=[f"{name}.main.0"],
            attempt=1,
        )
        assert await store.jobs.insert(job)
        return job.id
    finally:
        await store.close()


async def wait_assigned(mongo_url: str, job_id: str, bus_url: str, prefix: str) -> None:
    """Publish ``job.defined`` (again, until the broker reacts) and wait for the job to
    be assigned: a message that reached a consumer not yet resubscribed is redelivered
    to it, so one would do; the repeats only cover a publish made before the
    subscription was restored, which RabbitMQ drops as unroutable."""
    bus = open_bus(bus_url, prefix=prefix)
    await bus.connect()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        while True:
            try:
                await bus.publish(JobDefined(task_id=job_id.split(".")[0], job_id=job_id))
            except BusUnavailableError:
                continue  # a restarted node confirms late while its queues elect leaders
            for _ in range(25):
                doc = await client.get_default_database("hpo")["jobs"].find_one({"_id": job_id})
                if doc is not None and doc["status"] == JobStatus.ASSIGNED.value:
                    return
                await asyncio.sleep(0.2)
    finally:
        await client.close()
        await bus.close()


async def test_a_service_started_before_its_servers_waits_then_survives_their_crashes(
    rabbit: Any,
    private_mongo: PrivateMongo,
    service_env: Callable[[str, str, str], dict[str, str]],
    broker_process: list[ServiceProcess],
    tmp_path: Path,
    unique: str,
) -> None:
    rabbit.kill()
    mongo_url = f"{private_mongo.url}/{unique}"
    service = ServiceProcess(tmp_path / "broker.log", service_env(rabbit.url, mongo_url, unique))
    broker_process.append(service)

    # Both servers down: the service waits for the bus, one line per attempt.
    mark = await service.wait_for_log("waiting for the bus at amqp://127.0.0.1:")
    await service.wait_for_log("attempt 2 failed", after=mark)
    await asyncio.to_thread(rabbit.start)
    mark = await service.wait_for_log("waiting for the database at mongodb://127.0.0.1:")
    await service.wait_for_log("attempt 2 failed", after=mark)
    await asyncio.to_thread(private_mongo.start)
    mark = await service.wait_for_log("broker started")
    log = service.text()
    assert "Traceback" not in log, log
    assert "guest:guest" not in log, "credentials must not be logged"

    job_id = await define_job(mongo_url, "t1")
    await wait_assigned(mongo_url, job_id, rabbit.url, unique)

    # Running: both servers crash and come back; the service recovers by itself. (Its
    # queue, declared moments ago, settled first: deploy/dev/rabbitnode.py says why.)
    await asyncio.to_thread(rabbit.settle)
    job_id = await define_job(mongo_url, "t1b")
    await wait_assigned(mongo_url, job_id, rabbit.url, unique)
    await asyncio.to_thread(private_mongo.kill)
    await asyncio.to_thread(rabbit.kill)
    await asyncio.to_thread(private_mongo.start)
    await asyncio.to_thread(rabbit.start)
    job_id = await define_job(mongo_url, "t2")
    await wait_assigned(mongo_url, job_id, rabbit.url, unique)
    service.alive()
    assert "Traceback" not in service.text()[mark:], service.text()[mark:]
