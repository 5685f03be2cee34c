"""The error counters, driven by real failures: a bus handler that raises, a database
command the server refuses. And the embedded default's single listener."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from pymongo.errors import OperationFailure

from services.embedded import embedded
from shared.bus import open_bus
from shared.messages import Message, TaskSubmitted
from shared.ops.metered_bus import MeteredBus
from shared.ops.metrics import CentralMetrics
from shared.store.mongo import MongoStore


def count(metrics: CentralMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_failing_handler_and_a_failing_publish_are_counted(bus_prefix: str) -> None:
    metrics = CentralMetrics()
    bus = MeteredBus(open_bus("memory://", prefix=bus_prefix, delivery_limit=2), metrics.bus_errors)
    await bus.connect()
    seen = asyncio.Event()

    async def broken(message: Message) -> None:
        seen.set()
        raise RuntimeError("handler bug")

    try:
        subscription = await bus.subscribe("steering", ["task.submitted"], broken)
        await bus.publish(TaskSubmitted(task_id="t1"))
        while count(metrics, "hpo_bus_errors_total", operation="handle") < 2:  # delivery limit
            await asyncio.sleep(0.01)
        assert seen.is_set()
        await subscription.cancel()
    finally:
        await bus.close()
    with pytest.raises(RuntimeError):
        await bus.publish(TaskSubmitted(task_id="t2"))  # closed: the adapter refuses
    assert count(metrics, "hpo_bus_errors_total", operation="publish") == 1


@pytest.mark.mongo
async def test_a_failed_database_command_is_counted(mongo_db_url: str) -> None:
    metrics = CentralMetrics()
    store = MongoStore(mongo_db_url, listeners=metrics.database_listeners())
    try:
        await store.ping()
        with pytest.raises(OperationFailure):
            await store.client.admin.command("noSuchCommandHere")
    finally:
        await store.close()
    assert count(metrics, "hpo_database_errors_total", command="noSuchCommandHere") == 1
    assert count(metrics, "hpo_database_errors_total", command="ping") == 0


@pytest.mark.slow
async def test_the_embedded_default_serves_everything_on_one_listener(tmp_path: Path) -> None:
    async with embedded(tmp_path / "home") as system, httpx.AsyncClient(timeout=30) as http:
        assert system.ops_url is not None
        ready = await http.get(f"{system.ops_url}/readyz")
        assert ready.status_code == 200, ready.text
        text = (await http.get(f"{system.ops_url}/metrics")).text
        assert 'hpo_edge_slots{site="local"} 2.0' in text  # the harvester's
        assert 'hpo_tasks{state="running"} 0.0' in text  # the monitor's state
        assert "hpo_reconcile_seconds_count" in text  # the services'
