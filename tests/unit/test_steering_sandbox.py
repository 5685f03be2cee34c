"""The steering sandbox as the service builds it, with real bubblewrap: each hostile
program of ``tests/e2e/idds_steering/hostile.py`` fails or is killed, the host is left
as it was, and the round's reason says why.

The machine runs these tests as root, the case the sandbox is hardest on: programs
are dropped to an unprivileged user in a user namespace of their own, or the process
limit would not bind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.steering.container import ContainerResult, run_steering_container
from services.steering.sandbox import (
    SteeringRuntimes,
    open_steering_runtimes,
    program_runtime,
)
from shared.config import SteeringSettings, load
from shared.searchspace import parse_search_space

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = REPO / "tests" / "e2e" / "idds_steering"
SPACE = parse_search_space({"x": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}}})
STANDARD_ARGS = "--in=%IN --out=%OUT --n=%NUM_POINTS --max=%MAX_POINTS"


def settings(tmp_path: Path, **limits: Any) -> SteeringSettings:
    return load(SteeringSettings, home=tmp_path / "home", dev_mode=True, **limits)


def hostile(mode: str, *args: str) -> str:
    quoted = " ".join(shlex.quote(a) for a in args)
    return f"python3 {shlex.quote(str(PROGRAMS / 'hostile.py'))} {mode} {quoted} {STANDARD_ARGS}"


async def steer(tmp_path: Path, exec_: str, wall: float = 600, **limits: Any) -> ContainerResult:
    runtime = program_runtime(settings(tmp_path, **limits))
    return await run_steering_container(
        exec_,
        None,
        runtime,
        SPACE,
        [],
        2,
        10,
        workdir_root=tmp_path / "work",
        attempt_timeout=wall,
        attempts=1,
    )


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


def test_the_default_steering_runtime_is_the_sandbox(tmp_path: Path) -> None:
    assert SteeringSettings.model_fields["steering_runtime"].default == "bwrap"
    assert program_runtime(settings(tmp_path)).kind == "bwrap"


async def test_a_good_program_runs_in_the_sandbox(tmp_path: Path) -> None:
    program = f"python3 {shlex.quote(str(PROGRAMS / 'random_search.py'))} {STANDARD_ARGS}"
    result = await steer(tmp_path, program)
    assert result.ok, result.reason
    assert len(result.points) == 2


async def test_a_program_cannot_write_outside_its_directory(tmp_path: Path) -> None:
    name = f"proof-{uuid.uuid4().hex}"
    targets = [
        Path("/tmp") / name,
        REPO / name,
        Path.home() / name,
        tmp_path / name,
    ]
    result = await steer(tmp_path, hostile("write", *map(str, targets)))
    assert result.ok, result.reason
    assert [t for t in targets if t.exists()] == []


async def test_a_program_cannot_connect_to_a_listening_socket_on_loopback(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = await steer(tmp_path, hostile("connect", str(port)))
        assert result.ok, result.reason
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected: the handshake would have queued


async def test_a_program_cannot_read_the_services_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    mongo = f"mongodb://steering:{secret}-db@127.0.0.1:27017/hpo"
    secrets = {"HPO_SIGNING_KEY": secret, "HPO_MONGO_URL": mongo}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    # A process of the service's user started with the secrets, as the steering
    # service is: its /proc/<pid>/environ holds them (os.environ changes do not show).
    holder = subprocess.Popen(["sleep", "600"], env={"PATH": os.defpath, **secrets})
    try:
        pairs = [f"{name}={value}" for name, value in secrets.items()]
        result = await steer(tmp_path, hostile("secrets", *pairs))
    finally:
        holder.kill()
        holder.wait()
    assert result.ok, result.reason


async def test_a_fork_bomb_stops_at_the_process_limit(tmp_path: Path) -> None:
    result = await steer(tmp_path, hostile("forkbomb"), steering_processes=24)
    assert not result.ok
    assert "exited with code 4" in result.reason
    children = int(result.reason.split("fork failed after ")[1].split()[0])
    assert children < 24
    assert "24 processes and threads" in result.reason


async def test_the_process_limit_counts_each_sandbox_on_its_own(tmp_path: Path) -> None:
    """Two programs run as the same unprivileged user at once; each may start as many
    processes as the limit allows, because each has a user namespace of its own."""
    holder = asyncio.create_task(
        steer(tmp_path / "a", hostile("forkbomb", "--stay"), steering_processes=24)
    )
    while not any(
        "fork failed after" in out.read_text() for out in tmp_path.glob("a/work/*/attempt-1.stdout")
    ):
        assert not holder.done(), holder.result().reason
        await asyncio.sleep(0.05)
    [held] = [out.read_text() for out in tmp_path.glob("a/work/*/attempt-1.stdout")]
    try:
        result = await steer(tmp_path / "b", hostile("forkbomb"), steering_processes=24)
    finally:
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holder
    first = int(held.split("fork failed after ")[1].split()[0])
    second = int(result.reason.split("fork failed after ")[1].split()[0])
    assert first == second > 12


async def test_a_program_cannot_allocate_beyond_the_memory_limit(tmp_path: Path) -> None:
    result = await steer(
        tmp_path, hostile("memory", str(2 * 1024**3)), steering_memory_bytes=256 * 1024**2
    )
    assert not result.ok
    assert "MemoryError" in result.reason
    assert "allocated" not in result.reason
    assert "memory 256 MiB of address space per process" in result.reason


async def test_a_spinning_program_is_killed_at_the_cpu_limit(tmp_path: Path) -> None:
    result = await steer(tmp_path, hostile("spin"), steering_cpu_seconds=1)
    assert not result.ok
    assert "killed by SIGXCPU: it used up its CPU-time limit" in result.reason
    assert "CPU time 1 s per process" in result.reason


async def test_a_file_beyond_the_file_size_limit_cannot_be_written(tmp_path: Path) -> None:
    result = await steer(tmp_path, "head -c 3000000 /dev/zero > big", steering_file_bytes=1024**2)
    assert not result.ok
    assert "killed by SIGXFSZ: it wrote a file beyond the file-size limit" in result.reason


async def test_the_wall_limit_kills_the_program_and_its_detached_child(tmp_path: Path) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    result = await steer(tmp_path, hostile("linger", marker, "--stay"), wall=10)
    assert not result.ok
    assert "timed out after 10 s (its wall-clock limit)" in result.reason
    assert f"left a child behind: {marker}" in result.reason
    while processes_with(marker):  # SIGKILL of a PID namespace completes asynchronously
        await asyncio.sleep(0.05)


async def test_a_child_left_behind_dies_with_the_program(tmp_path: Path) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    result = await steer(tmp_path, hostile("linger", marker))
    assert "exited with code 7" in result.reason
    assert f"left a child behind: {marker}" in result.reason
    # When the program exits, the sandbox's PID 1 exits and the kernel kills the rest of
    # its PID namespace; bwrap reports the exit a moment before that is complete.
    while processes_with(marker):
        await asyncio.sleep(0.05)


async def test_start_refuses_programs_when_bwrap_is_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "work"
    root.mkdir()
    broken = settings(tmp_path, steering_bwrap=str(tmp_path / "no-such-bwrap"))
    runtimes = await open_steering_runtimes(broken, root)
    assert runtimes.programs is None
    assert "install bubblewrap" in runtimes.programs_reason
    refusal = runtimes.for_image(None)
    assert isinstance(refusal, str)
    assert refusal.startswith("this service cannot run steering programs")
    assert any(
        r.levelname == "ERROR" and "steering programs are refused" in r.getMessage()
        for r in caplog.records
    )


async def test_process_runtime_is_loudly_unsandboxed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "work"
    root.mkdir()
    runtimes: SteeringRuntimes = await open_steering_runtimes(
        settings(tmp_path, steering_runtime="process"), root
    )
    assert runtimes.programs is not None and runtimes.programs.kind == "process"
    assert any(
        r.levelname == "WARNING" and r.getMessage().startswith("UNSANDBOXED")
        for r in caplog.records
    )


@pytest.mark.parametrize("user", ["0:0", "0:65534", "65534:0", "nobody", "65534"])
def test_the_sandbox_user_must_be_an_unprivileged_uid_and_gid(tmp_path: Path, user: str) -> None:
    with pytest.raises(ValidationError, match="steering_sandbox_user"):
        settings(tmp_path, steering_sandbox_user=user)
