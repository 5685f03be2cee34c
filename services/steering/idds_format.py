"""The files a steering container reads and writes (docs/architecture.md, "iDDS steering
programs"), as pure functions.

An iDDS-style steering container is the user's own optimiser, started once per
generation round with ``steeringExec``. It reads ``%IN`` (:data:`IN_FILE`), a JSON
object ``{"points": [...], "opt_space": ...}`` holding every point generated so far
with its loss (``null`` while not evaluated), and writes ``%OUT`` (:data:`OUT_FILE`),
a JSON list of new points. ``[]`` while points of the segment are still open means
"nothing new yet" (hpogrid answers so when the open points reach ``%NUM_POINTS``): the
program is asked again after the next result. ``[]`` with no point open ends the
segment's search. In a segmented task every point
carries its ``model_id`` (the segment's index): input points are
``[[model_id, {point}], loss]``, ``opt_space`` is ``[{"model_id": i, "search_space":
{...}}, ...]`` and output items are ``[model_id, {point}]`` (the layout hpogrid's
``SteeringIDDS`` reads and writes).

Choices made where iDDS leaves room (so that a container sees one consistent picture):

* a point that failed after all its attempts shows the large loss stored for it
  (``failedPointLoss``), never ``null``: ``null`` would tell the optimiser that it is
  still running. A non-finite loss is shown as that large loss too, since JSON has no
  NaN; a multi-objective loss is a list;
* ``opt_space`` is written in the iDDS/Nevergrad form when every segment's space has
  one, else every segment in the phpo form (``form="auto"``); the caller may force
  either form;
* a conditional space is written flat (every dimension, no ``when``), the form such a
  program knows; of each point it writes, the values of the dimensions that are not
  active for it are dropped (the branches not taken) before the point is checked;
* points appear in segment order, then in the order they were generated;
* placeholders are replaced in one pass, and only as whole names (``%IN_DATA`` is not
  ``%IN`` followed by ``_DATA``). The values are shell-quoted, although none of them
  needs quoting, so the spec's ``--in=$PWD/%IN`` keeps working inside or outside the
  user's own quotes.

Nothing here does I/O; :mod:`services.steering.container` runs the program.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.domain.models import Loss, Point, PointStatus
from shared.searchspace import (
    SearchSpace,
    SearchSpaceError,
    canonical_key,
    drop_inactive,
    flatten,
    to_idds,
    to_phpo,
    validate_point,
)
from shared.searchspace.model import show

IN_FILE = "idds_input.json"
OUT_FILE = "output.json"
DEFAULT_FAILED_LOSS = 1e10
"""The same default as ``TaskConfig.failedPointLoss``; pass the task's own value."""

OptSpaceForm = Literal["auto", "idds", "phpo"]
WrittenForm = Literal["idds", "phpo"]

_OPEN = (PointStatus.UNEVALUATED, PointStatus.PENDING)
_PLACEHOLDER = re.compile(r"%(NUM_POINTS|MAX_POINTS|IN|OUT)(?![A-Za-z0-9_])")


class OutputError(ValueError):
    """The container's output is unusable; the message is meant for the task's owner."""


@dataclass(frozen=True)
class SegmentInput:
    """One segment as the container sees it.

    ``model_id`` is the segment's index (0 for an unsegmented task); ``history`` is
    every point of the segment so far, whatever its status; ``num_points`` is the
    segment's ``%NUM_POINTS`` in this round (0: the segment is not asked now).
    """

    model_id: int
    space: SearchSpace
    history: Sequence[Point]
    num_points: int

    def room(self, max_points: int) -> int:
        """How many new points are used: min(%NUM_POINTS, %MAX_POINTS - points so far)."""
        return max(0, min(self.num_points, max_points - len(self.history)))


@dataclass(frozen=True)
class SegmentOutcome:
    """What one round gave a segment.

    ``container_ended`` is true when the segment was asked for points, none of its
    points is open, and the container gave none for it (``[]``); ``search_over`` is
    true when the segment needs no further round: the container ended it, or it holds
    ``max_points`` points with the new ones. ``waiting`` is true when the segment was
    asked and got nothing new while points of it are open (an empty answer, or only
    duplicates of open points): ask again once one of them has its result.
    """

    model_id: int
    points: list[dict[str, Any]]
    search_over: bool
    container_ended: bool = False
    waiting: bool = False


@dataclass
class Selection:
    segments: dict[int, SegmentOutcome]
    warnings: list[str] = field(default_factory=list)


def substitute_exec(
    template: str,
    *,
    num_points: int,
    max_points: int,
    in_file: str = IN_FILE,
    out_file: str = OUT_FILE,
) -> str:
    """``steeringExec`` with ``%IN``, ``%OUT``, ``%NUM_POINTS`` and ``%MAX_POINTS``
    replaced by shell-quoted values."""
    values = {
        "IN": in_file,
        "OUT": out_file,
        "NUM_POINTS": str(num_points),
        "MAX_POINTS": str(max_points),
    }
    return _PLACEHOLDER.sub(lambda m: shlex.quote(values[m.group(1)]), template)


def written_form(spaces: Sequence[SearchSpace], form: OptSpaceForm) -> WrittenForm:
    """The form ``opt_space`` is written in. Raises :class:`SearchSpaceError` when the
    iDDS form is forced for a space that has none."""
    if form == "phpo":
        return "phpo"
    try:
        for space in spaces:
            to_idds(flatten(space))
    except SearchSpaceError:
        if form == "idds":
            raise
        return "phpo"
    return "idds"


def _space_json(space: SearchSpace, form: WrittenForm) -> dict[str, Any]:
    flat = flatten(space)
    return to_idds(flat) if form == "idds" else to_phpo(flat)


def loss_entry(point: Point, failed_loss: float) -> Loss | None:
    """The loss shown for ``point``: ``None`` while it is open, the stored loss when
    evaluated, the stored large loss (or ``failed_loss``) when it failed."""
    if point.status in _OPEN:
        return None
    loss = point.loss
    if loss is None:
        return failed_loss
    if isinstance(loss, list):
        return [value if math.isfinite(value) else failed_loss for value in loss]
    return loss if math.isfinite(loss) else failed_loss


def build_input(
    segments: Sequence[SegmentInput],
    *,
    segmented: bool,
    form: OptSpaceForm = "auto",
    failed_loss: float = DEFAULT_FAILED_LOSS,
) -> tuple[dict[str, Any], WrittenForm]:
    """The ``%IN`` document and the form its ``opt_space`` is in.

    Unsegmented calls take exactly one segment. Raises :class:`SearchSpaceError` as
    :func:`written_form` does.
    """
    if not segmented and len(segments) != 1:
        raise ValueError(f"an unsegmented call takes one segment, got {len(segments)}")
    used = written_form([s.space for s in segments], form)
    points: list[list[Any]] = []
    for segment in sorted(segments, key=lambda s: s.model_id):
        for point in sorted(segment.history, key=lambda p: p.index):
            params: Any = [segment.model_id, point.params] if segmented else point.params
            points.append([params, loss_entry(point, failed_loss)])
    opt_space: Any
    if segmented:
        opt_space = [
            {"model_id": s.model_id, "search_space": _space_json(s.space, used)}
            for s in sorted(segments, key=lambda s: s.model_id)
        ]
    else:
        opt_space = _space_json(segments[0].space, used)
    return {"points": points, "opt_space": opt_space}, used


def parse_output(
    text: str, *, segmented: bool, model_ids: Sequence[int], out_name: str = OUT_FILE
) -> list[tuple[int, object]]:
    """The items of ``%OUT`` as (model_id, point) pairs, model_id 0 when unsegmented.

    Checks the JSON and the shape only; the points themselves are checked by
    :func:`select_points`. Raises :class:`OutputError`.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputError(f"{out_name} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise OutputError(
            f"{out_name} must be a JSON list of new points ([] to end the search), got {show(data)}"
        )
    known = set(model_ids)
    items: list[tuple[int, object]] = []
    for number, item in enumerate(data, start=1):
        if not segmented:
            if not isinstance(item, Mapping):
                raise OutputError(
                    f"{out_name} item {number} must be a point (a JSON object), got {show(item)}"
                )
            items.append((0, item))
            continue
        if not (isinstance(item, list) and len(item) == 2):
            raise OutputError(
                f"{out_name} item {number} must be [model_id, {{point}}] in a segmented task, "
                f"got {show(item)}"
            )
        model_id, point = item
        if isinstance(model_id, bool) or not isinstance(model_id, int):
            raise OutputError(
                f"{out_name} item {number}: model_id must be an integer, got {show(model_id)}"
            )
        if model_id not in known:
            raise OutputError(
                f"{out_name} item {number}: model_id {model_id} is not a segment of this task "
                f"(model ids: {', '.join(map(str, sorted(known)))})"
            )
        items.append((model_id, point))
    return items


def select_points(
    items: Sequence[tuple[int, object]],
    segments: Sequence[SegmentInput],
    *,
    max_points: int,
    segmented: bool,
    out_name: str = OUT_FILE,
) -> Selection:
    """The new points of each segment from the container's items.

    Every point is checked against its segment's space first: one bad point makes the
    whole output unusable (:class:`OutputError` naming the first one and why). Then
    points equal to an open point (or to an earlier one of this output) are dropped,
    and so are points beyond the segment's :meth:`SegmentInput.room`; each drop is
    reported in ``warnings``. Points equal to an evaluated point are kept: a container
    may mean to evaluate a point again.
    """
    by_id = {s.model_id: s for s in segments}
    items = [
        (
            model_id,
            drop_inactive(by_id[model_id].space, point) if isinstance(point, Mapping) else point,
        )
        for model_id, point in items
    ]
    for number, (model_id, point) in enumerate(items, start=1):
        problems = validate_point(by_id[model_id].space, point)
        if problems:
            where = f"item {number}" + (f" (model_id {model_id})" if segmented else "")
            raise OutputError(
                f"{out_name} {where} {show(point, 120)} is not a point of the search space: "
                + "; ".join(problems)
            )
    selection = Selection(segments={})
    for segment in segments:
        room = segment.room(max_points)
        label = f"model_id {segment.model_id}: " if segmented else ""
        open_keys = {p.key for p in segment.history if p.status in _OPEN}
        proposed = [point for model_id, point in items if model_id == segment.model_id]
        accepted: list[dict[str, Any]] = []
        duplicates = beyond = 0
        for point in proposed:
            assert isinstance(point, Mapping)  # validate_point refused anything else
            params = dict(point)
            key = canonical_key(params)
            if key in open_keys:
                duplicates += 1
            elif len(accepted) >= room:
                beyond += 1
            else:
                open_keys.add(key)
                accepted.append(params)
        if duplicates:
            selection.warnings.append(
                f"{label}{duplicates} point(s) equal to a point not yet evaluated, dropped"
            )
        if beyond:
            selection.warnings.append(
                f"{label}{beyond} point(s) beyond min(%NUM_POINTS, %MAX_POINTS - points so "
                f"far) = {room}, dropped"
            )
        still_open = any(p.status in _OPEN for p in segment.history)
        ended = room > 0 and not proposed and not still_open
        full = len(segment.history) + len(accepted) >= max_points
        selection.segments[segment.model_id] = SegmentOutcome(
            model_id=segment.model_id,
            points=accepted,
            search_over=ended or full,
            container_ended=ended,
            waiting=room > 0 and not accepted and not (ended or full),
        )
    return selection
