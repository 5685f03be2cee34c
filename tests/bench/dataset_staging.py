"""Edge benchmark: staging a 1 GiB dataset file into the site's dataset cache.

The harvester's real download path (``EdgeApiClient.download_stream`` into
``DatasetCache``: streamed parts, sha256 while writing, fsync, rename) fetches the file's
64 MiB parts through presigned URLs of a ``file://`` artifact store, served by the
api's own ``/artifacts`` route under uvicorn in **another process** (so the server's
CPU is not counted as the harvester's). Three figures:

* cold: the file is not on the site; it is downloaded and verified;
* cached, after a harvester restart: the file is there, hashed once to verify it;
* cached, same harvester: the file is there and was verified already (a stat).

The file's bytes are random; the store and the cache are on the same local disk.

Run: python tests/bench/dataset_staging.py [--mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.harvester.api import EdgeApiClient
from edge.harvester.datacache import DatasetCache
from shared.artifacts.file import FileArtifactStore
from shared.domain.datasets import PART_SIZE, part_key
from shared.edge_api import StagedFile

KEY = b"bench-signing-key"


def serve(root: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    from services.api.routers.artifacts import build_router

    app = FastAPI()
    app.include_router(build_router(FileArtifactStore(root, signing_key=KEY)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def stored_file(store: FileArtifactStore, mib: int) -> StagedFile:
    digest = hashlib.sha256()
    size = mib * 2**20
    sha_parts: list[bytes] = []
    for _ in range(0, size, PART_SIZE):
        part = os.urandom(min(PART_SIZE, size - len(sha_parts) * PART_SIZE))
        digest.update(part)
        sha_parts.append(part)
    sha = digest.hexdigest()
    urls = []
    for number, part in enumerate(sha_parts, start=1):
        key = part_key("bench", "ds", sha, number)
        await store.put_bytes(key, part)
        urls.append(store.presign_get(key, timedelta(hours=1)))
    return StagedFile(name="train.bin", size=size, sha256=sha, parts=urls)


async def timed(cache: DatasetCache, file: StagedFile) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    async with cache.hold([file]):
        pass
    return time.perf_counter() - wall, time.process_time() - cpu


async def main(mib: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dataset-bench-") as tmp:
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        store = FileArtifactStore(Path(tmp) / "store", public_url=public, signing_key=KEY)
        file = await stored_file(store, mib)
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(Path(tmp) / "store"), str(port)]
        )
        api = EdgeApiClient(public, "bench", "unused", timeout=300)
        try:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            cache_dir = Path(tmp) / "cache"
            first = DatasetCache(cache_dir, max_size=2**40, fetch=api.download_stream)
            cold = await timed(first, file)
            restarted = await timed(
                DatasetCache(cache_dir, max_size=2**40, fetch=api.download_stream), file
            )
            warm = await timed(first, file)
        finally:
            await api.aclose()
            server.terminate()
            server.wait()
    mb = mib * 2**20 / 1e6
    print(
        json.dumps(
            {
                "bench": "dataset_staging",
                "file_mib": mib,
                "part_mib": PART_SIZE // 2**20,
                "cold_s": round(cold[0], 2),
                "cold_cpu_s": round(cold[1], 2),
                "cold_mb_per_s": round(mb / cold[0], 1),
                "cached_after_restart_s": round(restarted[0], 2),
                "cached_same_harvester_ms": round(warm[0] * 1000, 2),
                "downloads": first.downloads,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        parser = argparse.ArgumentParser()
        parser.add_argument("--mib", type=int, default=1024)
        asyncio.run(main(parser.parse_args().mib))
