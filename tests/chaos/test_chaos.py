"""The chaos harness's short form (tests/chaos/chaos.py has the full one, a benchmark):
a small task through a few kills of the kinds most likely to lose work, with nothing
lost, nothing counted twice and every process back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.chaos import run

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.rabbitmq,
    pytest.mark.mongo,
    pytest.mark.s3,
    # Honest budget: a private RabbitMQ node boots twice (5-15 s each, more when loaded),
    # a dozen processes start, and 16 payloads of up to 2 s run three at a time.
    pytest.mark.timeout(1500),
]


def test_a_small_task_survives_kill_9_of_a_service_a_node_agent_and_both_servers(
    tmp_path: Path,
) -> None:
    result = run(
        tmp_path,
        points=16,
        parallel=3,
        kinds=["jobbuilder", "node-agent", "secantusdb", "rabbitmq"],
        kills=4,
    )
    assert result["task_status"] == "done", result
    assert result["kills"] >= 3, result
    assert result["points_lost"] == 0, result
    assert result["results_counted_twice"] == 0, result
    assert result["points_over_3_attempts"] == 0, result
    assert result["services_not_back"] == [], result
