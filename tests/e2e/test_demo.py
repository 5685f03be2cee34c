"""``hpo demo`` as a user runs it: twice in a row on the same home, exit 0 both times."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]


def run_demo(home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HPO_HOME": str(home), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "client", "demo", "--points", "6", "--parallel", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_runs_twice(tmp_path: Path) -> None:
    for _ in range(2):
        result = run_demo(tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "best loss" in result.stdout
        assert "dashboard http://127.0.0.1:" in result.stdout
        stored = re.search(r"(\d+) artifacts stored", result.stdout)
        assert stored is not None and int(stored.group(1)) >= 6  # a metrics tarball per point
    leftovers = subprocess.run(["pgrep", "-f", f"secantus.*{tmp_path}"], capture_output=True)
    assert leftovers.stdout == b"", "the demo left its database server running"


def start_demo(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HPO_HOME": str(home), "COLUMNS": "400"}
    return subprocess.Popen(
        [sys.executable, "-m", "client", "demo", "--points", "6", "--parallel", "2", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], pattern: str, seen: list[str]) -> re.Match[str]:
    """Lines of the demo's output up to one matching ``pattern`` (kept in ``seen``)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError("the demo ended without printing " + pattern + ":\n" + "".join(seen))


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def fetch_task(page_url: str, token: str) -> dict[str, object]:
    base, task_id = page_url.split("/#/task/")
    with httpx.Client(base_url=base, timeout=60) as http:
        assert "hpo-relay" in http.get("/").text
        reply = http.get(
            f"/monitor/api/tasks/{task_id}", headers={"Authorization": f"Bearer {token}"}
        )
        reply.raise_for_status()
        task: dict[str, object] = reply.json()
        return task


def test_demo_prints_the_dashboard_url_while_the_task_runs(tmp_path: Path) -> None:
    proc = start_demo(tmp_path)
    seen: list[str] = []
    try:
        token = read_until(proc, r"dashboard http://\S+#token=(\S+)", seen).group(1)
        page = read_until(proc, r"this task's page (http://\S+)", seen).group(1)
        task = fetch_task(page, token)  # answered: the demo is still serving
        assert not any("best loss" in line for line in seen), "printed after the task ended"
        assert task["progress"] is not None
        read_until(proc, r"best loss", seen)
        assert proc.wait(timeout=300) == 0, "".join(seen)
    finally:
        stop(proc)


def test_demo_serve_keeps_the_dashboard_up_until_ctrl_c(tmp_path: Path) -> None:
    proc = start_demo(tmp_path, "--serve")
    seen: list[str] = []
    try:
        token = read_until(proc, r"dashboard http://\S+#token=(\S+)", seen).group(1)
        page = read_until(proc, r"this task's page (http://\S+)", seen).group(1)
        read_until(proc, r"serving the dashboard and the api until Ctrl-C", seen)
        task = fetch_task(page, token)
        assert task["status"] == "done" and task["progress"]["evaluated"] == 6  # type: ignore[index]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, "".join(seen)
    finally:
        stop(proc)
    leftovers = subprocess.run(["pgrep", "-f", f"secantus.*{tmp_path}"], capture_output=True)
    assert leftovers.stdout == b"", "the demo left its database server running"
