"""From what a finished job left on disk to the terminal event the api gets.

Pure decisions over already-read files, so each user-facing message is unit-tested
without processes. The rule of the evaluation container (docs/architecture.md §6.4):
``output.json`` = ``{"status": 0, "loss": ..., "message": ...}``; status missing or 0 means success;
loss is a number or a list of numbers. Every failure message says what to look at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from edge.documents import NodeStatus, PointRun
from edge.harvester.payloadfile import PayloadFileError, parse_json
from shared.edge_api import MAX_WIRE_METRICS, JobSpec, PointResult

MAX_MESSAGE = 4000
DEFAULT_MAX_DEPTH = 64


@dataclass(frozen=True)
class PointFiles:
    """What the harvester read for one point: its run record, output text, log tail."""

    run: PointRun | None
    output_text: str | None
    log_tail: str
    output_error: str | None = None
    """Why the output file was refused unread (a FIFO, a link, too big, not UTF-8)."""


@dataclass(frozen=True)
class Outcome:
    kind: Literal["finished", "failed", "preempted"]
    results: list[PointResult]
    reason: str


def _with_log(message: str, log_tail: str) -> str:
    if log_tail.strip():
        message = f"{message}; last lines of payload.log:\n{log_tail}"
    return message[-MAX_MESSAGE:] if len(message) > MAX_MESSAGE else message


def _valid_loss(value: Any) -> float | list[float] | None:
    def number(x: Any) -> float | None:
        if isinstance(x, bool) or not isinstance(x, int | float):
            return None
        return float(x) if math.isfinite(x) else None

    if isinstance(value, list) and value:
        items = [number(v) for v in value]
        return None if any(v is None for v in items) else [v for v in items if v is not None]
    return number(value)


def _passed_metrics(value: Any) -> dict[str, object] | None:
    """``metrics`` passed on for the api to check (:mod:`shared.domain.metrics`). NaN
    and infinities never get here: the harvester's parse of the output file refuses
    them with the file's name (edge/harvester/payloadfile.py). Anything but an object,
    or more than the wire carries, goes as an empty object with one entry naming the
    problem, which the api refuses."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_WIRE_METRICS:
        what = type(value).__name__ if not isinstance(value, dict) else f"{len(value)} entries"
        return {"(metrics)": f"not a JSON object of at most {MAX_WIRE_METRICS} numbers: {what}"}
    return {str(k): v for k, v in value.items()}


def point_result(
    point_id: str, output_name: str, files: PointFiles, max_depth: int = DEFAULT_MAX_DEPTH
) -> PointResult:
    """The result of one point, a failure (status != 0) with a reason if it has none."""

    def failed(status: int, message: str) -> PointResult:
        return PointResult(
            point_id=point_id, status=status or 1, message=_with_log(message, files.log_tail)
        )

    run = files.run
    if run is None or run.exit_code is None:
        return failed(1, "the payload was not run (the job was stopped before this point)")
    if run.exit_code != 0:
        how = (
            f"was killed by signal {-run.exit_code}"
            if run.exit_code < 0
            else f"exited with code {run.exit_code}"
        )
        return failed(
            run.exit_code if run.exit_code > 0 else 128 - run.exit_code, f"the payload {how}"
        )
    if files.output_error is not None:
        return failed(1, files.output_error)
    if files.output_text is None:
        return failed(
            1, f"the payload exited with code 0 but wrote no {output_name} in its working directory"
        )
    try:
        doc = parse_json(output_name, files.output_text, max_depth)
    except PayloadFileError as exc:
        return failed(1, str(exc))
    if not isinstance(doc, dict):
        return failed(
            1,
            f"{output_name} must be a JSON object like "
            '{"status": 0, "loss": 0.1}, not ' + type(doc).__name__,
        )
    status = doc.get("status", 0)
    message = str(doc.get("message") or "")
    if status is None:
        status = 0
    if isinstance(status, bool) or not isinstance(status, int):
        return failed(1, f'{output_name}: "status" must be an integer, got {status!r}')
    if status != 0:
        return failed(
            status,
            f"the payload reported status {status}"
            + (f": {message}" if message else " in " + output_name),
        )
    metrics = _passed_metrics(doc.get("metrics"))
    if metrics is not None and doc.get("loss") is None:
        # The task may compute its loss from the metrics: the api decides.
        return PointResult(
            point_id=point_id, status=0, message=message[:MAX_MESSAGE], metrics=metrics
        )
    loss = _valid_loss(doc.get("loss"))
    if loss is None:
        return failed(
            1,
            f'{output_name} has status 0 but "loss" is {doc.get("loss")!r}; '
            "it must be a finite number or a list of them",
        )
    return PointResult(
        point_id=point_id, loss=loss, status=0, message=message[:MAX_MESSAGE], metrics=metrics
    )


def decide(
    spec: JobSpec,
    status: NodeStatus,
    files: list[PointFiles],
    max_depth: int = DEFAULT_MAX_DEPTH,
    refused: str = "",
) -> Outcome:
    """``finished`` if at least one point has a loss, else ``failed`` with a reason;
    ``failed`` with ``refused`` as the reason if a file of the job was refused."""
    if status.state == "failed" and not status.points:
        return Outcome("failed", [], f"the job could not start: {status.reason}")
    results = [
        point_result(p.point_id, spec.files.output, f, max_depth)
        for p, f in zip(spec.points, files, strict=True)
    ]
    if refused:
        failures = [
            r if r.status != 0 else PointResult(point_id=r.point_id, status=1, message=refused)
            for r in results
        ]
        return Outcome("failed", failures, refused)
    good = [r for r in results if r.status == 0]
    if status.state == "preempted":
        return Outcome("preempted", good, f"the job was preempted: {status.reason}")
    if status.state == "killed":
        return Outcome("failed", good, f"the job was stopped: {status.reason}")
    if good:
        return Outcome("finished", results, "")
    if len(results) == 1:
        return Outcome("failed", results, results[0].message)
    first = results[0].message
    return Outcome("failed", results, f"all {len(results)} points failed; first: {first}")


def lost(reason: str, log_tail: str) -> Outcome:
    return Outcome("failed", [], _with_log(reason, log_tail))
