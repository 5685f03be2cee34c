"""A payload runs "through apptainer" end to end, with a recording shim for the tool.

The shim is an executable named ``apptainer`` (or ``singularity``) put first on the
node's ``PATH``. It records its argv and environment, then does what the real tool would
do with the parts this project relies on: it takes the directory bound at ``--pwd``, the
``<PREFIX>ENV_*`` variables as the whole environment, and runs the ``/bin/sh -c`` part
there, natively (no image, no namespaces). So the node agent, the runtime's translation
and the payload meet for real; only the container itself is pretended. Apptainer and
Singularity are contract-tested only: no real installation is exercised anywhere.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge.documents import NodeStatus
from edge.node.agent import NodeAgent
from shared.runtime import ApptainerRuntimeConfig, RuntimeConfig, SingularityRuntimeConfig
from tests.unit.runtime.jobs import stage

IMAGE = "/gpfs/sif/sha256-ab.amd64.sif"
HOSTILE = "a b \"c\" 'd' $(touch pwned) `touch pwned2` ; exit 3"

SHIM = """\
import json, os, sys
from pathlib import Path

prefix = {"apptainer": "APPTAINERENV_", "singularity": "SINGULARITYENV_"}[Path(sys.argv[0]).name]
with open(Path(__file__).resolve().parent / "calls.jsonl", "a") as log:
    log.write(json.dumps({"argv": sys.argv, "env": dict(os.environ)}) + "\\n")
args = sys.argv[1:]
if args[0] != "exec":
    sys.exit(f"shim: only 'exec' is supported, not {args[0]!r}")
takes_value = {"--bind", "-B", "--pwd", "--network", "--home"}
binds, pwd, i = {}, None, 1
while args[i].startswith("-"):
    if args[i] in takes_value:
        flag, value, i = args[i], args[i + 1], i + 2
        if flag in ("--bind", "-B"):
            source, _, rest = value.partition(":")
            binds[rest.split(":")[0] or source] = source
        elif flag == "--pwd":
            pwd = value
    else:
        i += 1
image, command = args[i], args[i + 1:]
if command[:2] != ["/bin/sh", "-c"] or len(command) != 3:
    sys.exit(f"shim: expected /bin/sh -c EXEC after the image, got {command!r}")
env = {k[len(prefix):]: v for k, v in os.environ.items() if k.startswith(prefix)}
env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
env["PWD"] = binds[pwd]
os.chdir(binds[pwd])
os.execve("/bin/sh", command, env)
"""

RUN_SH = """\
cp input.json seen_input.json
env -0 > env.bin
printf '%s' "$HOSTILE" > hostile.txt
printf '{"status": 0, "loss": 0.5}' > output.json
"""
TASK_FILES = {"run.sh": RUN_SH}

Kind = tuple[str, Callable[[], RuntimeConfig]]
KINDS: list[Kind] = [
    ("apptainer", ApptainerRuntimeConfig),
    ("singularity", SingularityRuntimeConfig),
]


@pytest.fixture(params=KINDS, ids=[k for k, _ in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    value: Kind = request.param
    return value


@pytest.fixture
def shim(kind: Kind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory of the fake tool, first on the node's PATH; returns it."""
    directory = tmp_path / "shim-bin"
    directory.mkdir()
    tool = directory / kind[0]
    tool.write_text(f"#!{sys.executable}\n{SHIM}")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
    monkeypatch.setenv("HPO_EDGE_TOKEN", "site-secret")
    monkeypatch.setenv("APPTAINER_BIND", "/etc")
    return directory


def calls(shim: Path) -> list[dict[str, Any]]:
    log = shim / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def read_env0(path: Path) -> dict[str, str]:
    entries = path.read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if entry)


def test_a_payload_runs_through_the_tool_with_exactly_the_expected_argv(
    kind: Kind, shim: Path, tmp_path: Path
) -> None:
    name, config = kind
    exec_ = f"sh ./run.sh --tag {shlex.quote(HOSTILE)}"
    paths = stage(
        tmp_path / "root",
        config(),
        IMAGE,
        gpus=["1"],
        exec=exec_,
        env={"HOSTILE": HOSTILE},
        task_files=TASK_FILES,
    )
    assert NodeAgent(paths.dir).run() == 0, paths.payload_log.read_text()

    status = NodeStatus.model_validate_json(paths.status.read_text())
    assert status.state == "finished"
    assert json.loads((paths.point_dir(0) / "output.json").read_text())["loss"] == 0.5
    assert json.loads((paths.work / "seen_input.json").read_text()) == {"lr": 0.1}

    [call] = calls(shim)
    work = str(paths.work.resolve())
    assert call["argv"][1:] == [
        "exec",
        "--containall",
        "--no-eval",
        "--bind",
        f"{work}:/srv/workDir",
        "--pwd",
        "/srv/workDir",
        "--nv",
        IMAGE,
        "/bin/sh",
        "-c",
        exec_,
    ]
    assert Path(call["argv"][0]).name == name
    prefix = "APPTAINERENV_" if name == "apptainer" else "SINGULARITYENV_"
    assert call["env"][f"{prefix}HOSTILE"] == HOSTILE
    assert call["env"][f"{prefix}CUDA_VISIBLE_DEVICES"] == "1"
    assert "HPO_EDGE_TOKEN" not in call["env"]
    assert "APPTAINER_BIND" not in call["env"]
    assert not any(HOSTILE in arg for arg in call["argv"][:-1])


def test_the_payload_sees_only_the_jobs_variables_verbatim(
    kind: Kind, shim: Path, tmp_path: Path
) -> None:
    paths = stage(
        tmp_path / "root",
        kind[1](),
        IMAGE,
        gpus=["1"],
        exec="sh ./run.sh",
        env={"HOSTILE": HOSTILE, "SEED": "7"},
        task_files=TASK_FILES,
    )
    assert NodeAgent(paths.dir).run() == 0, paths.payload_log.read_text()
    env = read_env0(paths.work / "env.bin")
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",  # the image's, stood in for by the shim
        "PWD": str(paths.work.resolve()),  # /srv/workDir in a real container
        "LANG": "C.UTF-8",
        "HOSTILE": HOSTILE,
        "SEED": "7",
        "CUDA_VISIBLE_DEVICES": "1",
    }
    assert (paths.work / "hostile.txt").read_text() == HOSTILE
    assert not (paths.work / "pwned").exists()
    assert not (paths.work / "pwned2").exists()


def test_a_registry_image_fails_the_job_before_the_tool_runs(
    kind: Kind, shim: Path, tmp_path: Path
) -> None:
    image = "docker://registry.example.org/eval:mlflow"
    paths = stage(tmp_path / "root", kind[1](), image, gpus=["1"])
    assert NodeAgent(paths.dir).run() == 1
    status = NodeStatus.model_validate_json(paths.status.read_text())
    assert status.state == "failed"
    assert "harvester must pre-pull" in status.reason
    assert image in status.reason
    assert calls(shim) == []
