"""State machines, job verdicts and site matching."""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.broker.logic import choose_site, eligible
from services.jobbuilder.logic import Verdict, job_slots, judge, may_resume
from shared.domain.models import (
    JOB_STATES,
    POINT_STATES,
    TASK_STATES,
    CheckpointRef,
    Job,
    JobStatus,
    Point,
    PointOutcome,
    PointStatus,
    Site,
    TaskStatus,
)
from shared.domain.states import InvalidTransitionError
from shared.domain.taskconfig import TaskConfig
from shared.store.points import next_attempt


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


def test_a_preempted_job_is_resumed_only_with_a_checkpoint_and_within_the_cap() -> None:
    preempted = job(JobStatus.PREEMPTED)
    resumed = judge(preempted, {"p": 3}, 3, resumable={"p"})
    assert resumed[0].verdict is Verdict.RESUME  # even on the last attempt: not consumed
    not_resumable = judge(preempted, {"p": 1}, 3, resumable=())
    assert not_resumable[0].verdict is Verdict.RETRY
    assert "no checkpoint" in not_resumable[0].reason
    assert judge(preempted, {"p": 3}, 3)[0].verdict is Verdict.GIVE_UP
    assert JOB_STATES.allowed(JobStatus.RUNNING, JobStatus.PREEMPTED)
    assert JOB_STATES.terminal(JobStatus.PREEMPTED)


def test_may_resume_needs_a_checkpoint_and_preemptions_below_the_cap() -> None:
    ref = CheckpointRef(key="k", size=1, sha256="0" * 64, job_id="j", seq=1)
    point = Point(id="p", task_id="t", segment="main", index=0, params={}, key="k")
    assert not may_resume(point, 10)
    point.checkpoint = ref
    assert may_resume(point, 10)
    point.preemptions = 10
    assert not may_resume(point, 10)


def test_a_resumed_job_keeps_the_attempt_and_gets_its_own_id() -> None:
    point = Point(id="p", task_id="t", segment="main", index=0, params={}, key="k", attempts=1)
    assert next_attempt(point) == (2, "p.a2")
    point.resume, point.preemptions = True, 1
    assert next_attempt(point) == (1, "p.a1.r1")


def test_checkpoint_options_are_checked() -> None:
    config = cfg(checkPointToSave="epoch.txt, model/ ,", checkPointInterval=2)
    assert config.checkpoint_files == ["epoch.txt", "model"]
    with pytest.raises(ValueError, match=re.escape("checkPointToSave: '../x'")):
        cfg(checkPointToSave="ok.txt,../x")
    with pytest.raises(ValueError, match=re.escape("checkPointToLoad: '/abs.tgz'")):
        cfg(checkPointToSave="a", checkPointToLoad="/abs.tgz")
    with pytest.raises(ValueError, match="maxPreemptions"):
        cfg(maxPreemptions=-1)
