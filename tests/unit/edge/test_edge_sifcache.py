"""The SIF cache on the login node, through the pull contract of apptainer/singularity.

A recording stand-in of the tool (``tests/sif_tool.py``) writes fake SIF files; the
cache's locking, naming, failure messages and eviction are real.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
from pathlib import Path

import pytest

from edge.harvester.sifcache import ImagePullError, SifCache, cache_digest
from tests import sif_tool

DIGEST = "sha256:" + "ab" * 32
PINNED = f"docker://registry.example.org/eval@{DIGEST}"
TAGGED = "docker://registry.example.org/eval:mlflow"


@pytest.fixture
def tool_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    sif_tool.install(directory, "apptainer")
    return directory


def make_cache(tool_dir: Path, tmp_path: Path, max_size: int = 10**9, **kw: object) -> SifCache:
    return SifCache(
        tmp_path / "cache",
        tool=str(tool_dir / "apptainer"),
        max_size=max_size,
        **kw,  # type: ignore[arg-type]
    )


async def until(predicate: object, timeout: float = 30.0) -> None:
    assert callable(predicate)
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_cache_keys_are_the_pinned_digest_or_a_hash_of_the_reference() -> None:
    assert cache_digest(PINNED) == DIGEST
    assert cache_digest("docker://other/name@" + DIGEST) == DIGEST
    assert cache_digest(TAGGED) == "sha256:" + hashlib.sha256(TAGGED.encode()).hexdigest()


async def test_a_pull_writes_the_sif_under_its_digest_and_arch(
    tool_dir: Path, tmp_path: Path
) -> None:
    cache = make_cache(tool_dir, tmp_path, pull_args=["--disable-cache"])
    image = await cache.ensure(PINNED, "ppc64le")
    assert image == tmp_path / "cache" / f"sha256-{'ab' * 32}.ppc64le.sif"
    assert json.loads(image.read_text()) == {
        "fake_sif": True,
        "reference": PINNED,
        "arch": "ppc64le",
    }
    [call] = sif_tool.calls(tool_dir, "pull")
    partial = call["argv"][-2]
    assert call["argv"][1:] == ["pull", "--disable-cache", "--arch", "ppc64le", partial, PINNED]
    assert Path(partial).parent == image.parent and Path(partial).name.startswith(".")
    assert sorted(p.name for p in image.parent.iterdir() if p.suffix != ".lock") == [image.name]

    again = await cache.ensure(PINNED, "power9")  # an alias of the same arch: a hit
    assert again == image
    assert len(sif_tool.calls(tool_dir, "pull")) == 1
    other = await cache.ensure(PINNED, "amd64")
    assert other != image and other.name.endswith(".amd64.sif")


async def test_concurrent_pulls_of_one_image_run_the_tool_once(
    tool_dir: Path, tmp_path: Path
) -> None:
    hold = tool_dir / "hold"
    hold.touch()
    # Two caches on one directory stand for two processes: only the file lock is shared.
    first, second = make_cache(tool_dir, tmp_path), make_cache(tool_dir, tmp_path)
    pulls = [
        asyncio.create_task(first.ensure(TAGGED, "amd64")),
        asyncio.create_task(first.ensure(TAGGED, "amd64")),
        asyncio.create_task(second.ensure(TAGGED, "amd64")),
    ]
    await until(lambda: sif_tool.calls(tool_dir, "pull"))
    await asyncio.sleep(0.5)  # give a wrong implementation the chance to start a second pull
    hold.unlink()
    images = await asyncio.gather(*pulls)
    assert len(set(images)) == 1
    assert len(sif_tool.calls(tool_dir, "pull")) == 1


async def test_a_failed_pull_carries_the_tools_message_and_leaves_nothing(
    tool_dir: Path, tmp_path: Path
) -> None:
    cache = make_cache(tool_dir, tmp_path)
    reference = "docker://registry.example.org/missing:1"
    with pytest.raises(ImagePullError) as failure:
        await cache.ensure(reference, "amd64")
    message = str(failure.value)
    assert "pull of docker://registry.example.org/missing:1 for amd64 failed" in message
    assert "exit status 255" in message
    assert "FATAL:   While making image from oci registry: manifest unknown" in message
    assert "Traceback" not in message
    assert cache.images() == []
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".part")]
    # The lock was released: a later pull of another image is not held up.
    assert (await cache.ensure(TAGGED, "amd64")).is_file()


async def test_a_missing_tool_is_a_pull_error_naming_it(tmp_path: Path) -> None:
    cache = SifCache(tmp_path / "cache", tool="no-such-apptainer", max_size=10**9)
    with pytest.raises(ImagePullError, match="cannot run 'no-such-apptainer'"):
        await cache.ensure(TAGGED, "amd64")


async def test_a_pull_past_its_timeout_is_stopped(tool_dir: Path, tmp_path: Path) -> None:
    (tool_dir / "hold").touch()
    cache = make_cache(tool_dir, tmp_path, pull_timeout=0.5)
    with pytest.raises(ImagePullError, match=r"did not finish within 0 s \(images.pull_timeout\)"):
        await cache.ensure(TAGGED, "amd64")
    assert cache.images() == []


async def test_cancelling_a_pull_stops_the_tool(tool_dir: Path, tmp_path: Path) -> None:
    (tool_dir / "hold").touch()
    cache = make_cache(tool_dir, tmp_path)
    task = asyncio.create_task(cache.ensure(TAGGED, "amd64"))
    await until(lambda: sif_tool.calls(tool_dir, "pull"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (tool_dir / "hold").unlink()
    await asyncio.sleep(0.3)  # a surviving tool would now write its file
    assert not list((tmp_path / "cache").glob("*.part"))
    assert cache.images() == []


def _fill(cache: SifCache, names: list[str], size: int) -> list[Path]:
    cache.directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for age, name in enumerate(reversed(names)):
        path = cache.directory / name
        path.write_bytes(b"x" * size)
        stamp = 1_700_000_000 - age * 60
        os.utime(path, (stamp, stamp))
        paths.append(path)
    return list(reversed(paths))


def test_eviction_removes_least_recently_used_images_down_to_the_cap(
    tool_dir: Path, tmp_path: Path
) -> None:
    cache = make_cache(tool_dir, tmp_path, max_size=2500)
    oldest, middle, newest = _fill(cache, ["a.amd64.sif", "b.amd64.sif", "c.amd64.sif"], 1000)
    assert cache.evict(in_use=[]) == [oldest]
    assert [c.path for c in cache.images()] == [middle, newest]
    assert cache.evict(in_use=[]) == []


def test_eviction_never_removes_an_image_in_use(tool_dir: Path, tmp_path: Path) -> None:
    cache = make_cache(tool_dir, tmp_path, max_size=1500)
    oldest, middle, newest = _fill(cache, ["a.amd64.sif", "b.amd64.sif", "c.amd64.sif"], 1000)
    assert cache.evict(in_use=[str(oldest), newest]) == [middle]
    assert {c.path for c in cache.images()} == {oldest, newest}  # over the cap, all in use


async def test_a_hit_counts_as_a_use_for_eviction(tool_dir: Path, tmp_path: Path) -> None:
    cache = make_cache(tool_dir, tmp_path, max_size=10**9)
    first = await cache.ensure(PINNED, "amd64")
    second = await cache.ensure(TAGGED, "amd64")
    for path in (first, second):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    os.utime(second, (1_600_000_000, 1_600_000_000))
    await cache.ensure(TAGGED, "amd64")  # a hit: the second image becomes the newest
    cache.max_size = first.stat().st_size
    assert cache.evict(in_use=[]) == [first]
    assert len(sif_tool.calls(tool_dir, "pull")) == 2


def test_an_image_whose_lock_is_held_is_not_evicted(tool_dir: Path, tmp_path: Path) -> None:
    cache = make_cache(tool_dir, tmp_path, max_size=10)
    [image] = _fill(cache, ["a.amd64.sif"], 1000)
    fd = os.open(cache.directory / ".a.amd64.sif.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process pulling or touching it
        assert cache.evict(in_use=[]) == []
    finally:
        os.close(fd)
    assert cache.evict(in_use=[]) == [image]
