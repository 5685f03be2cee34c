"""``hpo-edge``: commands, clear errors, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from edge.cli import app

CODE_ROOT = str(Path(__file__).resolve().parents[3])


def test_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip()


def test_a_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('site = "a"\napi_url = "http://x"\ntoken = "t"\nroot = "r"\nslots = 0\n')
    result = CliRunner().invoke(app, ["harvester", "--config", str(config)])
    assert result.exit_code == 2
    assert "slots" in result.output
    assert "Traceback" not in result.output


def test_node_run_job_without_a_job_directory_fails_cleanly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["node", "run-job", str(tmp_path / "nope")])
    assert result.exit_code == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_harvester_stops_cleanly_on_sigterm_even_when_the_api_is_down(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text(
        f'site = "a"\napi_url = "http://127.0.0.1:{_closed_port()}"\ntoken = "t"\n'
        'root = "edge"\npoll_interval = 0.2\nlease_wait_seconds = 0\nrequest_timeout = 1\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", "from edge.cli import main; main()", "harvester", "-c", str(config)],
        env={**os.environ, "PYTHONPATH": CODE_ROOT},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "edge" / ".harvester.lock").exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "harvester stopped" in output
    assert "Traceback" not in output


def test_node_run_worker_without_worker_settings_fails_cleanly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["node", "run-worker", str(tmp_path / "nope")])
    assert result.exit_code == 2
