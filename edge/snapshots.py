"""Names of the checkpoint snapshots in ``jobs/<id>/checkpoints/`` (docs/edge.md).

The node agent writes ``ckpt-<seq>.tar.gz`` (six digits, counting from 1 in each job
directory) by renaming a hidden temporary file, so a listed snapshot is always
complete; the highest ``seq`` is the newest. The harvester uploads the newest one it
has not uploaded yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^ckpt-(\d{6,})\.tar\.gz$")


@dataclass(frozen=True)
class Snapshot:
    seq: int
    path: Path


def snapshot_name(seq: int) -> str:
    return f"ckpt-{seq:06d}.tar.gz"


def list_snapshots(directory: Path) -> list[Snapshot]:
    """The complete snapshots in ``directory``, oldest first; [] if there is none."""
    try:
        names = [entry.name for entry in directory.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        match = _NAME.match(name)
        if match:
            found.append(Snapshot(int(match.group(1)), directory / name))
    return sorted(found, key=lambda s: s.seq)


def newest_snapshot(directory: Path) -> Snapshot | None:
    snapshots = list_snapshots(directory)
    return snapshots[-1] if snapshots else None
