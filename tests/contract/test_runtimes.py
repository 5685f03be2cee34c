"""Runtime conformance: real payloads through the real node agent, for every runtime that
can really run on the test machines (``process``, ``bwrap`` and ``charliecloud``).

Each case stages a job as the harvester does and runs ``NodeAgent`` in-process, which
starts ``Launch.argv`` exactly as on a compute node. Every runtime must: run the exec in
the working directory and collect ``output.json``; give the payload exactly the
documented environment (``PATH``, ``HOME``, ``PWD``, ``LANG``, the job's variables and
``CUDA_VISIBLE_DEVICES``, nothing of the agent's); stop the whole payload on a kill; and
refuse an image it cannot run. Isolation is part of the contract too, each runtime
checked against what its docstring promises: ``bwrap`` shows the working directory at
``/srv/workDir``, keeps the rest of the host read-only, has its own ``/tmp``, PID
namespace and no network; ``charliecloud`` runs a read-only Debian image built here
(deploy/dev/images.py) in which the host is invisible but for the working directory at
``/srv/workDir``, with its own ``/tmp`` and PID namespace, and shares the network as
Apptainer does; both die with the agent even when it is killed with SIGKILL;
``process`` isolates nothing, and the suite pins that down so nobody mistakes it for a
sandbox.

apptainer and singularity cannot be installed here; they are covered by their argv
contract and a recording shim in ``tests/unit/runtime/``.

bwrap cases need bubblewrap (``apt-get install bubblewrap``), charliecloud cases
Charliecloud and the test image (``deploy/dev/test.sh`` sets up both); without them they
fail, they never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from edge.documents import NodeSettings, NodeStatus
from edge.fsproto import JobPaths
from edge.harvester.staging import stage_job
from edge.node.agent import NodeAgent
from shared.edge_api import JobSpec, PointSpec
from shared.runtime import (
    BwrapRuntimeConfig,
    CharliecloudRuntimeConfig,
    ProcessRuntimeConfig,
    RuntimeConfig,
)
from shared.runtime.charliecloud import IMAGE_PATH
from tests.chimage import image_dir

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "a b \"c\" 'd' $(touch pwned) `touch pwned2` ; exit 3"
INSTALL_BWRAP = "install bubblewrap: apt-get install -y bubblewrap"


@dataclass(frozen=True)
class Case:
    kind: str
    sandboxed: bool
    """True when the runtime promises the evaluation container's isolation: the working
    directory at /srv/workDir, nothing else writable, its own /tmp and PID namespace."""
    host_visible: bool = True
    """The host's files are there to read (read-only when sandboxed)."""
    own_network: bool = False
    image: str | None = None
    """The image the runtime runs payloads in; None for the runtimes on the host."""

    def config(self, **options: Any) -> RuntimeConfig:
        if self.kind == "bwrap":
            return BwrapRuntimeConfig(**options)
        if self.kind == "charliecloud":
            return CharliecloudRuntimeConfig(**options)
        return ProcessRuntimeConfig(**options)

    def workdir_seen(self, paths: JobPaths) -> str:
        """The working directory as the payload sees it."""
        return "/srv/workDir" if self.sandboxed else str(paths.work.resolve())

    def path_seen(self) -> str:
        return IMAGE_PATH if self.image else os.environ["PATH"]

    def added_env(self) -> dict[str, str]:
        """What the runtime itself always adds to the payload's environment."""
        return {"CH_RUNNING": "Weird Al Yankovic"} if self.kind == "charliecloud" else {}


@cache
def _bwrap_problem() -> str | None:
    if shutil.which("bwrap") is None:
        return f"bubblewrap (bwrap) is not on PATH; {INSTALL_BWRAP}"
    probe = subprocess.run(
        ["bwrap", "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--", "/bin/true"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if probe.returncode != 0:
        return (
            f"bwrap cannot create its namespaces here ({probe.stderr.strip()}): allow "
            "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or "
            "the AppArmor userns restriction on Ubuntu) or run the tests as root"
        )
    return None


@pytest.fixture(params=["process", "bwrap", "charliecloud"])
def case(request: pytest.FixtureRequest) -> Case:
    if request.param == "bwrap":
        problem = _bwrap_problem()
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        return Case("bwrap", sandboxed=True, own_network=True)
    if request.param == "charliecloud":
        return Case("charliecloud", sandboxed=True, host_visible=False, image=str(image_dir()))
    return Case("process", sandboxed=False)


@pytest.fixture
def edge_root() -> Iterator[Path]:
    """The edge root, under /var/tmp rather than /tmp: bwrap mounts its own empty /tmp,
    so only a directory outside it shows that the rest of the host is read-only (not
    merely invisible)."""
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix="hpo-runtime-", dir=base))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def stage(
    root: Path,
    case: Case,
    exec_: str,
    *,
    config: RuntimeConfig | None = None,
    image: str | None = None,
    gpus: list[str] | None = None,
    grace: float = 5.0,
    **fields: Any,
) -> JobPaths:
    values: dict[str, Any] = {
        "job_id": "job-" + uuid.uuid4().hex[:8],
        "task_id": "task-1",
        "owner": "alice",
        "segment": "main",
        "attempt": 1,
        "generation": 1,
        "lease_expires": datetime.now(UTC) + timedelta(minutes=5),
        "points": [PointSpec(point_id="p0", index=0, params={"lr": 0.1, "layers": 3})],
        "exec": exec_,
        **fields,
    }
    node = NodeSettings(
        heartbeat_interval=0.2,
        kill_grace_seconds=grace,
        runtime=config or case.config(),
        image=image or case.image,
        gpus=gpus,
    )
    paths, _ = stage_job(root, JobSpec.model_validate(values), node)
    return paths


def run(paths: JobPaths) -> NodeStatus:
    NodeAgent(paths.dir, host="node-1").run()
    return NodeStatus.model_validate_json(paths.status.read_text())


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# --- what every runtime does ----------------------------------------------------------


def test_the_payload_reads_its_input_and_its_output_is_collected(
    case: Case, edge_root: Path
) -> None:
    script = """\
cp input.json seen_input.json
echo "training on $(cat input_ds.json)"
printf '{"status": 0, "loss": 0.125}' > output.json
"""
    paths = stage(
        edge_root,
        case,
        "sh ./run.sh",
        task_files={"run.sh": script},
        training_files=["/data/a.h5"],
    )
    status = run(paths)
    log = paths.payload_log.read_text()
    assert status.state == "finished", log
    assert (paths.point_dir(0) / "output.json").read_text() == '{"status": 0, "loss": 0.125}'
    assert json.loads((paths.work / "seen_input.json").read_text()) == {"lr": 0.1, "layers": 3}
    assert 'training on ["/data/a.h5"]' in log


def test_the_environment_is_exactly_the_documented_one(
    case: Case, edge_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPO_EDGE_TOKEN", "site-secret")
    monkeypatch.setenv("PYTHONPATH", "/agent/only")
    paths = stage(
        edge_root,
        case,
        "env -0 > env.bin; printf '%s' \"$HOSTILE\" > hostile.txt",
        env={"SEED": "7", "HOSTILE": HOSTILE},
        gpus=["0", "2"],
    )
    status = run(paths)
    assert status.state == "finished", paths.payload_log.read_text()
    entries = (paths.work / "env.bin").read_bytes().decode().split("\0")
    env = dict(entry.split("=", 1) for entry in entries if entry)
    seen = case.workdir_seen(paths)
    assert env == {
        "PATH": case.path_seen(),
        "HOME": seen,
        "PWD": seen,
        "LANG": "C.UTF-8",
        "SEED": "7",
        "HOSTILE": HOSTILE,
        "CUDA_VISIBLE_DEVICES": "0,2",
        **case.added_env(),
    }
    assert (paths.work / "hostile.txt").read_text() == HOSTILE
    assert not (paths.work / "pwned").exists() and not (paths.work / "pwned2").exists()


def test_the_working_directory_is_pwd(case: Case, edge_root: Path) -> None:
    paths = stage(edge_root, case, 'pwd -P > where.txt; echo "$PWD" >> where.txt; ls > ls.txt')
    assert run(paths).state == "finished", paths.payload_log.read_text()
    seen = case.workdir_seen(paths)
    assert lines(paths.work / "where.txt") == [seen, seen]
    assert "input.json" in lines(paths.work / "ls.txt")


def _orphans(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_a_kill_stops_the_whole_payload(case: Case, edge_root: Path) -> None:
    marker = f"61.{uuid.uuid4().int % 10**6:06d}"
    paths = stage(edge_root, case, f"echo started; sleep {marker} & sleep {marker}; wait")
    timer = threading.Timer(0.5, lambda: paths.kill.write_text("task cancelled\n"))
    timer.start()
    began = time.monotonic()
    status = run(paths)
    timer.join()
    assert status.state == "killed"
    assert "task cancelled" in status.reason
    assert time.monotonic() - began < 5
    deadline = time.monotonic() + 3
    while _orphans(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _orphans(marker) == []


@pytest.fixture(params=["process", "bwrap"])
def host_case(request: pytest.FixtureRequest) -> Case:
    """The runtimes that run the host's software and so refuse images."""
    if request.param == "bwrap":
        problem = _bwrap_problem()
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        return Case("bwrap", sandboxed=True, own_network=True)
    return Case("process", sandboxed=False)


def test_an_image_is_refused_unless_the_site_ignores_it(host_case: Case, edge_root: Path) -> None:
    case = host_case
    image = "docker://registry.example.org/eval:mlflow"
    refused = run(stage(edge_root, case, "true", image=image))
    assert refused.state == "failed"
    assert "ignore_image" in refused.reason
    paths = stage(edge_root, case, "true", image=image, config=case.config(ignore_image=True))
    assert run(paths).state == "finished"


# --- isolation, each runtime against its own promise -----------------------------------

PROBE_WRITES = """\
probe() {
    if ( : > "$2" ) 2> err.txt; then echo "$1 writable"; else echo "$1 $(cat err.txt)"; fi
}
probe workdir "$PWD/probe"
probe jobdir "$JOB_DIR/escape"
probe hostdir "$OUTSIDE/escape"
probe tmp "/tmp/$TMP_NAME"
"""


def test_writes_outside_the_working_directory(case: Case, edge_root: Path) -> None:
    outside = edge_root / "outside"
    outside.mkdir()
    tmp_name = f"hpo-runtime-probe-{uuid.uuid4().hex}"
    job_dir = JobPaths.under(edge_root, "job-probe").dir
    paths = stage(
        edge_root,
        case,
        "sh ./probe.sh > probe.txt",
        job_id="job-probe",
        task_files={"probe.sh": PROBE_WRITES},
        env={"JOB_DIR": str(job_dir), "OUTSIDE": str(outside), "TMP_NAME": tmp_name},
    )
    try:
        assert run(paths).state == "finished", paths.payload_log.read_text()
        report = dict(line.split(" ", 1) for line in lines(paths.work / "probe.txt"))
        host_tmp = Path("/tmp", tmp_name).exists()
    finally:
        Path("/tmp", tmp_name).unlink(missing_ok=True)
    assert report["workdir"] == "writable"
    assert report["tmp"] == "writable"
    if case.sandboxed:
        cannot = "Read-only file system" if case.host_visible else "nonexistent"
        assert cannot in report["jobdir"]
        assert cannot in report["hostdir"]
        assert not (paths.dir / "escape").exists() and not (outside / "escape").exists()
        assert not host_tmp  # /tmp in the sandbox is its own
    else:
        assert report["jobdir"] == report["hostdir"] == "writable"
        assert host_tmp


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP socket listening on 127.0.0.1 in the test's network namespace; its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_the_network(case: Case, edge_root: Path, listener: int) -> None:
    probe = (
        "if bash -c 'exec 3<>/dev/tcp/127.0.0.1/$PORT' 2> net.err; "
        "then echo reachable > net.txt; else echo unreachable > net.txt; fi"
    )
    paths = stage(edge_root, case, probe, env={"PORT": str(listener)})
    assert run(paths).state == "finished", paths.payload_log.read_text()
    expected = "unreachable" if case.own_network else "reachable"
    assert lines(paths.work / "net.txt") == [expected], (paths.work / "net.err").read_text()


def test_processes_and_home_directories(case: Case, edge_root: Path) -> None:
    probe = (
        "echo $$ > pid.txt; ls -A /root | wc -l > root.txt; "
        "cat /proc/$AGENT_PID/cmdline 2> /dev/null | tr '\\0' ' ' > agent.txt; "
        "grep CapEff /proc/self/status > caps.txt"
    )
    paths = stage(edge_root, case, probe, env={"AGENT_PID": str(os.getpid())})
    assert run(paths).state == "finished", paths.payload_log.read_text()
    pid = int(lines(paths.work / "pid.txt")[0])
    agent = (paths.work / "agent.txt").read_text()
    if case.sandboxed:
        assert pid < 10  # its own PID namespace...
        assert agent == ""  # ...in which the agent does not exist
        assert lines(paths.work / "caps.txt") == ["CapEff:\t0000000000000000"]
        if case.host_visible:
            assert lines(paths.work / "root.txt") == ["0"]  # home directories are covered
        else:  # the image's own /root, not the host's
            assert case.image is not None
            assert lines(paths.work / "root.txt") == [str(len(os.listdir(f"{case.image}/root")))]
    else:
        assert "python" in agent or "pytest" in agent


@pytest.fixture(params=["bwrap", "charliecloud"])
def sandbox(request: pytest.FixtureRequest) -> Case:
    """The runtimes that promise the payload dies with its agent."""
    if request.param == "bwrap":
        problem = _bwrap_problem()
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        return Case("bwrap", sandboxed=True, own_network=True)
    return Case("charliecloud", sandboxed=True, host_visible=False, image=str(image_dir()))


def test_the_payload_dies_with_its_agent(sandbox: Case, edge_root: Path) -> None:
    """An agent killed with SIGKILL cannot stop anything: the kernel must."""
    marker = f"62.{uuid.uuid4().int % 10**6:06d}"
    paths = stage(
        edge_root, sandbox, f"sleep {marker} & sleep {marker} & touch started; wait", grace=30
    )
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge.node", "run-job", str(paths.dir)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: (paths.work / "started").exists() or agent.poll() is not None)
        assert agent.poll() is None, paths.dir.joinpath("agent.log").read_text()
        assert len(_orphans(marker)) >= 2
        agent.kill()
        agent.wait()
        wait_for(lambda: not _orphans(marker))
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        for pid in _orphans(marker):
            os.kill(pid, signal.SIGKILL)


def wait_for(condition: Callable[[], bool], limit: float = 60) -> None:
    """Poll ``condition``; the limit only keeps a broken runtime from hanging the suite."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


# --- charliecloud's images ---------------------------------------------------------------


@pytest.fixture
def charliecloud() -> Case:
    return Case("charliecloud", sandboxed=True, host_visible=False, image=str(image_dir()))


def test_charliecloud_runs_the_image_read_only(charliecloud: Case, edge_root: Path) -> None:
    probe = (
        "python3 -c 'import sys; print(sys.version_info[0])' > python.txt; "
        "if ( : > /etc/escape ) 2> err.txt; then echo writable; else cat err.txt; fi > etc.txt"
    )
    paths = stage(edge_root, charliecloud, probe)
    assert run(paths).state == "finished", paths.payload_log.read_text()
    assert lines(paths.work / "python.txt") == ["3"]  # the image's python, not the host's
    assert "Read-only file system" in (paths.work / "etc.txt").read_text()
    assert not Path(charliecloud.image or "", "etc", "escape").exists()


def test_charliecloud_refuses_images_it_cannot_run(charliecloud: Case, edge_root: Path) -> None:
    pulled = run(stage(edge_root, charliecloud, "true", image="docker://example.org/eval:1"))
    assert pulled.state == "failed"
    assert "compute nodes never pull" in pulled.reason
    bare = edge_root / "bare-image"
    (bare / "bin").mkdir(parents=True)
    no_mount_point = run(stage(edge_root, charliecloud, "true", image=str(bare)))
    assert no_mount_point.state == "failed"
    assert f"mkdir -p {bare}/srv/workDir" in no_mount_point.reason
    relative = run(stage(edge_root, charliecloud, "true", image="images/eval"))
    assert relative.state == "failed" and "absolute path" in relative.reason


def test_charliecloud_uses_the_site_default_image(charliecloud: Case, edge_root: Path) -> None:
    config = charliecloud.config(default_image=charliecloud.image)
    nothing = Case("charliecloud", sandboxed=True, host_visible=False)
    paths = stage(edge_root, nothing, "test -f /etc/debian_version && touch ok", config=config)
    assert run(paths).state == "finished", paths.payload_log.read_text()
    assert (paths.work / "ok").exists()
    refused = run(stage(edge_root, nothing, "true"))
    assert refused.state == "failed" and "default_image" in refused.reason
