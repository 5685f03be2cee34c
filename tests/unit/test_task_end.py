"""How a task ends and the reason it gives (the job builder's pure rule)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.jobbuilder.logic import TaskTally, idle_over, task_end
from shared.clock import utcnow
from shared.domain.models import TaskStatus


def tally(**over: Any) -> TaskTally:
    base: dict[str, Any] = {
        "segments": 1,
        "max_points": 4,
        "budget": 8,
        "jobs": 4,
        "evaluated": 4,
        "failed": 0,
        "open": 0,
        "exhausted": True,
    }
    return TaskTally(**{**base, **over})


@pytest.mark.parametrize(
    ("over", "status", "reason"),
    [
        ({}, TaskStatus.DONE, "all 4 points evaluated"),
        (
            {"segments": 2, "evaluated": 8, "jobs": 8, "budget": 16},
            TaskStatus.DONE,
            "all 8 points of 2 segments evaluated",
        ),
        (
            {"evaluated": 3, "failed": 1, "jobs": 6},
            TaskStatus.DONE,
            "4 points: 3 evaluated, 1 failed after 3 attempts",
        ),
        (
            {"evaluated": 2, "jobs": 2},
            TaskStatus.DONE,
            "the search ended after 2 of 4 points: the optimiser had no more points to "
            "propose; 2 evaluated",
        ),
        (
            {"evaluated": 0, "failed": 4, "jobs": 12, "budget": 12},
            TaskStatus.FAILED,
            "every evaluation failed: none of 12 jobs gave a loss (4 of 4 points failed "
            "after 3 attempts); last error: exit 3",
        ),
        (
            {"evaluated": 0, "failed": 2, "open": 1, "jobs": 8, "exhausted": False},
            TaskStatus.FAILED,
            "every evaluation failed: none of 8 jobs gave a loss (2 of 4 points failed after "
            "3 attempts); maxEvaluationJobs (8) reached; last error: exit 3",
        ),
        (
            {"evaluated": 2, "open": 1, "jobs": 8, "exhausted": False},
            TaskStatus.FAILED,
            "maxEvaluationJobs (8) reached with 2 of 4 points never evaluated (2 evaluated, "
            "0 failed after 3 attempts): retries of failed attempts used up the jobs; raise "
            "maxEvaluationJobs or fix the failures; last error: exit 3",
        ),
        (
            {"evaluated": 0, "jobs": 0},
            TaskStatus.FAILED,
            "the search ended before any point was evaluated (no point was generated); "
            "last error: exit 3",
        ),
    ],
)
def test_task_end(over: dict[str, Any], status: TaskStatus, reason: str) -> None:
    t = tally(**over)
    assert t.over
    end = task_end(t, max_attempts=3, last_error="exit   3\n")
    assert (end.status, end.reason) == (status, reason)


def test_a_task_with_work_left_is_not_over() -> None:
    assert not tally(open=2, exhausted=False, evaluated=2, jobs=2).over
    assert not tally(open=0, exhausted=False, evaluated=2, jobs=2).over


def test_a_long_error_is_cut() -> None:
    end = task_end(tally(evaluated=0, failed=4, jobs=12), max_attempts=3, last_error="e" * 999)
    assert end.reason.endswith("e...") and len(end.reason) < 450


def test_idle_over() -> None:
    now = utcnow()
    assert idle_over(now - timedelta(seconds=61), now, 60)
    assert not idle_over(now - timedelta(seconds=59), now, 60)
