"""Tokens never reach the logs of the running services: the api's 500 on a Hopaas path,
its access lines, and ``hpo-services`` as an operator starts it."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from shared.config import LogSettings
from shared.logs import setup_logging
from tests.integration.central import Central, central, file_artifacts
from tests.unit.test_log_redaction import parse_logfmt

pytestmark = [pytest.mark.mongo]

FOREIGN_TOKEN = "hpo_" + "m4Lw0rE-" * 5


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    access = logging.getLogger("uvicorn.access")
    access_level = access.level
    stream = io.StringIO()
    setup_logging(LogSettings(level="INFO", access=True), stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        access.setLevel(access_level)


@pytest.fixture
async def system(
    mongo_db_url: str, bus_prefix: str, tmp_path: Path, log_stream: io.StringIO
) -> AsyncIterator[Central]:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
    ) as c:
        yield c


async def test_a_500_on_a_hopaas_path_is_logged_without_the_token(
    system: Central, log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await system.token("alice", ["user"])

    async def broken(digest: str) -> None:
        raise RuntimeError(f"token store unreachable while checking {token}")

    monkeypatch.setattr(system.ctx.store.tokens, "find_by_hash", broken)
    async with httpx.AsyncClient(base_url=system.api_url) as http:
        reply = await http.post(f"/api/ask/{token}", json={"x": "optuna#uniform(0, 1)"})
    assert reply.status_code == 500
    assert token not in reply.text
    text = log_stream.getvalue()
    assert token not in text and token[4:] not in text
    errors = [parse_logfmt(line) for line in text.splitlines() if "level=ERROR" in line]
    assert any(
        e["logger"] == "services.api.app" and e["msg"].endswith("on POST /api/ask/[redacted]")
        for e in errors
    ), text
    assert any("RuntimeError: token store unreachable" in e.get("exc", "") for e in errors)


async def test_an_access_line_of_a_hopaas_call_hides_the_token(
    system: Central, log_stream: io.StringIO
) -> None:
    token = await system.token("alice", ["user"])
    async with httpx.AsyncClient(base_url=system.api_url) as http:
        mine = await http.get(f"/api/get_best_trial/{token}", params={"hopaas_trial": "s:1"})
        foreign = await http.post(f"/api/tell/{FOREIGN_TOKEN}", json={})
    assert mine.status_code == 404 and foreign.status_code == 422
    lines = [parse_logfmt(x) for x in log_stream.getvalue().splitlines()]
    access = [line["msg"] for line in lines if line["logger"] == "uvicorn.access"]
    assert any('"GET /api/get_best_trial/[redacted]?hopaas_trial=s%3A1 ' in m for m in access)
    assert any('"POST /api/tell/[redacted] HTTP/1.1" 422' in m for m in access), access
    text = log_stream.getvalue()
    assert token not in text and FOREIGN_TOKEN not in text


def test_hpo_services_logs_structured_lines_without_tokens(
    mongo_db_url: str, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "HPO_MONGO_URL": mongo_db_url,
        "HPO_BUS_URL": "memory://",
        "HPO_ARTIFACTS_URL": f"file://{tmp_path / 'artifacts'}",
        "HPO_DEV_MODE": "1",
        "HPO_API_PORT": str(port),
        "HPO_HOME": str(tmp_path / "home"),
        "HPO_LOG_ACCESS": "1",
    }
    command = [str(Path(sys.executable).parent / "hpo-services"), "run", "api"]
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err:
        process = subprocess.Popen(command, env=env, stdout=err, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            while True:
                assert process.poll() is None, stderr.read_text()
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    continue
            reply = http.post(f"/api/ask/{FOREIGN_TOKEN}", json={"x": 1})
        assert reply.status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait()
    lines = stderr.read_text().splitlines()
    assert lines, "hpo-services logged nothing"
    fields = [parse_logfmt(line) for line in lines]
    assert all({"ts", "level", "logger", "msg"} <= f.keys() for f in fields), lines
    assert any(
        f["logger"] == "uvicorn.access" and "POST /api/ask/[redacted] HTTP/1.1" in f["msg"]
        for f in fields
    ), lines
    assert FOREIGN_TOKEN not in stderr.read_text()
