"""The logging set-up every entry point uses: structured lines, no secret in any of them.

Each test installs :func:`shared.logs.setup_logging` on a string stream, as an entry
point installs it on stderr, and reads back exactly what an operator would see.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response

from edge.harvester.api import ApiUnavailableError, EdgeApiClient
from services.http import bind, serve
from shared.config import LogSettings
from shared.logs import StructuredFormatter, ensure_logging, redact, setup_logging

TOKEN = "hpo_" + "Qx7-z" * 9
SIGNATURE = "5f1e0c9d" * 8


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The structured handler on a string, with pytest's handlers given back after."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    levels = {name: logging.getLogger(name).level for name in ("httpx", "uvicorn.access")}
    stream = io.StringIO()
    setup_logging(LogSettings(level="INFO"), stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def parse_logfmt(line: str) -> dict[str, str]:
    """Enough of logfmt for our lines: shlex honours the quotes and escapes."""
    fields = {}
    for item in shlex.split(line.replace("\\n", "\n")):
        key, _, value = item.partition("=")
        fields[key] = value
    return fields


def test_a_line_is_key_value_with_time_level_and_logger(log_stream: io.StringIO) -> None:
    logging.getLogger("services.steering.app").warning("task %s: %d new points", "t1", 3)
    [line] = log_stream.getvalue().splitlines()
    fields = parse_logfmt(line)
    assert fields["level"] == "WARNING"
    assert fields["logger"] == "services.steering.app"
    assert fields["msg"] == "task t1: 3 new points"
    assert fields["ts"].endswith("Z")


def test_json_lines_carry_the_same_fields() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        setup_logging(LogSettings(format="json"), stream)
        logging.getLogger("edge.harvester").error("lease of %s lost", "j1")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    record = json.loads(stream.getvalue())
    assert record["level"] == "ERROR"
    assert record["logger"] == "edge.harvester"
    assert record["msg"] == "lease of j1 lost"


def test_an_exception_whose_message_holds_a_token_is_logged_without_it(
    log_stream: io.StringIO,
) -> None:
    try:
        raise RuntimeError(f"no study for token {TOKEN} (Authorization: Bearer {TOKEN})")
    except RuntimeError:
        logging.getLogger("services.api.online").exception("ask failed for %s", TOKEN)
    text = log_stream.getvalue()
    assert TOKEN not in text
    assert TOKEN[4:] not in text
    fields = parse_logfmt(text.strip())
    assert "RuntimeError: no study for token hpo_[redacted]" in fields["exc"]
    assert fields["msg"] == "ask failed for hpo_[redacted]"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"POST /api/ask/{TOKEN}", TOKEN),
        ("GET /api/get_best_trial/not-one-of-ours?hopaas_trial=s:1", "not-one-of-ours"),
        ("POST /api/should_prune/abc123def", "abc123def"),
        ("Authorization: Bearer sk-live-123456", "sk-live-123456"),
        ("amqp://hpo:rabbit-pass@mq:5672/", "rabbit-pass"),
        ("mongodb://hpo:mongo-pass@db:27017/hpo", "mongo-pass"),
        ("s3://AKIAKEY:s3-secret@minio:9000/bucket", "s3-secret"),
        (f"https://minio/b/k?X-Amz-Expires=600&X-Amz-Signature={SIGNATURE}", SIGNATURE),
        ("https://minio/b/k?X-Amz-Credential=AKIAKEY%2F20261202%2Fus-east-1", "AKIAKEY"),
        (f"http://api/artifacts/alice/t/m.tgz?method=PUT&expires=9&sig={SIGNATURE}", SIGNATURE),
        ("https://x/y?X-Amz-Security-Token=session-tok", "session-tok"),
    ],
)
def test_redact_removes_each_kind_of_secret(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "[redacted]" in redact(text)


def test_redact_keeps_what_an_operator_needs() -> None:
    text = "GET /api/get_best_trial/[x]?hopaas_trial=s:1 and mongodb://127.0.0.1:27017/hpo"
    kept = redact("POST /edge/v1/jobs/j1/events 409 and mongodb://127.0.0.1:27017/hpo")
    assert kept == "POST /edge/v1/jobs/j1/events 409 and mongodb://127.0.0.1:27017/hpo"
    assert "hopaas_trial=s:1" in redact(text)


async def test_the_harvester_logs_a_failing_presigned_url_without_its_signature(
    log_stream: io.StringIO,
) -> None:
    app = FastAPI()

    @app.put("/bucket/{key:path}")
    async def busy(request: Request) -> Response:
        return Response("slow down", status_code=503)

    sock = bind("127.0.0.1", 0)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, sock, stop))
    url = (
        f"{base}/bucket/alice/t1/j1.metrics.tgz?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=testing%2F20261202%2Fus-east-1%2Fs3%2Faws4_request"
        f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={SIGNATURE}"
    )
    try:
        async with EdgeApiClient(base, "siteA", lambda: TOKEN, attempts=2, backoff=0.01) as api:
            with pytest.raises(ApiUnavailableError) as failure:
                await api.upload(url, b"metrics")
    finally:
        stop.set()
        await server
    text = log_stream.getvalue()
    assert "PUT " in text and "/bucket/alice/t1/j1.metrics.tgz" in text
    assert "failed (503: slow down); retry 1" in text
    assert SIGNATURE not in text and "X-Amz-Signature=[redacted]" in text
    assert SIGNATURE not in str(failure.value)
    assert TOKEN not in text


def test_hpo_edge_harvester_logs_structured_lines(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    config = tmp_path / "site.toml"
    config.write_text(
        f'site = "a"\napi_url = "http://127.0.0.1:{closed}/"\ntoken = "{TOKEN}"\n'
        'root = "edge"\npoll_interval = 0.2\nlease_wait_seconds = 0\nrequest_timeout = 1\n'
    )
    output = tmp_path / "output"
    command = [str(Path(sys.executable).parent / "hpo-edge"), "harvester", "-c", str(config)]
    with output.open("w") as out:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        while "retry 1" not in output.read_text():  # the api is down: it says so, and retries
            assert process.poll() is None, output.read_text()
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait()
    text = output.read_text()
    assert TOKEN not in text
    retry = next(parse_logfmt(line) for line in text.splitlines() if "retry 1" in line)
    assert retry["level"] == "WARNING" and retry["logger"] == "edge.harvester.api"
    assert retry["msg"].startswith(f"POST http://127.0.0.1:{closed}/edge/v1/sites/a/heartbeat")


def test_the_embedded_default_installs_the_set_up_unless_the_program_has_its_own() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        root.handlers.clear()
        ensure_logging(LogSettings(level="WARNING"))
        [installed] = root.handlers
        assert isinstance(installed.formatter, StructuredFormatter)
        assert root.level == logging.WARNING
        ensure_logging(LogSettings(level="DEBUG"))
        assert root.handlers == [installed] and root.level == logging.WARNING
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
