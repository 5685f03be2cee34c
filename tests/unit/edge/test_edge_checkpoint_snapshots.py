"""The node agent's checkpoint snapshots: when one is taken, what it holds, the cap."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from edge.node.checkpoint import Snapshotter
from edge.snapshots import list_snapshots


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def members(path: Path) -> dict[str, bytes | None]:
    with tarfile.open(path) as tar:
        out: dict[str, bytes | None] = {}
        for m in tar.getmembers():
            handle = tar.extractfile(m) if m.isfile() else None
            out[m.name] = handle.read() if handle else None
        return out


def make(tmp_path: Path, names: list[str], **kw: object) -> tuple[Path, Snapshotter]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    options: dict[str, object] = {"interval_seconds": 60.0, "max_bytes": 10_000_000, "keep": 3}
    options.update(kw)
    return work, Snapshotter(work, tmp_path / "checkpoints", names, **options)  # type: ignore[arg-type]


def test_a_snapshot_holds_the_listed_files_and_directories_only(tmp_path: Path) -> None:
    work, snaps = make(tmp_path, ["epoch.txt", "model"])
    (work / "epoch.txt").write_text("3")
    (work / "model").mkdir()
    (work / "model" / "weights.bin").write_bytes(b"\x01\x02")
    (work / "unrelated.log").write_text("not saved")
    result = snaps.snapshot()
    assert result.outcome == "taken" and result.path is not None
    assert result.path.name == "ckpt-000001.tar.gz"
    assert members(result.path) == {
        "epoch.txt": b"3",
        "model": None,
        "model/weights.bin": b"\x01\x02",
    }


def test_unchanged_files_give_no_new_snapshot_and_a_change_does(tmp_path: Path) -> None:
    work, snaps = make(tmp_path, ["epoch.txt"])
    (work / "epoch.txt").write_text("1")
    assert snaps.snapshot().outcome == "taken"
    assert snaps.snapshot().outcome == "unchanged"
    assert [s.seq for s in list_snapshots(tmp_path / "checkpoints")] == [1]
    (work / "epoch.txt").write_text("22")
    assert snaps.snapshot().outcome == "taken"
    newest = list_snapshots(tmp_path / "checkpoints")[-1]
    assert newest.seq == 2 and members(newest.path) == {"epoch.txt": b"22"}


def test_nothing_to_save_yet_gives_no_snapshot(tmp_path: Path) -> None:
    _, snaps = make(tmp_path, ["epoch.txt"])
    assert snaps.snapshot().outcome == "nothing"
    assert not snaps.has_snapshot


def test_snapshots_are_taken_only_when_the_interval_has_passed(tmp_path: Path) -> None:
    clock = Clock()
    work, snaps = make(tmp_path, ["epoch.txt"], interval_seconds=10.0, clock=clock)
    (work / "epoch.txt").write_text("1")
    assert snaps.tick() is None
    clock.now = 10.0
    result = snaps.tick()
    assert result is not None and result.outcome == "taken"
    (work / "epoch.txt").write_text("2")
    clock.now = 15.0
    assert snaps.tick() is None
    clock.now = 20.0
    result = snaps.tick()
    assert result is not None and result.outcome == "taken"


def test_a_snapshot_over_the_cap_is_refused_and_the_previous_one_kept(tmp_path: Path) -> None:
    work, snaps = make(tmp_path, ["state.bin"], max_bytes=4096)
    (work / "state.bin").write_bytes(b"small")
    assert snaps.snapshot().outcome == "taken"
    (work / "state.bin").write_bytes(os.urandom(64 * 1024))  # incompressible
    result = snaps.snapshot()
    assert result.outcome == "refused"
    assert "over 4096 bytes" in result.detail and "previous one is kept" in result.detail
    kept = list_snapshots(tmp_path / "checkpoints")
    assert [s.seq for s in kept] == [1] and members(kept[0].path) == {"state.bin": b"small"}
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ckpt-000001.tar.gz"]
    # Still too large and unchanged: not archived again.
    assert snaps.snapshot().outcome == "unchanged"


def test_only_the_newest_snapshots_are_kept(tmp_path: Path) -> None:
    work, snaps = make(tmp_path, ["epoch.txt"], keep=2)
    for epoch in range(5):
        (work / "epoch.txt").write_text("x" * (epoch + 1))
        assert snaps.snapshot().outcome == "taken"
    assert [s.seq for s in list_snapshots(tmp_path / "checkpoints")] == [4, 5]


def test_a_restored_checkpoint_is_not_snapshotted_again_until_it_changes(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "epoch.txt").write_text("4")
    snaps = Snapshotter(
        work, tmp_path / "checkpoints", ["epoch.txt"],
        interval_seconds=1.0, max_bytes=10_000, keep=3, restored=True,
    )  # fmt: skip
    assert snaps.snapshot().outcome == "unchanged"
    (work / "epoch.txt").write_text("5")
    assert snaps.snapshot().outcome == "taken"


def test_numbering_continues_after_an_agent_restart(tmp_path: Path) -> None:
    work, first = make(tmp_path, ["epoch.txt"])
    (work / "epoch.txt").write_text("1")
    first.snapshot()
    _, second = make(tmp_path, ["epoch.txt"])
    (work / "epoch.txt").write_text("2")
    result = second.snapshot()
    assert result.path is not None and result.path.name == "ckpt-000002.tar.gz"
