"""phpo's whole option set: ``hpo submit`` and the task config take every phpo option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client.cli import app
from shared.domain.taskconfig import TaskConfig

# Every option of panda-client's PhpoScript.py (its ``dest`` names, which are also the
# keys phpo reads from a --loadJson file), with one value each as a user would write it.
PHPO_DESTS = {
    "version": True,
    "loadJson": "config.json",
    "dumpJson": "dump.json",
    "nParallelEvaluation": 2,
    "maxPoints": 4,
    "maxEvaluationJobs": 9,
    "maxPointsPerEvaluationJob": 1,
    "nPointsPerIteration": 3,
    "minUnevaluatedPoints": 1,
    "steeringContainer": "docker://gitlab-registry.cern.ch/zhangruihpc/steeringcontainer:0.0.1",
    "steeringExec": "run --n=%NUM_POINTS --max=%MAX_POINTS --in=$PWD/%IN --out=$PWD/%OUT",
    "searchSpaceFile": "space.json",
    "evaluationContainer": "docker://registry.example.org/eval:mlflow",
    "evaluationExec": "bash ./exec_in_container.sh",
    "evaluationInput": "input.json",
    "evaluationTrainingData": "input_ds.json",
    "evaluationOutput": "output.json",
    "evaluationMeta": "meta.json",
    "evaluationMetrics": "metrics.tgz",
    "checkPointToSave": "ckpt",
    "checkPointToLoad": "ckpt.tgz",
    "checkPointInterval": 10,
    "alrbArgs": "--nocvmfs --nohome",
    "architecture": "#x86_64-*-avx2&nvidia",
    "segmentSpecFile": "segments.json",
    "verbose": True,
    "trainingDS": "user.someone.training_ds",
    "outDS": "user.someone.hpo_test_01/",
    "official": True,
    "site": "siteA,siteB",
    "workingGroup": "AP_EXOT",
    "noSubmit": True,
    "python3": True,
    "vomsRoles": "atlas:/atlas/ca/Role=production",
    "noEmail": True,
    "intrSrv": True,
}
FLAGS = {dest: f"--{dest}" for dest in PHPO_DESTS} | {
    "verbose": "-v",
    "python3": "-3",
    "vomsRoles": "--voms",
}
"""How phpo spells each option on its command line."""
PANDA_ONLY = {
    "alrbArgs",
    "official",
    "workingGroup",
    "python3",
    "vomsRoles",
    "noEmail",
    "intrSrv",
}


def invoke(*args: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_table_holds_every_phpo_option() -> None:
    from shared.domain.phpo import BY_DEST, OPTIONS

    assert set(BY_DEST) == set(PHPO_DESTS)
    assert {d: o.flags[0] for d, o in BY_DEST.items()} == FLAGS
    assert all(option.help for option in OPTIONS)


def test_a_config_with_every_phpo_key_validates_and_warns_per_panda_only_option() -> None:
    config = {k: v for k, v in PHPO_DESTS.items() if k not in ("segmentSpecFile",)}
    task = TaskConfig.model_validate(config)
    assert task.outDS == "user.someone.hpo_test_01/"
    assert task.sites == ["siteA", "siteB"]
    assert task.architecture == "amd64"
    warned = {line.split(":", 1)[0] for line in task.warnings}
    flags = {FLAGS[d] for d in PANDA_ONLY} | {"--architecture"}
    assert flags <= warned
    for line in task.warnings:
        if line.startswith(tuple(FLAGS[d] for d in PANDA_ONLY)):
            assert "no effect here" in line, line
    assert "vendor and instruction-set requirements have no effect" in " ".join(task.warnings)
    assert (task.resources.gpus, task.resources.gpu_model) == (1, None), "&nvidia: any GPU"


@pytest.mark.parametrize(
    ("written", "arch", "noted"),
    [
        ("", None, False),
        ("amd64", "amd64", False),
        ("x86_64", "amd64", False),
        ("#aarch64", "arm64", False),
        ("#ppc64le-*-*", "ppc64le", False),
        ("#&nvidia", None, False),
        ("#x86_64-intel-avx2", "amd64", True),
    ],
)
def test_phpo_architecture_spec_is_read_for_its_cpu(
    written: str, arch: str | None, noted: bool
) -> None:
    config = TaskConfig.model_validate({"evaluationExec": "true", "architecture": written})
    assert config.architecture == arch
    assert ("architecture" in config.ignoredOptions) is noted


@pytest.mark.parametrize(
    ("written", "resources", "gpus", "model"),
    [
        ("#x86_64", None, 0, None),
        ("#&nvidia", None, 1, None),
        ("#x86_64&nvidia-A100", None, 1, "A100"),
        ("&nvidia-a100", {"gpus": 4}, 4, "a100"),
        ("&nvidia-a100", {"gpu_model": "H100"}, 1, "H100"),
    ],
)
def test_phpo_gpu_spec_becomes_the_jobs_gpu_resources(
    written: str, resources: dict[str, object] | None, gpus: int, model: str | None
) -> None:
    given = {"resources": resources} if resources else {}
    config = TaskConfig.model_validate({"evaluationExec": "true", "architecture": written, **given})
    assert (config.resources.gpus, config.resources.gpu_model) == (gpus, model)


def test_an_unknown_cpu_architecture_is_still_refused() -> None:
    with pytest.raises(ValueError, match="architecture"):
        TaskConfig.model_validate({"evaluationExec": "true", "architecture": "#sparc64"})


def test_every_option_is_accepted_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "space.json").write_text(json.dumps({"x": {"method": "uniform"}}))
    args: list[str] = []
    for dest, value in PHPO_DESTS.items():
        if dest in ("version", "loadJson", "segmentSpecFile"):
            continue
        flag = FLAGS[dest]
        args += [flag] if value is True else [flag, str(value)]
    code, out, err = invoke("submit", *args, cwd=tmp_path, monkeypatch=monkeypatch)
    assert code == 0, err
    assert "No such option" not in err
    assert "nothing was submitted" in out
    assert "files travelling with the task: space.json" in err  # -v
    for dest in PANDA_ONLY:
        assert f"{FLAGS[dest]}: no effect here" in err
    dumped = json.loads((tmp_path / "dump.json").read_text())
    assert dumped["returnCode"] == 0 and dumped["jediTaskID"] is None
    assert dumped["outDS"] == "user.someone.hpo_test_01/"


def test_load_json_carries_outds_site_and_client_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "evaluationExec": "python train.py",
        "outDS": "user.alice.test01/",
        "site": "siteA",
        "noSubmit": True,
        "dumpJson": "out.json",
        "workingGroup": "AP",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, out, err = invoke(
        "submit",
        "--loadJson",
        "config.json",
        "--maxPoints",
        "7",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
    )
    assert code == 0, err
    shown = json.loads(out[out.index("{") :])
    assert shown["config"]["outDS"] == "user.alice.test01/"
    assert shown["config"]["maxPoints"] == 7
    assert "noSubmit" not in shown["config"] and "dumpJson" not in shown["config"]
    assert "--workingGroup: no effect here" in err
    assert json.loads((tmp_path / "out.json").read_text())["returnOut"].startswith("not submitted")


def test_dry_run_reports_a_bad_config_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = invoke(
        "submit", "--noSubmit", "--maxPoints", "0", cwd=tmp_path, monkeypatch=monkeypatch
    )
    assert code == 2
    assert "maxPoints" in err and "evaluationExec" in err


def test_help_names_every_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = invoke("submit", "--help", cwd=tmp_path, monkeypatch=monkeypatch)
    assert code == 0
    for flag in FLAGS.values():
        assert flag in out, flag
    assert "--helpGroup" in out


def test_help_group_all_prints_every_group_as_phpo_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = invoke("submit", "--helpGroup", "ALL", cwd=tmp_path, monkeypatch=monkeypatch)
    assert code == 0
    positions = [out.index(f"{g}:\n") for g in ("input", "output", "config", "submit", "expert")]
    assert positions == sorted(positions)
    from shared.domain.phpo import OPTIONS

    for option in OPTIONS:
        assert option.flag in out and option.help in out


def test_help_group_of_one_group_and_an_unknown_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = invoke("submit", "--helpGroup", "output", cwd=tmp_path, monkeypatch=monkeypatch)
    assert code == 0
    assert "--outDS" in out and "--official" in out and "--maxPoints" not in out
    code, _, err = invoke("submit", "--helpGroup", "nope", cwd=tmp_path, monkeypatch=monkeypatch)
    assert code == 2 and "unknown option group" in err


def test_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = invoke("--version", cwd=tmp_path, monkeypatch=monkeypatch)
    assert code == 0 and out.startswith("hpo-relay ")
    code, out2, _ = invoke("submit", "--version", cwd=tmp_path, monkeypatch=monkeypatch)
    assert code == 0 and out2 == out


def test_status_shows_the_output_dataset_why_jobs_wait_and_why_a_task_ended() -> None:
    from client.render import status_lines

    view = {
        "id": "task_1",
        "name": "user.alice.test01",
        "status": "running",
        "reason": "",
        "waiting": "no live site can run image docker://x (a: ...)",
        "config": {"outDS": "user.alice.test01/"},
        "progress": {
            "max_points": 4,
            "points": 1,
            "unevaluated": 1,
            "pending": 0,
            "evaluated": 0,
            "failed": 0,
            "jobs": 1,
            "active_jobs": 1,
            "segments": [],
        },
    }
    assert status_lines(view) == [
        "task_1 user.alice.test01  status: running",
        "output dataset (outDS): user.alice.test01/",
        "waiting: no live site can run image docker://x (a: ...)",
        "points 1 of 4: 0 evaluated, 0 failed, 0 pending, 1 waiting; jobs 1 (1 active)",
    ]
    ended = {**view, "status": "failed", "reason": "every evaluation failed", "waiting": ""}
    assert (
        status_lines(ended)[0]
        == "task_1 user.alice.test01  status: failed (every evaluation failed)"
    )
