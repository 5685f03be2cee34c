"""State machines, job verdicts and site matching."""

from __future__ import annotations

from typing import Any

import pytest

from services.broker.logic import choose_site, eligible
from services.jobbuilder.logic import Verdict, job_slots, judge
from shared.domain.models import (
    JOB_STATES,
    POINT_STATES,
    TASK_STATES,
    Job,
    JobStatus,
    PointOutcome,
    PointStatus,
    Site,
    TaskStatus,
)
from shared.domain.states import InvalidTransitionError
from shared.domain.taskconfig import TaskConfig


def cfg(**over: Any) -> TaskConfig:
    return TaskConfig.model_validate({"evaluationExec": "run", **over})


def test_no_state_moves_backwards() -> None:
    assert TASK_STATES.allowed(TaskStatus.SUBMITTED, TaskStatus.RUNNING)
    assert not TASK_STATES.allowed(TaskStatus.DONE, TaskStatus.RUNNING)
    assert not POINT_STATES.allowed(PointStatus.EVALUATED, PointStatus.PENDING)
    assert not JOB_STATES.allowed(JobStatus.FINISHED, JobStatus.RUNNING)
    assert JOB_STATES.terminal(JobStatus.LOST)
    with pytest.raises(InvalidTransitionError, match="job: finished -> leased"):
        JOB_STATES.check(JobStatus.FINISHED, JobStatus.LEASED)
    assert set(JOB_STATES.sources(JobStatus.FINISHED)) == {JobStatus.LEASED, JobStatus.RUNNING}


def test_job_slots_respect_parallelism_and_budget() -> None:
    config = cfg(nParallelEvaluation=3, maxPoints=5, maxEvaluationJobs=7)
    assert job_slots(config, active_jobs=0, total_jobs=0) == 3
    assert job_slots(config, active_jobs=2, total_jobs=2) == 1
    assert job_slots(config, active_jobs=0, total_jobs=6) == 1
    assert job_slots(config, active_jobs=3, total_jobs=3) == 0
    assert cfg(maxPoints=4).job_budget() == 8
    assert cfg(maxPoints=4).job_budget(segments=3) == 24, "maxPoints is per segment"
    assert cfg(maxPoints=4, maxEvaluationJobs=5).job_budget(segments=3) == 5
    assert job_slots(cfg(maxPoints=1, nParallelEvaluation=9), 0, 2, segments=3) == 4


def job(status: JobStatus, results: list[PointOutcome] | None = None) -> Job:
    return Job(
        id="j",
        task_id="t",
        owner="o",
        segment="main",
        point_ids=["p"],
        attempt=1,
        status=status,
        results=results or [],
        reason="boom",
    )


def test_judge() -> None:
    ok = judge(job(JobStatus.FINISHED, [PointOutcome(point_id="p", loss=0.5)]), {"p": 1}, 3)
    assert ok[0].verdict is Verdict.EVALUATED and ok[0].loss == 0.5
    bad = judge(
        job(JobStatus.FINISHED, [PointOutcome(point_id="p", status=1, message="nan")]), {"p": 1}, 3
    )
    assert bad[0].verdict is Verdict.RETRY and bad[0].reason == "nan"
    missing = judge(job(JobStatus.FINISHED), {"p": 1}, 3)
    assert missing[0].verdict is Verdict.RETRY
    assert judge(job(JobStatus.LOST), {"p": 2}, 3)[0].verdict is Verdict.RETRY
    assert judge(job(JobStatus.FAILED), {"p": 3}, 3)[0].verdict is Verdict.GIVE_UP
    assert judge(job(JobStatus.CANCELLED), {"p": 1}, 3)[0].verdict is Verdict.IGNORE


def test_site_matching() -> None:
    a = Site(id="a", arch="amd64", free_slots=2)
    p = Site(id="p", arch="ppc64le", free_slots=6)
    assert choose_site(cfg(), [a, p], {}) is p
    assert choose_site(cfg(), [a, p], {"p": 6}) is a
    assert choose_site(cfg(site="a"), [a, p], {}) is a
    assert choose_site(cfg(evaluationContainer={"amd64": "docker://x"}), [a, p], {}) is a
    assert not eligible(cfg(architecture="arm64"), a)
    assert choose_site(cfg(), [a], {"a": 2}) is None
