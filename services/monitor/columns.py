"""A part of a task's snapshot as bytes, and back: what the monitor stores so that a
fresh monitor reads a 100k-point task in a few documents instead of 100k.

A part (:data:`~services.monitor.snapshot.PART_SIZE` consecutive indices of one
segment) is encoded as NumPy columns (the numbers, the losses, each parameter) and one
JSON header (the ids, job ids, errors, categorical labels, learning curves), the whole
compressed. Decoding appends the rows to a :class:`TaskSnapshot` in bulk, with no
per-point Python work but the ids' dictionary. Nothing is unpickled: a stored part is
data only.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from services.monitor.snapshot import NUMERIC, PART_SIZE, FloatArray, IntArray, TaskSnapshot
from shared.store.snapshots import SnapshotPart

FORMAT = 1
LEVEL = 1
"""zlib's fastest level: the ids and the repeated numbers shrink most of the way."""
_DTYPES = {"int64": np.int64, "float64": np.float64}


def encode(snap: TaskSnapshot, task_id: str, segment: str, part: int) -> SnapshotPart:
    """The part ``part`` of ``segment`` as ``snap`` holds it now."""
    rows = snap.part_rows(segment, part)
    arrays: dict[str, npt.NDArray[Any]] = {name: snap.col(name)[rows] for name in NUMERIC}
    arrays["loss"] = snap.loss[rows]
    labels: dict[str, list[Any]] = {}
    for name, column in snap.params.items():
        arrays[f"param:{name}"] = snap.values(name)[rows]
        if column.categorical:
            labels[name] = list(column.labels)
    position = {int(row): pos for pos, row in enumerate(rows.tolist())}
    header = {
        "format": FORMAT,
        "rows": len(rows),
        "ids": [snap.ids[r] for r in rows.tolist()],
        "job_ids": [snap.job_ids[r] for r in rows.tolist()],
        "errors": [snap.errors[r] for r in rows.tolist()],
        "labels": labels,
        "curves": [
            [position[row], steps.tolist(), values.tolist()]
            for row, (steps, values) in snap.curves.items()
            if row in position
        ],
        "arrays": [[name, str(a.dtype), list(a.shape)] for name, a in arrays.items()],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    body = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values())
    index = arrays["index"]
    status = arrays["status"]
    upto = min(snap.next_index(segment), (part + 1) * PART_SIZE)
    return SnapshotPart(
        task_id=task_id,
        segment=segment,
        part=part,
        upto=max(upto, part * PART_SIZE),
        open=index[status <= 1].tolist(),
        data=zlib.compress(struct.pack("<I", len(head)) + head + body, LEVEL),
    )


class Unreadable(ValueError):
    """A stored part this monitor cannot read (damaged, or another format): its points
    are read from the database instead."""


def decode(snap: TaskSnapshot, part: SnapshotPart) -> int:
    """Append the part's rows to ``snap`` (which must not know them yet); returns how
    many. Nothing is appended from a part that raises :class:`Unreadable`."""
    try:
        return _decode(snap, part)
    except (zlib.error, struct.error, ValueError, KeyError, TypeError, IndexError) as exc:
        raise Unreadable(f"{part.task_id}/{part.segment}/{part.part}: {exc}") from exc


def _decode(snap: TaskSnapshot, part: SnapshotPart) -> int:
    raw = zlib.decompress(part.data)
    (size,) = struct.unpack_from("<I", raw)
    header = json.loads(raw[4 : 4 + size])
    if header.get("format") != FORMAT:
        raise ValueError(f"format {header.get('format')!r}")
    if not header["rows"]:
        return 0
    arrays: dict[str, npt.NDArray[Any]] = {}
    offset = 4 + size
    for name, dtype, shape in header["arrays"]:
        kind = _DTYPES[dtype]
        count = math.prod(shape)
        arrays[name] = np.frombuffer(raw, kind, count, offset).reshape(shape)
        offset += count * np.dtype(kind).itemsize
    labels: dict[str, list[Any]] = header["labels"]
    params: dict[str, tuple[FloatArray, list[Any] | None]] = {
        name[len("param:") :]: (values, labels.get(name[len("param:") :]))
        for name, values in arrays.items()
        if name.startswith("param:")
    }
    if offset != len(raw) or len(header["ids"]) != header["rows"]:
        raise ValueError("columns do not match the header")
    curves: dict[int, tuple[IntArray, FloatArray]] = {
        int(pos): (np.array(steps, dtype=np.int64), np.array(values, dtype=np.float64))
        for pos, steps, values in header["curves"]
    }
    snap.add_rows(
        part.segment,
        header["ids"],
        {name: arrays[name] for name in NUMERIC},
        arrays["loss"],
        params,
        {"job_ids": header["job_ids"], "errors": header["errors"]},
        curves,
    )
    return int(header["rows"])


def coverage(parts: list[SnapshotPart]) -> int:
    """The first index of a segment the stored ``parts`` (of that segment) do not all
    hold: every part before it is present and full."""
    by_number = {p.part: p for p in parts}
    number = 0
    while number in by_number:
        part = by_number[number]
        if part.upto < (number + 1) * PART_SIZE:
            return part.upto
        number += 1
    return number * PART_SIZE
