"""A small finished task to export: the test plays the site through the real edge API,
with learning curves, a point that fails every attempt, and metrics tarballs that hold
the payload's own MLflow runs (an offline ``mlruns/`` store, as payloads write it)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.integration.central import Central, FakeSite

SPACE = {
    "x": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}},
    "n": {"method": "uniformint", "dimension": {"low": 1, "high": 4}},
    "kind": {"method": "categorical", "dimension": {"categories": ["a", "b"]}},
}


def loss_of(params: dict[str, Any]) -> float:
    return float((params["x"] - 0.3) ** 2 + params["n"])


@dataclass
class ExportedTask:
    task_id: str
    owner: str
    token: str
    points: list[dict[str, Any]]
    """As ``GET /api/v1/tasks/{id}/points`` answers."""
    jobs: list[dict[str, Any]]


@functools.cache
def mlruns_tarball() -> bytes:
    """A metrics tarball with one payload run: param ``layers``, metric ``acc`` x3
    (made once: every job uploads the same one)."""
    code = (
        "import os, mlflow\n"
        "os.environ['MLFLOW_ALLOW_FILE_STORE'] = 'true'\n"
        "mlflow.set_tracking_uri('file://' + os.path.abspath('mlruns'))\n"
        "mlflow.set_experiment('payload')\n"
        "with mlflow.start_run(run_name='train'):\n"
        "    mlflow.log_param('layers', 3)\n"
        "    for step in range(3):\n"
        "        mlflow.log_metric('acc', 0.5 + 0.1 * step, step=step)\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}

        subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, check=True, timeout=120)
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            tar.add(Path(tmp) / "mlruns", arcname="mlruns")
        return out.getvalue()


async def upload_metrics(http: httpx.AsyncClient, site: FakeSite, job: dict[str, Any]) -> None:
    data = await asyncio.to_thread(mlruns_tarball)
    reply = await http.post(
        f"/edge/v1/jobs/{job['job_id']}/artifacts",
        json={"generation": job["generation"], "kinds": ["metrics"]},
        headers=site.headers,
    )
    reply.raise_for_status()
    upload = reply.json()["uploads"][0]
    async with httpx.AsyncClient() as raw:
        (await raw.put(upload["url"], content=data)).raise_for_status()
    reply = await http.post(
        f"/edge/v1/jobs/{job['job_id']}/artifacts/confirm",
        json={
            "generation": job["generation"],
            "kind": "metrics",
            "key": upload["key"],
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        headers=site.headers,
    )
    reply.raise_for_status()


async def run_task(
    system: Central,
    http: httpx.AsyncClient,
    *,
    points: int = 4,
    directions: list[str] | None = None,
    tarballs: bool = False,
) -> ExportedTask:
    """Run ``points`` points to the end: the first point's every attempt fails, the
    others report three intermediate values and finish (with a metrics tarball)."""
    owner = "alice"
    token = await system.token(owner, ["user"])
    user = {"Authorization": f"Bearer {token}"}
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    steering: dict[str, Any] = {"algorithm": "random", "seed": 7}
    if directions:
        steering = {"algorithm": "nsga2", "seed": 7, "directions": directions}
    body = {
        "name": "export me",
        "config": {
            "evaluationExec": "python train.py",
            "maxPoints": points,
            "nParallelEvaluation": 2,
            "nPointsPerIteration": points,
            "steering": steering,
        },
        "searchSpace": SPACE,
    }
    reply = await http.post("/api/v1/tasks", json=body, headers=user)
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["id"]
    doomed = f"{task_id}.main.0"

    async def status() -> str:
        view = (await http.get(f"/api/v1/tasks/{task_id}", headers=user)).json()
        return str(view["status"])

    while await status() != "done":
        await site.heartbeat(free=2)
        for job in await site.lease(n=2, wait=0.5):
            point = job["points"][0]
            await site.event(job, "started", host="node7")
            if point["point_id"] == doomed:
                await site.event(job, "failed", reason="CUDA out of memory")
                continue
            loss = loss_of(point["params"])
            curve = [{"step": s, "value": loss + 1.0 / (s + 1)} for s in range(3)]
            reply = await http.post(
                f"/edge/v1/jobs/{job['job_id']}/intermediate",
                json={"generation": job["generation"], "values": curve},
                headers=site.headers,
            )
            reply.raise_for_status()
            if tarballs:
                await upload_metrics(http, site, job)
            value: float | list[float] = loss
            if directions:
                value = [loss, point["params"]["x"]]
            results = [{"point_id": point["point_id"], "loss": value}]
            assert (await site.event(job, "finished", results=results))["accepted"]
    if tarballs:  # the storage service verifies the uploads; the export takes verified ones
        while True:
            listed = await http.get(f"/api/v1/tasks/{task_id}/artifacts", headers=user)
            if all(a["verified"] for a in listed.json()):
                break
            await asyncio.sleep(0.2)
    points_view = (await http.get(f"/api/v1/tasks/{task_id}/points", headers=user)).json()
    jobs_view = (await http.get(f"/api/v1/tasks/{task_id}/jobs", headers=user)).json()
    return ExportedTask(task_id, owner, token, points_view, jobs_view)


async def hpo(api_url: str, token: str, *args: str) -> tuple[int, str, str]:
    """The real ``hpo`` entry point, in a subprocess (the api runs in this loop)."""
    env = {**os.environ, "HPO_URL": api_url, "HPO_TOKEN": token, "NO_COLOR": "1"}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "hpo"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
