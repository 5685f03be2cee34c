"""Tasks with many evaluated points, written straight into the store.

Evaluating 100,000 points through the services would take hours; what the dashboard
reads is the stored task, segments and points, so the browser tests and the render
benchmark write those documents as the services would (a real submission model, real
point documents) and leave the services to serve them.
"""

from __future__ import annotations

import math
import random
from datetime import timedelta
from typing import Any

from services.api.schemas import TaskSubmission
from services.api.submission import build_task
from shared.clock import utcnow
from shared.domain.models import TaskStatus
from shared.store import Store

SPACE = {
    "lr": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-1}},
    "dropout": {"method": "uniform", "dimension": {"low": 0.0, "high": 0.5}},
    "layers": {"method": "uniformint", "dimension": {"low": 1, "high": 8}},
    "optimizer": {"method": "categorical", "dimension": {"categories": ["adam", "sgd", "rmsprop"]}},
}
BATCH = 5000


def loss_of(params: dict[str, Any], rng: random.Random) -> float:
    """A smooth bowl in (log lr, dropout) with a categorical offset, plus noise."""
    lr = math.log10(params["lr"]) + 3
    offset = {"adam": 0.0, "sgd": 0.3, "rmsprop": 0.1}[params["optimizer"]]
    noise = rng.random() * 0.05
    return lr**2 + 4 * (params["dropout"] - 0.2) ** 2 + offset + 0.02 * params["layers"] + noise


def draw(rng: random.Random) -> dict[str, Any]:
    return {
        "lr": 10 ** rng.uniform(-5, -1),
        "dropout": rng.uniform(0, 0.5),
        "layers": rng.randint(1, 8),
        "optimizer": rng.choice(["adam", "sgd", "rmsprop"]),
    }


async def seed_task(
    store: Store,
    owner: str,
    points: int,
    *,
    name: str = "seeded",
    directions: list[str] | None = None,
    curves: int = 0,
    pruned: int = 0,
    failed: int = 0,
    seed: int = 1,
) -> str:
    """A finished task of ``points`` points: the first ``curves`` report intermediate
    values, ``pruned`` of those were pruned, and the last ``failed`` failed."""
    steering: dict[str, Any] = {"algorithm": "random", "seed": seed}
    if directions:
        steering["directions"] = directions
    submission = TaskSubmission.model_validate(
        {
            "name": name,
            "config": {"evaluationExec": "true", "maxPoints": points, "steering": steering},
            "searchSpace": SPACE,
        }
    )
    task, segments = build_task(submission, owner, max_files_bytes=1_000_000)
    rng = random.Random(seed)
    start = utcnow() - timedelta(seconds=points)
    best: tuple[float, str] | None = None
    docs: list[dict[str, Any]] = []
    for index in range(points):
        params = draw(rng)
        point_id = f"{task.id}.main.{index}"
        loss: Any = loss_of(params, rng)
        status = "evaluated"
        doc: dict[str, Any] = {
            "_id": point_id,
            "task_id": task.id,
            "segment": "main",
            "index": index,
            "params": params,
            "key": point_id,
            "attempts": 1,
            "job_id": f"{point_id}.a1",
            "counted_job_id": f"{point_id}.a1",
            "last_error": "",
            "created": start + timedelta(seconds=index),
            "evaluated": start + timedelta(seconds=index + 0.8),
        }
        if directions:
            loss = [loss, params["layers"] + rng.random()]
        if index < curves:
            steps = 20
            values = [loss * (1 + 2.0 / (s + 1)) for s in range(steps)]
            if index < pruned:
                values = values[: 5 + index % 5]
                doc["pruned_step"] = len(values) - 1
                loss = values[-1]
            doc["intermediate"] = {str(s): v for s, v in enumerate(values)}
        if index >= points - failed:
            status, loss = "failed", 1e10
            doc["last_error"] = "payload exited 1"
            doc["attempts"] = 3
        doc.update(status=status, loss=loss)
        counts = status == "evaluated" and not directions and "pruned_step" not in doc
        if counts and (best is None or loss < best[0]):
            best = (loss, point_id)
        docs.append(doc)
    for i in range(0, len(docs), BATCH):
        await store.points.col.insert_many(docs[i : i + BATCH])
    await store.segments.insert_many(segments)
    task.status = TaskStatus.DONE
    if best is not None:
        task.best_loss, task.best_point_id = best
    await store.tasks.insert(task)
    return task.id
