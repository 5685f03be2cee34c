"""Scale out: two processes of every service against one RabbitMQ and one database run a
task exactly once (no point lost, no result counted twice, no payload run twice), with
the work shared between the two of each kind, also while one of them is killed."""

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
    # a private RabbitMQ node boots, twelve service processes and a harvester start
    pytest.mark.timeout(1500),
]


def test_two_of_every_service_do_the_work_once_between_them(tmp_path: Path) -> None:
    result = run(
        tmp_path, points=16, parallel=3, kinds=["jobbuilder", "broker"], kills=2, replicas=2
    )
    assert result["task_status"] == "done", result
    assert result["points_lost"] == 0, result
    assert result["results_counted_twice"] == 0, result
    assert result["payload_runs_beyond_one_per_attempt"] == 0, result
    assert result["points_over_3_attempts"] == 0, result
    assert result["services_not_back"] == [], result
    assert result["max_active_jobs"] <= 3, result  # nParallelEvaluation, with two builders
    work = result["work_per_process"]
    assert work["api"]["http_requests"] > 0 and work["api-2"]["http_requests"] > 0, work
    # the second job builder (never killed) applied part of the results, not all of them
    assert 0 < work["jobbuilder-2"]["points_evaluated"] < 16, work
