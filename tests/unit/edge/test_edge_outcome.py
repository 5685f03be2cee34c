"""What the user reads when an evaluation ends: results and failure reasons."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge.documents import NodeStatus, PointRun
from edge.harvester.outcome import PointFiles, decide, point_result
from shared.clock import utcnow
from shared.edge_api import JobSpec

SpecFactory = Callable[..., JobSpec]


def ran(exit_code: int | None, index: int = 0) -> PointRun:
    return PointRun(index=index, point_id=f"p{index}", exit_code=exit_code, started_at=utcnow())


def result_for(output: str | None, exit_code: int | None = 0, log: str = "") -> tuple[int, str]:
    r = point_result("p0", "output.json", PointFiles(ran(exit_code), output, log))
    return r.status, r.message


def test_success_with_a_loss() -> None:
    r = point_result("p0", "output.json", PointFiles(ran(0), '{"loss": 0.3, "message": "ok"}', ""))
    assert (r.status, r.loss, r.message) == (0, 0.3, "ok")


def test_success_with_status_0_and_a_list_of_losses() -> None:
    r = point_result("p0", "output.json", PointFiles(ran(0), '{"status": 0, "loss": [1, 2.5]}', ""))
    assert r.loss == [1.0, 2.5]


@pytest.mark.parametrize(
    ("output", "exit_code", "status", "words"),
    [
        (None, 3, 3, "exited with code 3"),
        (None, -9, 137, "killed by signal 9"),
        (None, 0, 1, "wrote no output.json"),
        ("{not json", 0, 1, "not valid JSON"),
        ("[0.1]", 0, 1, "must be a JSON object"),
        ('{"status": 2, "message": "diverged"}', 0, 2, "reported status 2: diverged"),
        ('{"status": "bad"}', 0, 1, '"status" must be an integer'),
        ('{"status": 0}', 0, 1, '"loss" is None'),
        ('{"loss": "low"}', 0, 1, "\"loss\" is 'low'"),
        ('{"loss": NaN}', 0, 1, "output.json holds NaN; numbers must be finite"),
        ('{"loss": true}', 0, 1, "finite number"),
    ],
)
def test_failures_say_what_went_wrong(
    output: str | None, exit_code: int, status: int, words: str
) -> None:
    got_status, message = result_for(output, exit_code)
    assert got_status == status
    assert words in message


def test_failure_message_carries_the_end_of_the_log() -> None:
    _, message = result_for(None, 1, log="Traceback ...\nValueError: bad lr")
    assert message.endswith("last lines of payload.log:\nTraceback ...\nValueError: bad lr")


def test_single_point_failure_is_a_failed_job(make_spec: SpecFactory) -> None:
    status = NodeStatus(state="failed", exit_code=3, points=[ran(3)])
    outcome = decide(make_spec(), status, [PointFiles(ran(3), None, "boom")])
    assert outcome.kind == "failed"
    assert "exited with code 3" in outcome.reason


def test_one_good_point_of_two_finishes_the_job_with_both_results(
    make_spec: SpecFactory,
) -> None:
    status = NodeStatus(state="failed", exit_code=1, points=[ran(0), ran(1, 1)])
    files = [PointFiles(ran(0), '{"loss": 1}', ""), PointFiles(ran(1, 1), None, "")]
    outcome = decide(make_spec(n_points=2), status, files)
    assert outcome.kind == "finished"
    assert [r.status for r in outcome.results] == [0, 1]


def test_a_job_that_could_not_start_reports_the_agents_reason(make_spec: SpecFactory) -> None:
    status = NodeStatus(state="failed", reason="the job asks for image 'x'")
    outcome = decide(make_spec(), status, [PointFiles(None, None, "")])
    assert outcome.kind == "failed"
    assert outcome.reason == "the job could not start: the job asks for image 'x'"


def test_a_killed_job_fails_with_the_kill_reason(make_spec: SpecFactory) -> None:
    status = NodeStatus(state="killed", reason="kill requested by the harvester: cancelled")
    outcome = decide(make_spec(), status, [PointFiles(ran(-15), None, "")])
    assert outcome.kind == "failed"
    assert "cancelled" in outcome.reason


def test_a_preempted_job_is_reported_preempted(make_spec: SpecFactory) -> None:
    status = NodeStatus(state="preempted", reason="node agent received SIGTERM")
    outcome = decide(make_spec(), status, [PointFiles(ran(-15), None, "")])
    assert outcome.kind == "preempted"
    assert outcome.reason == "the job was preempted: node agent received SIGTERM"
