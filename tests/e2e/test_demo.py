"""``hpo demo`` as a user runs it: twice in a row on the same home, exit 0 both times."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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
