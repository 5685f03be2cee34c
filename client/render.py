"""How ``hpo status`` and ``hpo watch`` put a task's view into words (pure)."""

from __future__ import annotations

from typing import Any


def _counts(p: dict[str, Any]) -> str:
    return (
        f"{p['evaluated']} evaluated, {p['failed']} failed, {p['pending']} pending, "
        f"{p['unevaluated']} waiting"
    )


def progress_lines(task: dict[str, Any]) -> list[str]:
    """The task's progress: trials of an online study (which has no planned end), or
    points against the plan, per segment when there are several."""
    p = task["progress"]
    if p["max_points"] is None:
        running = p["pending"] + p["unevaluated"]
        return [
            f"trials {p['points']}: {p['evaluated']} told, {p['failed']} failed, "
            f"{running} running (an online study: open until it is closed)"
        ]
    lines = [
        f"points {p['points']} of {p['max_points']}: {_counts(p)}; "
        f"jobs {p['jobs']} ({p['active_jobs']} active)"
    ]
    segments = p.get("segments") or []
    if len(segments) > 1:
        lines.extend(
            f"  segment {s['segment']}: {s['points']} of {s['max_points']}: {_counts(s)}"
            for s in segments
        )
    return lines


def status_lines(task: dict[str, Any]) -> list[str]:
    """Everything ``hpo status`` says about a task before its best point."""
    head = f"{task['id']} {task['name']}  status: {task['status']}"
    if task.get("reason"):
        head += f" ({task['reason']})"
    lines = [head]
    out_ds = (task.get("config") or {}).get("outDS")
    if out_ds:
        lines.append(f"output dataset (outDS): {out_ds}")
    if task.get("waiting"):
        lines.append(f"waiting: {task['waiting']}")
    return lines + progress_lines(task)


def metrics_text(metrics: dict[str, Any] | None) -> str:
    """``acc=0.91 time=12.3``, or "" without metrics."""
    return " ".join(f"{name}={value:.6g}" for name, value in (metrics or {}).items())
