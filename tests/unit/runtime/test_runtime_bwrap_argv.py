"""The bwrap runtime's translation (pure); real sandboxed runs are in tests/contract."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.runtime import BwrapRuntimeConfig, RuntimeUnsupportedError
from shared.runtime.bwrap import BwrapRuntime

NODE_ENV = {"PATH": "/usr/bin:/bin", "HPO_EDGE_TOKEN": "site-secret", "LD_LIBRARY_PATH": "/opt/lib"}
HOSTILE = "a b \"c\" 'd' $(touch /tmp/pwned) `id`"


def make(existing: tuple[str, ...] = ("/home", "/root"), **config: object) -> BwrapRuntime:
    return BwrapRuntime(
        BwrapRuntimeConfig.model_validate(config), environ=NODE_ENV, is_dir=existing.__contains__
    )


def test_exact_argv_and_environment(tmp_path: Path) -> None:
    launch = make().prepare("python train.py", tmp_path, {"SEED": "7"}, None, None)
    work = str(tmp_path.resolve())
    assert launch.argv == [
        "bwrap",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        "--tmpfs", "/dev/shm",
        "--tmpfs", "/home", "--remount-ro", "/home",
        "--tmpfs", "/root", "--remount-ro", "/root",
        "--tmpfs", "/srv", "--bind", work, "/srv/workDir", "--remount-ro", "/srv",
        "--chdir", "/srv/workDir",
        "--unshare-net", "--unshare-pid", "--unshare-ipc",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--", "/bin/sh", "-c", "python train.py",
    ]  # fmt: skip
    assert launch.env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/srv/workDir",
        "PWD": "/srv/workDir",
        "LANG": "C.UTF-8",
        "SEED": "7",
    }
    assert launch.cwd == tmp_path.resolve()


def test_missing_hide_paths_are_skipped(tmp_path: Path) -> None:
    launch = make(existing=()).prepare("true", tmp_path, {}, None, None)
    assert "/home" not in launch.argv and "/root" not in launch.argv
    custom = make(existing=("/gpfs/edge",), hide=["/gpfs/edge"]).prepare(
        "true", tmp_path, {}, None, None
    )
    i = custom.argv.index("/gpfs/edge")
    assert custom.argv[i - 1 : i + 3] == ["--tmpfs", "/gpfs/edge", "--remount-ro", "/gpfs/edge"]


def test_gpus_bind_devices_and_select_them(tmp_path: Path) -> None:
    runtime = make(gpu_devices=["/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia1"])
    launch = runtime.prepare("true", tmp_path, {}, None, ["1"])
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "1"
    binds = [launch.argv[i : i + 3] for i, a in enumerate(launch.argv) if a == "--dev-bind-try"]
    assert binds == [
        ["--dev-bind-try", "/dev/nvidiactl", "/dev/nvidiactl"],
        ["--dev-bind-try", "/dev/nvidia0", "/dev/nvidia0"],
        ["--dev-bind-try", "/dev/nvidia1", "/dev/nvidia1"],
    ]
    assert launch.argv.index("--dev-bind-try") > launch.argv.index("--dev")
    no_gpu: list[list[str] | None] = [[], None]
    for gpus in no_gpu:
        plain = runtime.prepare("true", tmp_path, {}, None, gpus)
        assert "--dev-bind-try" not in plain.argv


def test_default_gpu_devices_cover_nvidia_and_amd(tmp_path: Path) -> None:
    launch = make().prepare("true", tmp_path, {}, None, ["0"])
    for device in (
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia0",
        "/dev/nvidia15",
        "/dev/kfd",
    ):
        assert ["--dev-bind-try", device, device] == launch.argv[
            launch.argv.index(device) - 1 : launch.argv.index(device) + 2
        ]


def test_the_environment_is_clean_and_the_job_cannot_move_the_working_directory(
    tmp_path: Path,
) -> None:
    runtime = make(pass_env=["LD_LIBRARY_PATH"], path="/opt/bin:/usr/bin")
    launch = runtime.prepare("true", tmp_path, {"PWD": "/etc", "HOME": "/elsewhere"}, None, [])
    assert launch.env == {
        "PATH": "/opt/bin:/usr/bin",
        "HOME": "/elsewhere",  # the job may choose its HOME, as with the process runtime
        "PWD": "/srv/workDir",
        "LANG": "C.UTF-8",
        "LD_LIBRARY_PATH": "/opt/lib",
        "CUDA_VISIBLE_DEVICES": "",
    }


def test_values_never_reach_the_command_line(tmp_path: Path) -> None:
    exec_ = f"python train.py --tag {shlex.quote(HOSTILE)}"
    launch = make().prepare(exec_, tmp_path, {"HOSTILE": HOSTILE}, None, None)
    assert launch.argv[-3:] == ["/bin/sh", "-c", exec_]
    assert not any(HOSTILE in arg for arg in launch.argv[:-1])
    assert "--setenv" not in launch.argv and "--clearenv" not in launch.argv
    assert launch.env["HOSTILE"] == HOSTILE


def test_extra_args_come_before_the_command(tmp_path: Path) -> None:
    launch = make(extra_args=["--ro-bind", "/data", "/data"], executable="/usr/local/bin/bwrap")
    argv = launch.prepare("true", tmp_path, {}, None, None).argv
    assert argv[0] == "/usr/local/bin/bwrap"
    assert argv[-8:] == ["ALL", "--ro-bind", "/data", "/data", "--", "/bin/sh", "-c", "true"]


def test_an_image_is_refused_unless_the_site_ignores_it(tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnsupportedError, match="ignore_image"):
        make().prepare("true", tmp_path, {}, "/sif/eval.sif", None)
    launch = make(ignore_image=True).prepare("true", tmp_path, {}, "docker://x/y", None)
    assert launch.notes and "docker://x/y" in launch.notes[0]


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"hide": ["home"]}, "absolute"),
        ({"hide": ["/"]}, "absolute"),
        ({"hide": ["/home/../etc"]}, "absolute"),
        ({"hide": ["/home/"]}, "written '/home'"),
        ({"hide": ["/tmp"]}, "clashes"),
        ({"hide": ["/srv/workDir"]}, "clashes"),
        ({"hide": ["/proc/1"]}, "clashes"),
        ({"gpu_devices": ["/sys/class/drm"]}, "under /dev/"),
        ({"bind": "/data"}, "bind"),
    ],
)
def test_bad_configs_name_the_problem(config: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        BwrapRuntimeConfig.model_validate(config)
