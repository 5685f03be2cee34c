"""The dataset cache on a real directory: one download per file however many holders
(two harvesters sharing the cache included), corrupted files found and downloaded
again, bad downloads refused, and eviction that never removes a file in use."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.harvester.datacache import DatasetCache, DatasetError
from shared.edge_api import StagedFile
from tests.waiting import until


class Store:
    """Serves bytes by URL, as the artifact store's presigned GETs do; ``gate`` holds
    every download until the test opens it."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.gets: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def add(self, name: str, data: bytes, parts: int = 2) -> StagedFile:
        step = max(1, -(-len(data) // parts))
        urls = []
        for i in range(parts):
            url = f"mem://{name}/{i}"
            self.objects[url] = data[i * step : (i + 1) * step]
            urls.append(url)
        return StagedFile(
            name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(), parts=urls
        )

    async def fetch(self, url: str) -> AsyncIterator[bytes]:
        self.gets.append(url)
        await self.gate.wait()
        data = self.objects[url]
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]


def cache(directory: Path, store: Store, max_size: int = 10**9) -> DatasetCache:
    return DatasetCache(directory, max_size=max_size, fetch=store.fetch)


async def test_many_holders_and_two_harvesters_download_a_file_once(tmp_path: Path) -> None:
    store = Store()
    file = store.add("train.bin", os.urandom(50_000))
    first, second = cache(tmp_path, store), cache(tmp_path, store)  # two processes' view
    store.gate.clear()

    async def hold(c: DatasetCache) -> bytes:
        async with c.hold([file]) as found:
            return found[file.sha256].read_bytes()

    holders = [asyncio.create_task(hold(c)) for c in (first, first, second, second)]

    async def downloading() -> bool:
        return bool(list(first.objects.glob(".*.part")))

    await until(downloading)
    store.gate.set()
    contents = await asyncio.gather(*holders)
    assert {hashlib.sha256(c).hexdigest() for c in contents} == {file.sha256}
    assert first.downloads + second.downloads == 1
    assert len(store.gets) == 2, "each part fetched once"
    assert oct(first.path_for(file.sha256).stat().st_mode & 0o777) == "0o444"


async def test_a_file_corrupted_in_place_is_downloaded_again(tmp_path: Path) -> None:
    store = Store()
    file = store.add("train.bin", os.urandom(20_000))
    c = cache(tmp_path, store)
    async with c.hold([file]):
        pass
    target = c.path_for(file.sha256)
    target.chmod(0o644)
    with target.open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\0" * 8)
    async with c.hold([file]) as found:
        assert hashlib.sha256(found[file.sha256].read_bytes()).hexdigest() == file.sha256
    assert c.downloads == 2
    async with c.hold([file]):
        pass
    assert c.downloads == 2, "an intact file is used again"


async def test_a_download_that_does_not_match_is_refused_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    store = Store()
    file = store.add("train.bin", b"x" * 5000)
    store.objects[file.parts[1]] = b"y" * 2500
    c = cache(tmp_path, store)
    with pytest.raises(DatasetError, match=r"train\.bin: the downloaded bytes do not match"):
        async with c.hold([file]):
            pass
    store.objects[file.parts[1]] = b"x" * 3000
    with pytest.raises(DatasetError, match="more than the 5000 bytes declared"):
        async with c.hold([file]):
            pass
    assert [p.name for p in c.objects.iterdir() if not p.name.endswith(".lock")] == []


async def test_eviction_removes_the_least_recently_used_never_a_linked_or_held_file(
    tmp_path: Path,
) -> None:
    store = Store()
    files = [store.add(f"f{i}", os.urandom(10_000)) for i in range(4)]
    c = cache(tmp_path / "cache", store, max_size=30_000)
    for when, f in enumerate(files[:3], start=1):
        async with c.hold([f]):
            pass
        os.utime(c.objects / f".{f.sha256}.used", (when * 1000, when * 1000))  # f0 oldest
    os.link(c.path_for(files[0].sha256), tmp_path / "job-link")  # a job reads f0
    async with c.hold([files[3]]):
        other = cache(tmp_path / "cache", store, max_size=30_000)  # another harvester
        removed = await asyncio.to_thread(other.evict)
    assert removed == [c.path_for(files[1].sha256)], "f0 is linked, f1 the oldest unused"
    left = {p.name for p in c.objects.iterdir() if not p.name.startswith(".")}
    assert left == {files[0].sha256, files[2].sha256, files[3].sha256}
    (tmp_path / "job-link").unlink()  # the job was reported
    c.max_size = 20_000
    assert await asyncio.to_thread(c.evict) == [c.path_for(files[0].sha256)]
