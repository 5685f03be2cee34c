"""Population-based training end to end: the in-process central services and a real
harvester (local batch system, process runtime).

The payload trains EPOCHS epochs per job from whatever its checkpoint file holds
(nothing for the first generation), saves the state after each epoch and reports the
epoch it started from and the learning rates the state was trained with. The second
generation must start from the first one's final checkpoints: the worst member from
the best member's, with perturbed hyperparameters, the others from their own.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from tests.integration.central import central, file_artifacts
from tests.waiting import until

pytestmark = [pytest.mark.mongo, pytest.mark.slow]

POPULATION = 3
EPOCHS = 2
PAYLOAD = f"""
import json, os
lr = json.load(open("input.json"))["lr"]
state = json.load(open("state.json")) if os.path.exists("state.json") else {{
    "epoch": 0, "w": 10.0, "trail": []}}
start = state["epoch"]
for _ in range({EPOCHS}):
    state["w"] *= 1 - 2 * lr  # a gradient step on w**2
    state["epoch"] += 1
    state["trail"].append(lr)
    with open("state.tmp", "w") as f:
        json.dump(state, f)
    os.replace("state.tmp", "state.json")
message = json.dumps({{"start": start, "trail": state["trail"]}})
json.dump({{"loss": state["w"] ** 2, "message": message}}, open("output.json", "w"))
"""


async def test_a_pbt_generation_starts_from_the_checkpoints_of_the_last(
    mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    async with (
        central(
            mongo_url=mongo_db_url,
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path,
        ) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=30) as http,
    ):
        headers = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        body = {
            "config": {
                "evaluationExec": f"{sys.executable} train.py",
                "checkPointToSave": "state.json",
                "maxPoints": 2 * POPULATION,
                "nPointsPerIteration": POPULATION,
                "nParallelEvaluation": POPULATION,
                "steering": {
                    "algorithm": "pbt",
                    "seed": 3,
                    "args": {"population": POPULATION, "generations": 2, "resample": 0},
                },
            },
            "searchSpace": {"lr": {"method": "uniform", "dimension": {"low": 0.01, "high": 0.4}}},
            "files": {"train.py": PAYLOAD},
        }
        reply = await http.post("/api/v1/tasks", json=body, headers=headers)
        assert reply.status_code == 201, reply.text
        task_id = reply.json()["id"]

        async def get(path: str) -> Any:
            return (await http.get(f"/api/v1/tasks/{task_id}{path}", headers=headers)).json()

        site = SiteConfig.model_validate(
            {
                "site": "s1",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:s1"]),
                "root": tmp_path / "edge",
                "slots": POPULATION,
                "poll_interval": 0.2,
                "heartbeat_interval": 0.5,
                "lease_wait_seconds": 0.5,
            }
        )
        stop = asyncio.Event()
        harvester = asyncio.create_task(Harvester(site).run(stop))
        try:

            async def ended() -> Any:
                assert not harvester.done(), harvester
                view = await get("")
                return view if view["status"] in ("done", "failed", "cancelled") else None

            view = await until(ended)
        finally:
            stop.set()
            await harvester
        assert view["status"] == "done", view

        points = await get("/points")
        assert [p["status"] for p in points] == ["evaluated"] * 2 * POPULATION
        first, second = points[:POPULATION], points[POPULATION:]
        assert [p["parent"] for p in first] == [None] * POPULATION
        by_id = {p["id"]: p for p in first}
        best = min(first, key=lambda p: p["loss"])
        worst = max(first, key=lambda p: p["loss"])
        jobs = {j["point_ids"][0]: j for j in await get("/jobs")}
        for member, point in enumerate(second):
            own = first[member]
            parent = by_id[point["parent"]]
            if own["id"] == worst["id"]:  # exploit the best, explore around it
                assert parent["id"] == best["id"]
                assert point["params"]["lr"] != best["params"]["lr"]
                ratio = point["params"]["lr"] / best["params"]["lr"]
                assert ratio == pytest.approx(1.2) or ratio == pytest.approx(1 / 1.2)
            else:  # continue
                assert parent["id"] == own["id"]
                assert point["params"] == own["params"]
            message = json.loads(jobs[point["id"]]["results"][0]["message"])
            assert message["start"] == EPOCHS, "not resumed from the parent's checkpoint"
            lrs = [parent["params"]["lr"]] * EPOCHS + [point["params"]["lr"]] * EPOCHS
            assert message["trail"] == pytest.approx(lrs)
        assert best["loss"] >= min(p["loss"] for p in second)
