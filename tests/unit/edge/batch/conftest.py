"""The ``fake_hpc`` fixture: recording stand-ins of bsub, qstat, squeue ... first on PATH
(see fakehpc.py for the output formats they emulate and their sources)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.unit.edge.batch import fakehpc


@dataclass
class FakeHpc:
    dir: Path

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        path = self.dir / "calls.jsonl"
        if not path.exists():
            return []
        calls = [json.loads(line) for line in path.read_text().splitlines()]
        return [c for c in calls if tool is None or c["tool"] == tool]

    def jobs(self) -> dict[str, dict[str, Any]]:
        path = self.dir / "jobs.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _edit(self, name: str, change: Any) -> None:
        path = self.dir / name
        value = json.loads(path.read_text()) if path.exists() else {}
        change(value)
        path.write_text(json.dumps(value))

    def set_state(self, job_id: str, state: str) -> None:
        self._edit("jobs.json", lambda jobs: jobs[job_id].update(state=state))

    def forget(self, job_id: str) -> None:
        """The scheduler's live listing no longer has the job (cleaned after it ended)."""
        self._edit("jobs.json", lambda jobs: jobs[job_id].update(forgotten=True))

    def fail(self, tool: str, code: int, stderr: str) -> None:
        self._edit(
            "control.json", lambda c: c.setdefault("fail", {}).update({tool: [code, stderr]})
        )

    def enable_accounting(self) -> None:
        self._edit("control.json", lambda c: c.update(accounting=True))


@pytest.fixture
def fake_hpc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHpc:
    state = tmp_path / "fake-hpc"
    bin_dir = state / "bin"
    bin_dir.mkdir(parents=True)
    for tool in fakehpc.TOOLS:
        wrapper = bin_dir / tool
        wrapper.write_text(
            f"#!{sys.executable}\nimport runpy\n"
            f"runpy.run_path({fakehpc.__file__!r}, {{'TOOL': {tool!r}}}, run_name='__main__')\n"
        )
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_HPC_DIR", str(state))
    return FakeHpc(state)


@pytest.fixture
def fake_sge(fake_hpc: FakeHpc, monkeypatch: pytest.MonkeyPatch) -> FakeHpc:
    """The stand-ins with Grid Engine's qsub, qstat and qdel instead of PBS's."""
    monkeypatch.setenv("FAKE_HPC_QSUB", "sge")
    return fake_hpc
