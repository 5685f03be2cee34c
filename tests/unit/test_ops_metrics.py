"""What the metrics measure and what they never carry."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from prometheus_client import generate_latest

from services.ops import time_requests
from shared.clock import utcnow
from shared.domain.models import Job, JobStatus
from shared.ops.metrics import CentralMetrics, job_stage_seconds


def test_stage_latencies_come_from_the_stamps() -> None:
    t0 = utcnow()
    job = Job(
        id="j",
        task_id="t",
        owner="o",
        segment="main",
        point_ids=["p"],
        attempt=1,
        status=JobStatus.FINISHED,
        created=t0,
        stamps={
            "assigned": t0 + timedelta(seconds=1),
            "leased": t0 + timedelta(seconds=3),
            "running": t0 + timedelta(seconds=6),
            "finished": t0 + timedelta(seconds=16),
        },
    )
    assert dict(job_stage_seconds(job)) == {
        "queued": 1,
        "dispatch": 2,
        "startup": 3,
        "run": 10,
        "total": 16,
    }
    lost_before_start = job.model_copy(
        update={"stamps": {"assigned": t0, "leased": t0, "lost": t0 + timedelta(seconds=9)}}
    )
    assert dict(job_stage_seconds(lost_before_start)) == {
        "queued": 0,
        "dispatch": 0,
        "total": 9,
    }


async def test_requests_are_labelled_by_route_template_never_by_path() -> None:
    """A Hopaas path carries the user's token: it must not reach the metrics."""
    app = FastAPI()

    @app.post("/api/ask/{token}")
    async def ask(token: str) -> dict[str, str]:
        return {}

    metrics = CentralMetrics()
    time_requests(app, "api", metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        assert (await http.post("/api/ask/hpo_s3cr3t")).status_code == 200
        assert (await http.get("/elsewhere/hpo_s3cr3t")).status_code == 404
    text = generate_latest(metrics.registry).decode()
    assert "s3cr3t" not in text
    assert 'route="/api/ask/{token}",status="200"' in text
    assert 'route="unmatched",status="404"' in text
