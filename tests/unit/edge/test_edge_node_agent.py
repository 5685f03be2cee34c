"""The node agent runs real payload scripts through the process runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.documents import NodeStatus
from edge.fsproto import JobPaths
from edge.node.agent import NodeAgent
from shared.edge_api import OutputFiles

StageFactory = Callable[..., JobPaths]

WRITE_OUTPUT = """\
cp input.json seen_input.json
echo "training on $(cat input_ds.json)"
printf '{"status": 0, "loss": 0.125, "message": "ok"}' > output.json
"""


def status_of(paths: JobPaths) -> NodeStatus:
    return NodeStatus.model_validate_json(paths.status.read_text())


def test_successful_payload(stage: StageFactory) -> None:
    paths = stage(
        "sh ./run.sh",
        task_files={"run.sh": WRITE_OUTPUT},
        training_files=["/data/a.h5"],
    )
    assert NodeAgent(paths.dir, host="node-7").run() == 0
    status = status_of(paths)
    assert status.state == "finished"
    assert status.exit_code == 0
    assert status.host == "node-7"
    assert status.started_at is not None and status.ended_at is not None
    assert [run.exit_code for run in status.points] == [0]
    assert json.loads((paths.work / "seen_input.json").read_text()) == {"lr": 0.1, "layers": 0}
    output = json.loads((paths.point_dir(0) / "output.json").read_text())
    assert output["loss"] == 0.125
    assert not (paths.work / "output.json").exists()
    assert 'training on ["/data/a.h5"]' in paths.payload_log.read_text()
    assert paths.heartbeat.exists()


def test_failing_payload_records_its_exit_code(stage: StageFactory) -> None:
    paths = stage("echo 'CUDA out of memory' >&2; exit 3")
    assert NodeAgent(paths.dir).run() == 1
    status = status_of(paths)
    assert status.state == "failed"
    assert status.exit_code == 3
    assert "CUDA out of memory" in paths.payload_log.read_text()


def _write_kill_later(paths: JobPaths, delay: float) -> threading.Timer:
    timer = threading.Timer(delay, lambda: paths.kill.write_text("task cancelled\n"))
    timer.start()
    return timer


def test_kill_file_stops_a_sleeping_payload_within_the_grace_period(
    stage: StageFactory,
) -> None:
    paths = stage("echo started; sleep 60", grace=5.0)
    timer = _write_kill_later(paths, 0.5)
    began = time.monotonic()
    assert NodeAgent(paths.dir).run() == 1
    elapsed = time.monotonic() - began
    timer.join()
    status = status_of(paths)
    assert status.state == "killed"
    assert "task cancelled" in status.reason
    assert elapsed < 5.0


def test_payload_ignoring_sigterm_is_killed_after_the_grace_period(stage: StageFactory) -> None:
    paths = stage("trap '' TERM; sleep 60", grace=1.0)
    timer = _write_kill_later(paths, 0.3)
    began = time.monotonic()
    NodeAgent(paths.dir).run()
    elapsed = time.monotonic() - began
    timer.join()
    assert status_of(paths).state == "killed"
    assert 1.0 <= elapsed < 10.0


def test_placeholders_are_substituted_shell_quoted(stage: StageFactory) -> None:
    segment = "seg $(touch pwned); touch pwned2 'x"
    paths = stage(
        "printf '%s\\n' %SEGMENT_NAME > segment.txt; printf '%s\\n' %IN_DATA > data.txt",
        segment=segment,
        training_files=["/d/a b.h5", "/d/c;d.h5"],
    )
    assert NodeAgent(paths.dir).run() == 0
    assert (paths.work / "segment.txt").read_text() == segment + "\n"
    assert (paths.work / "data.txt").read_text() == "/d/a b.h5,/d/c;d.h5\n"
    assert not (paths.work / "pwned").exists()
    assert not (paths.work / "pwned2").exists()


def test_payload_gets_a_clean_environment(
    stage: StageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPO_SITE_TOKEN_MARKER", "secret")
    paths = stage("env > env.txt", env={"OMP_NUM_THREADS": "4"})
    assert NodeAgent(paths.dir).run() == 0
    env = dict(line.split("=", 1) for line in (paths.work / "env.txt").read_text().splitlines())
    assert "HPO_SITE_TOKEN_MARKER" not in env
    assert env["HOME"] == str(paths.work.resolve())
    assert env["PWD"] == str(paths.work.resolve())
    assert env["OMP_NUM_THREADS"] == "4"
    assert "PYTHONPATH" not in env


def test_several_points_run_in_turn_and_keep_their_outputs(stage: StageFactory) -> None:
    script = 'printf \'{"loss": %s}\' "$(cat input.json | tr -dc 0-9. | head -c 3)" > output.json'
    paths = stage("sh ./run.sh", task_files={"run.sh": script}, n_points=2)
    assert NodeAgent(paths.dir).run() == 0
    status = status_of(paths)
    assert [(r.index, r.point_id, r.exit_code) for r in status.points] == [
        (0, "p0", 0),
        (1, "p1", 0),
    ]
    assert (paths.point_dir(0) / "output.json").exists()
    assert (paths.point_dir(1) / "output.json").exists()
    assert json.loads((paths.work / "input.json").read_text()) == {"lr": 0.2, "layers": 1}


def test_metrics_and_meta_files_are_kept_per_point(stage: StageFactory) -> None:
    paths = stage(
        "echo m > metrics.tgz; echo '{}' > meta.json; echo '{\"loss\": 1}' > output.json",
        files=OutputFiles(metrics="metrics.tgz", meta="meta.json"),
    )
    assert NodeAgent(paths.dir).run() == 0
    assert sorted(p.name for p in paths.point_dir(0).iterdir()) == [
        "meta.json",
        "metrics.tgz",
        "output.json",
    ]


def test_a_job_asking_for_an_image_is_refused_by_the_process_runtime(
    stage: StageFactory,
) -> None:
    paths = stage("true")
    doc = json.loads(paths.job_json.read_text())
    doc["node"]["image"] = "docker://registry.example.org/eval:mlflow"
    paths.job_json.write_text(json.dumps(doc))
    assert NodeAgent(paths.dir).run() == 1
    status = status_of(paths)
    assert status.state == "failed"
    assert "without a container" in status.reason
    assert not paths.payload_log.exists()


def test_bad_job_json_ends_as_a_failed_status_without_traceback(tmp_path: Path) -> None:
    job_dir = tmp_path / "jobs" / "job-x"
    job_dir.mkdir(parents=True)
    (job_dir / "job.json").write_text('{"spec": {"job_id": 3}}')
    result = subprocess.run(
        [sys.executable, "-m", "edge.node", "run-job", str(job_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    status = NodeStatus.model_validate_json((job_dir / "status.json").read_text())
    assert status.state == "failed"
    assert "not a valid job document" in status.reason


def test_a_finished_job_is_not_run_again(stage: StageFactory) -> None:
    paths = stage("echo run >> runs.txt")
    assert NodeAgent(paths.dir).run() == 0
    assert NodeAgent(paths.dir).run() == 0
    assert (paths.work / "runs.txt").read_text() == "run\n"


def test_a_payload_that_cannot_start_fails_like_a_missing_command(stage: StageFactory) -> None:
    paths = stage("true", env={"NAME": "a\0b"})
    assert NodeAgent(paths.dir).run() == 1
    status = status_of(paths)
    assert (status.state, status.exit_code) == ("failed", 127)
    assert "could not start the payload" in paths.payload_log.read_text()
