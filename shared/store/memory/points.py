"""Points in memory (see :mod:`shared.store.points` for the MongoDB twin).

The table is shared with the curve and study repositories, as the ``points`` collection
is: its unique keys are (task, segment, index) and, for online trials only, (task, ask).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from shared.clock import utcnow
from shared.domain.models import CheckpointRef, Loss, Point, PointStatus
from shared.domain.paging import PageRequest, PointOrder
from shared.store.documents import Doc, to_doc
from shared.store.errors import DuplicateKeyError
from shared.store.memory.base import MemoryRepository
from shared.store.memory.table import Table, Unique, set_field
from shared.store.port import ROW_FIELDS
from shared.store.transitions import (
    GIVE_UP,
    HELD,
    OPEN_STATUSES,
    RESULT,
    RESUME,
    RETRY,
    START,
    PointMove,
    next_attempt,
)

_OPEN = {s.value for s in OPEN_STATUSES}


def _number(value: object) -> bool:
    """A scalar loss (MongoDB's ``$type: "number"``: no bool, no list)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def points_table() -> Table:
    def ask(d: Doc) -> tuple[str, str] | None:
        return (d["task_id"], d["ask_id"]) if isinstance(d.get("ask_id"), str) else None

    return Table(
        "points",
        (
            Unique(
                "task_id_1_segment_1_index_1", lambda d: (d["task_id"], d["segment"], d["index"])
            ),
            Unique("task_id_1_ask_id_1", ask),
        ),
    )


def in_segment(task_id: str, segment: str) -> Callable[[Doc], bool]:
    return lambda d: d["task_id"] == task_id and d["segment"] == segment


def move(
    table: Table, point_id: str, step: PointMove, change: Callable[[Doc], None], **where: object
) -> bool:
    """``step`` on the point if its status is one the state machine lets it come from
    and every ``where`` field holds its value; False otherwise."""
    doc = table.get(point_id)
    if doc is None or doc.get("status") not in step.values:
        return False
    if any(doc.get(k) != v for k, v in where.items()):
        return False

    def apply(d: Doc) -> None:
        d["status"] = step.target.value
        change(d)

    table.update(point_id, apply)
    return True


class MemoryPointRepository(MemoryRepository[Point]):
    model = Point

    def __init__(self, table: Table) -> None:
        super().__init__(table)

    async def insert(self, point: Point) -> bool:
        try:
            self.table.insert(to_doc(point))
        except DuplicateKeyError:
            return False
        return True

    async def insert_many(self, points: list[Point]) -> None:
        for item in points:  # in order, as an ordered insert_many
            self.table.insert(to_doc(item))

    async def list_for_segment(self, task_id: str, segment: str) -> list[Point]:
        return self._find(in_segment(task_id, segment), sort=lambda d: d["index"])

    async def changed_for_segment(
        self, task_id: str, segment: str, count: int, open_indices: list[int]
    ) -> list[Point]:
        wanted = set(open_indices)
        seg = in_segment(task_id, segment)

        def changed(d: Doc) -> bool:
            if not seg(d):
                return False
            return d["index"] >= count or (d["index"] in wanted and d["status"] not in _OPEN)

        return self._find(changed, sort=lambda d: d["index"])

    async def list_for_task(
        self, task_id: str, *, status: PointStatus | None = None, limit: int = 0
    ) -> list[Point]:
        def match(d: Doc) -> bool:
            return d["task_id"] == task_id and (status is None or d["status"] == status.value)

        return self._find(match, sort=lambda d: d["index"], limit=limit)

    async def page_for_task(
        self,
        task_id: str,
        page: PageRequest,
        *,
        order: PointOrder = PointOrder.INDEX,
        status: PointStatus | None = None,
        segment: str | None = None,
    ) -> list[Point]:
        def match(d: Doc) -> bool:
            if d["task_id"] != task_id:
                return False
            if status is not None and d["status"] != status.value:
                return False
            if segment is not None and d["segment"] != segment:
                return False
            return order is not PointOrder.LOSS or _number(d.get("loss"))

        return self._page(match, order.value, page)

    async def rows(
        self, task_id: str, segment: str, *, start: int, stop: int | None = None
    ) -> list[Doc]:
        seg = in_segment(task_id, segment)

        def match(d: Doc) -> bool:
            return seg(d) and d["index"] >= start and (stop is None or d["index"] < stop)

        fields = ("_id", *ROW_FIELDS)
        return [{k: d[k] for k in fields if k in d} for d in self.table.find(match)]

    async def evaluated_losses(self, task_id: str) -> list[tuple[str, float]]:
        rows = sorted(
            (
                d
                for d in self.table.scan()
                if d["task_id"] == task_id and d["status"] == PointStatus.EVALUATED.value
            ),
            key=lambda d: (d.get("evaluated"), d["_id"]),
        )
        return [
            (str(d["_id"]), float(d["loss"]))
            for d in rows
            if isinstance(d.get("loss"), int | float) and not isinstance(d["loss"], bool)
        ]

    async def count_by_status(self, task_id: str, segment: str | None = None) -> Counter[str]:
        return Counter(
            d["status"]
            for d in self.table.scan()
            if d["task_id"] == task_id and (segment is None or d["segment"] == segment)
        )

    async def count_by_segment(self, task_id: str) -> dict[str, Counter[str]]:
        result: dict[str, Counter[str]] = {}
        for d in self.table.scan():
            if d["task_id"] == task_id:
                result.setdefault(d["segment"], Counter())[d["status"]] += 1
        return result

    async def start_attempt(self, point: Point) -> str | None:
        attempt, job_id = next_attempt(point)
        doc = self.table.get(point.id)
        if doc is None or doc.get("attempts") != point.attempts:
            return None
        # points stored before preemptions existed have no such field
        if (doc.get("preemptions") or 0) != point.preemptions:
            return None

        def change(d: Doc) -> None:
            d.update(attempts=attempt, job_id=job_id, resume=False)

        return job_id if move(self.table, point.id, START, change) else None

    async def record_result(
        self, point_id: str, job_id: str, loss: Loss, metrics: dict[str, float] | None = None
    ) -> bool:
        def change(d: Doc) -> None:
            set_field(d, "loss", loss)
            d.update(counted_job_id=job_id, evaluated=utcnow(), metrics=dict(metrics or {}))

        return move(self.table, point_id, RESULT, change, job_id=job_id)

    async def retry(self, point_id: str, job_id: str, error: str) -> bool:
        return move(
            self.table, point_id, RETRY, lambda d: d.update(last_error=error), job_id=job_id
        )

    async def resume(self, point_id: str, job_id: str, reason: str) -> bool:
        def change(d: Doc) -> None:
            d.update(last_error=reason, resume=True, preemptions=int(d.get("preemptions") or 0) + 1)

        return move(self.table, point_id, RESUME, change, job_id=job_id)

    async def save_checkpoint(self, point_id: str, ref: CheckpointRef) -> bool:
        doc = self.table.get(point_id)
        if doc is None or doc.get("status") != HELD.value or doc.get("job_id") != ref.job_id:
            return False
        held = doc.get("checkpoint")
        newer = (
            not isinstance(held, dict)
            or held.get("job_id") != ref.job_id
            or (isinstance(held.get("seq"), int) and held["seq"] < ref.seq)
        )
        if not newer:
            return False
        self.table.update(point_id, lambda d: set_field(d, "checkpoint", ref.model_dump()))
        return True

    async def give_up(self, point_id: str, job_id: str, error: str, loss: float) -> bool:
        def change(d: Doc) -> None:
            d.update(loss=loss, last_error=error, counted_job_id=job_id, evaluated=utcnow())

        return move(self.table, point_id, GIVE_UP, change, job_id=job_id)
