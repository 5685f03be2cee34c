"""Following a task until it ends, with a progress bar and the best loss so far."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from client.http import ApiClient

TERMINAL = ("done", "failed", "cancelled")


def _best(task: dict[str, Any]) -> str:
    best = task.get("best")
    return "-" if not best else f"{best['loss']:.5g}"


def watch(
    client: ApiClient, task_id: str, console: Console, *, interval: float = 1.0
) -> dict[str, Any]:
    """Poll until the task is terminal; returns its final view."""
    task = client.task(task_id)
    columns = (
        TextColumn("[bold]{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("evaluated · best loss {task.fields[best]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        row = bar.add_task(
            "task", total=task["progress"]["max_points"], status=task["status"], best="-"
        )
        while True:
            progress = task["progress"]
            bar.update(
                row,
                completed=progress["evaluated"] + progress["failed"],
                status=task["status"],
                best=_best(task),
            )
            if task["status"] in TERMINAL:
                break
            time.sleep(interval)
            task = client.task(task_id)
    console.print(f"{task['status']}: {escape(task.get('reason') or '')}")
    return task
