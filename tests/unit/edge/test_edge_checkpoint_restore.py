"""Restoring a checkpoint on staging: verification and safe extraction of hostile tarballs."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.documents import NodeSettings
from edge.harvester.restore import RestoreError, restore_into, verify
from edge.harvester.staging import StagingError, stage_job
from shared.edge_api import CheckpointConfig, CheckpointDownload, JobSpec

SpecFactory = Callable[..., JobSpec]


def tarball(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def test_a_good_checkpoint_is_extracted_into_the_work_directory(tmp_path: Path) -> None:
    data = tarball(
        special("model", tarfile.DIRTYPE),
        file("model/weights.bin", b"\x00\x01"),
        file("epoch.txt", b"7"),
        special("latest", tarfile.SYMTYPE, "model/weights.bin"),
    )
    restore_into(tmp_path, data, None)
    assert (tmp_path / "epoch.txt").read_bytes() == b"7"
    assert (tmp_path / "latest").read_bytes() == b"\x00\x01"


HOSTILE = {
    "absolute path": [file("/tmp/evil")],
    "dot-dot": [file("../evil")],
    "dot-dot inside": [file("a/../../evil")],
    "absolute symlink": [special("link", tarfile.SYMTYPE, "/etc/passwd")],
    "symlink leaving": [special("a/link", tarfile.SYMTYPE, "../../outside")],
    "hard link leaving": [special("hard", tarfile.LNKTYPE, "../outside")],
    "character device": [special("dev", tarfile.CHRTYPE)],
    "block device": [special("blk", tarfile.BLKTYPE)],
    "fifo": [special("pipe", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tarballs_are_refused_whole(tmp_path: Path, case: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    # The good member comes first: nothing at all may be written.
    data = tarball(file("good.txt", b"ok"), *HOSTILE[case])
    with pytest.raises(RestoreError) as caught:
        restore_into(work, data, None)
    assert "checkpoint" in str(caught.value)
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_a_link_through_a_symlink_cannot_escape(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    data = tarball(special("up", tarfile.SYMTYPE, ".."), file("up/evil", b"x"))
    with pytest.raises(RestoreError):
        restore_into(work, data, None)
    assert not (tmp_path / "evil").exists()


def test_not_a_tarball_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RestoreError, match="not a readable tarball"):
        restore_into(tmp_path, b"definitely not gzip", None)


def test_with_checkpoint_to_load_the_tarball_is_placed_under_that_name(tmp_path: Path) -> None:
    data = tarball(file("/etc/evil"))  # not extracted, so not inspected
    restore_into(tmp_path, data, "resume/ckpt.tgz")
    assert (tmp_path / "resume" / "ckpt.tgz").read_bytes() == data


def test_size_and_sha256_are_verified() -> None:
    data = b"checkpoint bytes"
    good = hashlib.sha256(data).hexdigest()
    verify(data, len(data), good)
    with pytest.raises(RestoreError, match="bytes"):
        verify(data, len(data) + 1, good)
    with pytest.raises(RestoreError, match="sha256"):
        verify(data, len(data), hashlib.sha256(b"other").hexdigest())


def _spec(make_spec: SpecFactory, load: str | None = None) -> JobSpec:
    return make_spec(
        "true",
        checkpoint_config=CheckpointConfig(save=["epoch.txt"], load=load),
        checkpoint=CheckpointDownload(url="http://unused", size=1, sha256="0" * 64),
    )


def test_staging_restores_before_the_job_appears(tmp_path: Path, make_spec: SpecFactory) -> None:
    data = tarball(file("epoch.txt", b"5"))
    paths, new = stage_job(tmp_path, _spec(make_spec), NodeSettings(), checkpoint=data)
    assert new and (paths.work / "epoch.txt").read_text() == "5"
    assert (paths.work / "input.json").exists()


def test_staging_a_hostile_checkpoint_fails_and_leaves_nothing(
    tmp_path: Path, make_spec: SpecFactory
) -> None:
    data = tarball(special("dev", tarfile.CHRTYPE))
    with pytest.raises(StagingError, match="device"):
        stage_job(tmp_path, _spec(make_spec), NodeSettings(), checkpoint=data)
    assert list((tmp_path / "jobs").iterdir()) == []


def test_checkpoint_paths_leaving_the_work_directory_are_refused(
    tmp_path: Path, make_spec: SpecFactory
) -> None:
    spec = make_spec("true", checkpoint_config=CheckpointConfig(save=["../x"]))
    with pytest.raises(StagingError, match="not inside the work directory"):
        stage_job(tmp_path, spec, NodeSettings())
