"""Artifact-store conformance: one suite, run against every adapter.

The file adapter is served by the real ``/artifacts`` router on a uvicorn server
listening on a free port, so presigned URLs are exercised over a real socket exactly as
the edge harvester uses them; the s3 adapter runs against the moto server of
``HPO_TEST_S3_URL``, one fresh bucket per test.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from services.api.routers.artifacts import build_router
from shared.artifacts import ArtifactNotFoundError, ArtifactStore, ObjectInfo, open_artifacts
from shared.artifacts.file import FileArtifactStore, check_key, check_prefix
from shared.artifacts.s3 import S3ArtifactStore

SIGNING_KEY = b"test-signing-key-0123456789abcdef"
FIVE_MINUTES = timedelta(minutes=5)


# --- serving the file adapter over a real socket ------------------------------------


@contextmanager
def listening_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        yield sock
    finally:
        sock.close()


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"http://{host}:{port}"


@asynccontextmanager
async def serving(
    store: FileArtifactStore, sock: socket.socket, **limits: int
) -> AsyncIterator[None]:
    """Run the artifacts router on ``sock`` in a uvicorn server on its own thread."""
    app = FastAPI()
    app.include_router(build_router(store, **limits))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "uvicorn exited during start-up"
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive(), "uvicorn did not stop within 10 s"


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ArtifactStore]:
    if request.param == "s3":
        s3 = open_artifacts(request.getfixturevalue("s3_bucket_url"))
        await s3.ensure_ready()
        yield s3
        return
    with listening_socket() as sock:
        files = open_artifacts(
            (tmp_path / "artifacts").as_uri(), public_url=base_url(sock), signing_key=SIGNING_KEY
        )
        assert isinstance(files, FileArtifactStore)
        await files.ensure_ready()
        async with serving(files, sock):
            yield files


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


# --- the contract -------------------------------------------------------------------


async def test_put_get_stat_round_trip(store: ArtifactStore) -> None:
    data = bytes(range(256)) * 4
    info = await store.put_bytes("alice/t1/main.t1.0.metrics.tgz", data)
    assert info == ObjectInfo(key="alice/t1/main.t1.0.metrics.tgz", size=len(data))
    assert await store.get_bytes("alice/t1/main.t1.0.metrics.tgz") == data
    assert await store.stat("alice/t1/main.t1.0.metrics.tgz") == info


async def test_empty_object(store: ArtifactStore) -> None:
    assert await store.put_bytes("alice/t1/empty", b"") == ObjectInfo(key="alice/t1/empty", size=0)
    assert await store.get_bytes("alice/t1/empty") == b""
    assert await store.stat("alice/t1/empty") == ObjectInfo(key="alice/t1/empty", size=0)


async def test_object_larger_than_one_multipart_part(store: ArtifactStore) -> None:
    data = b"0123456789abcdef" * (6 * 1024 * 1024 // 16)  # 6 MiB: minio uploads 2 parts
    await store.put_bytes("alice/t1/checkpoint.tgz", data)
    assert await store.get_bytes("alice/t1/checkpoint.tgz") == data


async def test_missing_key(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFoundError):
        await store.get_bytes("alice/t1/missing")
    assert await store.stat("alice/t1/missing") is None


async def test_a_prefix_is_not_an_object(store: ArtifactStore) -> None:
    await store.put_bytes("alice/t1/a", b"x")
    with pytest.raises(ArtifactNotFoundError):
        await store.get_bytes("alice/t1")
    assert await store.stat("alice/t1") is None


async def test_overwrite_replaces_content(store: ArtifactStore) -> None:
    await store.put_bytes("alice/t1/log", b"first version, longer")
    await store.put_bytes("alice/t1/log", b"second")
    assert await store.get_bytes("alice/t1/log") == b"second"
    assert await store.stat("alice/t1/log") == ObjectInfo(key="alice/t1/log", size=6)
    assert await store.list("alice/") == [ObjectInfo(key="alice/t1/log", size=6)]


async def test_list_by_prefix_sorted(store: ArtifactStore) -> None:
    for key in [
        "alice/t2/c",
        "bob/t1/a",
        "alice/t1/b",
        "alice/t10/x",
        "alice/t1/a",
        "alice/t1/d/e",
    ]:
        await store.put_bytes(key, key.encode())

    def keys(infos: list[ObjectInfo]) -> list[str]:
        return [info.key for info in infos]

    assert keys(await store.list("alice/t1/")) == ["alice/t1/a", "alice/t1/b", "alice/t1/d/e"]
    assert keys(await store.list("alice/t1")) == [
        "alice/t1/a",
        "alice/t1/b",
        "alice/t1/d/e",
        "alice/t10/x",
    ]
    assert keys(await store.list("")) == [
        "alice/t1/a",
        "alice/t1/b",
        "alice/t1/d/e",
        "alice/t10/x",
        "alice/t2/c",
        "bob/t1/a",
    ]
    assert await store.list("alice/t1/a") == [ObjectInfo(key="alice/t1/a", size=10)]
    assert await store.list("carol/") == []
    assert await store.list("alice/t3/") == []


async def test_delete_is_idempotent(store: ArtifactStore) -> None:
    await store.put_bytes("alice/t1/a", b"x")
    await store.put_bytes("alice/t1/b", b"y")
    await store.delete("alice/t1/a")
    assert await store.stat("alice/t1/a") is None
    with pytest.raises(ArtifactNotFoundError):
        await store.get_bytes("alice/t1/a")
    await store.delete("alice/t1/a")
    await store.delete("alice/never/was")
    assert await store.list("alice/") == [ObjectInfo(key="alice/t1/b", size=1)]


async def test_ensure_ready_is_idempotent(store: ArtifactStore) -> None:
    await store.put_bytes("alice/t1/a", b"x")
    await store.ensure_ready()
    assert await store.get_bytes("alice/t1/a") == b"x"


@pytest.mark.parametrize("key", ["/abs", "a//b", "a/../b", "a\\b", "a/.tmp"])
async def test_invalid_keys_are_rejected(store: ArtifactStore, key: str) -> None:
    with pytest.raises(ValueError, match="artifact key"):
        await store.put_bytes(key, b"x")
    with pytest.raises(ValueError, match="artifact key"):
        await store.get_bytes(key)
    with pytest.raises(ValueError, match="artifact key"):
        store.presign_put(key, FIVE_MINUTES)


async def test_presigned_put_then_get(store: ArtifactStore, http: httpx.AsyncClient) -> None:
    data = b"\x00\x01 checkpoint bytes \xff" * 1000
    key = "alice/t1/main.t1.7.ckpt with space+plus.tgz"
    put = await http.put(store.presign_put(key, FIVE_MINUTES), content=data)
    assert put.status_code == 200, put.text
    assert await store.get_bytes(key) == data
    got = await http.get(store.presign_get(key, FIVE_MINUTES))
    assert got.status_code == 200, got.text
    assert got.content == data


async def test_presigned_get_of_missing_key_is_404(
    store: ArtifactStore, http: httpx.AsyncClient
) -> None:
    got = await http.get(store.presign_get("alice/t1/missing", FIVE_MINUTES))
    assert got.status_code == 404


# --- the file adapter's signatures and router ---------------------------------------
# Signature checks are not in the shared contract: moto accepts any S3 signature.


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[FileArtifactStore]:
    with listening_socket() as sock:
        files = FileArtifactStore(tmp_path, public_url=base_url(sock), signing_key=SIGNING_KEY)
        async with serving(files, sock, max_body_bytes=1000):
            yield files


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()} | changes
    return parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()


async def test_file_bad_signatures_get_403(
    served: FileArtifactStore, http: httpx.AsyncClient
) -> None:
    await served.put_bytes("alice/t1/a", b"x")
    url = served.presign_get("alice/t1/a", FIVE_MINUTES)
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    past = int(time.time()) - 10
    refused = [
        with_query(url, sig=flipped),
        with_query(url, sig=""),
        with_query(url, expires="9999999999"),
        with_query(url, expires="abc"),
        with_query(url, expires=str(past), sig=served.sign("GET", "alice/t1/a", past)),
        with_query(url, method="PUT"),
        url.split("?", 1)[0],
        url.replace("alice/t1/a", "alice/t1/b"),
        served.presign_put("alice/t1/a", FIVE_MINUTES),
    ]
    for bad in refused:
        got = await http.get(bad)
        assert got.status_code == 403, bad
    await served.put_bytes("alice/t1/b", b"y")
    assert (await http.put(with_query(url, method="PUT"), content=b"z")).status_code == 403
    assert (await http.get(url)).content == b"x"


async def test_file_upload_size_limit_gives_413(
    served: FileArtifactStore, http: httpx.AsyncClient
) -> None:
    url = served.presign_put("alice/t1/big", FIVE_MINUTES)
    assert (await http.put(url, content=b"x" * 1000)).status_code == 200
    assert (await http.put(url, content=b"x" * 1001)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(3):
            yield b"y" * 400

    assert (await http.put(url, content=chunks())).status_code == 413
    assert await served.get_bytes("alice/t1/big") == b"x" * 1000


async def test_file_writes_are_atomic_and_leave_no_temporary_files(tmp_path: Path) -> None:
    files = FileArtifactStore(tmp_path)
    await asyncio.gather(*(files.put_bytes("alice/t1/a", bytes([i]) * 10_000) for i in range(20)))
    assert len(set(await files.get_bytes("alice/t1/a"))) == 1
    assert sorted(p.name for p in (tmp_path / "alice" / "t1").iterdir()) == ["a"]


async def test_file_key_clash_is_a_value_error(tmp_path: Path) -> None:
    files = FileArtifactStore(tmp_path)
    await files.put_bytes("alice/t1/a", b"x")
    with pytest.raises(ValueError, match="clashes"):
        await files.put_bytes("alice/t1/a/b", b"y")
    with pytest.raises(ValueError, match="clashes"):
        await files.put_bytes("alice/t1", b"y")
    assert await files.list("") == [ObjectInfo(key="alice/t1/a", size=1)]


def test_file_verify() -> None:
    files = FileArtifactStore("/nonexistent", public_url="http://api", signing_key=SIGNING_KEY)
    soon = int(time.time()) + 60
    sig = files.sign("PUT", "alice/t1/a", soon)
    assert files.verify("PUT", "alice/t1/a", soon, sig)
    assert not files.verify("GET", "alice/t1/a", soon, sig)
    assert not files.verify("PUT", "alice/t1/b", soon, sig)
    assert not files.verify("PUT", "alice/t1/a", soon + 1, sig)
    assert not files.verify("PUT", "alice/t1/a", soon, sig.upper())
    assert not files.verify("PUT", "alice/t1/a", soon, "é")
    past = int(time.time()) - 1
    assert not files.verify("PUT", "alice/t1/a", past, files.sign("PUT", "alice/t1/a", past))
    unsigned = FileArtifactStore("/nonexistent")
    assert not unsigned.verify("PUT", "alice/t1/a", soon, sig)
    with pytest.raises(ValueError, match="signing key"):
        unsigned.sign("PUT", "alice/t1/a", soon)
    with pytest.raises(ValueError, match="public_url"):
        FileArtifactStore("/x", signing_key=SIGNING_KEY).presign_get("a", FIVE_MINUTES)


def test_file_presigned_url_shape() -> None:
    files = FileArtifactStore("/x", public_url="http://127.0.0.1:8000/", signing_key=SIGNING_KEY)
    before = int(time.time())
    url = urlsplit(files.presign_put("alice/t 1/a+b", timedelta(seconds=90)))
    assert (url.scheme, url.netloc, url.path) == (
        "http",
        "127.0.0.1:8000",
        "/artifacts/alice/t%201/a%2Bb",
    )
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    assert query["method"] == "PUT"
    assert before + 90 <= int(query["expires"]) <= before + 92
    assert files.verify("PUT", "alice/t 1/a+b", int(query["expires"]), query["sig"])
    with pytest.raises(ValueError, match="7 days"):
        files.presign_get("a", timedelta(days=8))


# --- key validation and URL parsing (no server) -------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/alice/t1/a",
        "alice//a",
        "alice/t1/",
        "..",
        "../alice",
        "alice/../../etc/passwd",
        "alice/./a",
        "alice/.hidden",
        "alice\\t1\\a",
        "alice/t1/a\nb",
        "alice/\x00",
        "a" * 1025,
    ],
)
def test_check_key_rejects(key: str) -> None:
    with pytest.raises(ValueError, match="artifact key"):
        check_key(key)


@pytest.mark.parametrize(
    "key", ["a", "alice/t1/main.t1.0.metrics.tgz", "alice/t 1/ü+%.tgz", "a..b/c.", "a" * 1024]
)
def test_check_key_accepts(key: str) -> None:
    check_key(key)


def test_check_prefix() -> None:
    for prefix in ["", "alice/", "alice/t", "alice/t1/"]:
        check_prefix(prefix)
    for prefix in ["/", "/alice", "alice//", "../", "alice/../"]:
        with pytest.raises(ValueError, match="artifact key"):
            check_prefix(prefix)


def test_open_artifacts_by_scheme(tmp_path: Path) -> None:
    assert isinstance(open_artifacts(tmp_path.as_uri()), FileArtifactStore)
    assert isinstance(open_artifacts("s3://k:s@127.0.0.1:1/b?secure=false"), S3ArtifactStore)
    for url in ["gs://bucket", "memory://", "/plain/path", "file://host/x", "file:///x?y=1"]:
        with pytest.raises(ValueError):
            open_artifacts(url)


@pytest.mark.parametrize(
    "url",
    [
        "s3://127.0.0.1:9000/b",
        "s3://k:s@127.0.0.1:9000",
        "s3://k:s@127.0.0.1:9000/b/extra",
        "s3://k:s@127.0.0.1:9000/b?secure=maybe",
        "s3://k:s@127.0.0.1:9000/b?unknown=1",
        "s3://k:s@127.0.0.1:9000/b?public_endpoint=ftp://x:1",
    ],
)
def test_s3_url_errors(url: str) -> None:
    with pytest.raises(ValueError, match="s3 URL"):
        S3ArtifactStore.from_url(url)


def test_s3_presign_needs_no_network_and_honours_public_endpoint() -> None:
    # Nothing listens on these names: presigning must not try to reach them.
    store = S3ArtifactStore.from_url(
        "s3://AK%2F1:S%40cret@s3.invalid:9000/bucket"
        "?secure=false&region=eu-west-3&public_endpoint=https://files.example.org"
    )
    url = urlsplit(store.presign_get("alice/t1/a b", FIVE_MINUTES))
    assert (url.scheme, url.netloc, url.path) == (
        "https",
        "files.example.org",
        "/bucket/alice/t1/a%20b",
    )
    query = parse_qs(url.query)
    assert query["X-Amz-Credential"][0].startswith("AK/1/")
    assert "/eu-west-3/s3/" in query["X-Amz-Credential"][0]
    plain = S3ArtifactStore.from_url("s3://k:s@s3.invalid:9000/bucket?secure=false")
    assert plain.presign_put("a", FIVE_MINUTES).startswith("http://s3.invalid:9000/bucket/a?")
