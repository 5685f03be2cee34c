"""An acknowledged report survives a crash of the database right after the ack.

SecantusDB (like MongoDB) keeps an unjournaled write in memory: killed with ``kill -9``
just after acknowledging it, it comes back without it. Measured here: without a
journaled write concern every such write was lost, the job back to ``leased`` with no
result; with ``j: true`` (which SecantusDB honours with an fsync of its log per commit)
none was.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from shared.store.mongo import DURABLE, MongoStore
from tests.integration.central import FakeSite, central, file_artifacts
from tests.integration.faults.conftest import PrivateMongo

pytestmark = [pytest.mark.mongo, pytest.mark.slow, pytest.mark.timeout(600)]

SPACE = {"x": {"method": "uniform", "dimension": {"low": -1.0, "high": 1.0}}}


async def test_a_finished_report_survives_a_kill_9_of_the_database_after_the_ack(
    private_mongo: PrivateMongo, bus_prefix: str, tmp_path: Path, unique: str
) -> None:
    private_mongo.start()
    db_url = f"{private_mongo.url}/{unique}"
    async with (
        central(
            mongo_url=db_url,
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path,
        ) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=60) as http,
    ):
        user = await system.token("alice", ["user"])
        site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
        reply = await http.post(
            "/api/v1/tasks",
            json={
                "config": {"evaluationExec": "true", "maxPoints": 1, "nPointsPerIteration": 1},
                "searchSpace": SPACE,
            },
            headers={"Authorization": f"Bearer {user}"},
        )
        assert reply.status_code == 201, reply.text
        await site.heartbeat(free=1)
        job: list[dict[str, Any]] = []
        while not job:
            job = await site.lease(wait=2)
        await site.event(job[0], "started", host="node1")
        assert (await site.finish(job[0], 0.25))["accepted"]
        private_mongo.kill()  # right after the ack: nothing had time to reach the disk

        await asyncio.to_thread(private_mongo.start)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(db_url)
        try:
            stored = await client.get_default_database()["jobs"].find_one({"_id": job[0]["job_id"]})
        finally:
            await client.close()
        assert stored is not None and stored["status"] == "finished", stored
        assert [r["loss"] for r in stored["results"]] == [0.25]

        # ...and the services, reconnected by themselves, finish the task with it.
        headers = {"Authorization": f"Bearer {user}"}
        task_id = job[0]["task_id"]
        while True:
            view = (await http.get(f"/api/v1/tasks/{task_id}", headers=headers)).json()
            if view["status"] == "done" and view["best"] is not None:
                break
            await asyncio.sleep(0.2)
        assert view["best"]["loss"] == 0.25


async def test_every_collection_of_the_store_asks_for_a_journaled_majority_write(
    mongo_db_url: str,
) -> None:
    """The product asks for it even where this server would not need it: a replica set
    acknowledges on a majority only when asked."""
    store = MongoStore(mongo_db_url)
    try:
        collections = [
            value
            for repo in vars(store).values()
            for value in vars(repo).values()
            if isinstance(value, AsyncCollection)
        ]
        assert len(collections) >= 9
        for collection in collections:
            assert collection.write_concern == DURABLE, collection.name
        assert DURABLE.document == {"w": "majority", "j": True}
    finally:
        await store.close()
