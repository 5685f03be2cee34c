"""The apptainer and singularity runtimes through their argv contract.

Neither tool is installable on the test machines, so this is what "tested" means for
them: the exact command line and environment handed to the node agent (here), and a
recording shim standing in for the tool (``test_runtime_sif_shim.py``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.runtime import RuntimeUnsupportedError
from shared.runtime.apptainer import ApptainerRuntime, ApptainerRuntimeConfig
from shared.runtime.sif import SifRuntime
from shared.runtime.singularity import SingularityRuntime, SingularityRuntimeConfig

NODE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/home/alice",
    "USER": "alice",
    "HPO_EDGE_TOKEN": "site-secret",
    "APPTAINER_BIND": "/scratch",
    "SINGULARITY_BIND": "/scratch",
    "NCCL_SOCKET_IFNAME": "ib0",
}
IMAGE = "/gpfs/sif/sha256-ab.amd64.sif"
HOSTILE = "a b \"c\" 'd' $(touch /tmp/pwned) `id` ; rm -rf / \\ %IN_DATA"

Flavour = tuple[str, type[SifRuntime], type[ApptainerRuntimeConfig | SingularityRuntimeConfig]]
FLAVOURS: list[Flavour] = [
    ("APPTAINERENV_", ApptainerRuntime, ApptainerRuntimeConfig),
    ("SINGULARITYENV_", SingularityRuntime, SingularityRuntimeConfig),
]


@pytest.fixture(params=FLAVOURS, ids=["apptainer", "singularity"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    value: Flavour = request.param
    return value


def make(flavour: Flavour, **config: object) -> SifRuntime:
    _, runtime_cls, config_cls = flavour
    return runtime_cls(config_cls.model_validate(config), environ=NODE_ENV)


def test_exact_argv_and_environment_without_gpus(flavour: Flavour, tmp_path: Path) -> None:
    prefix, runtime_cls, _ = flavour
    launch = make(flavour).prepare("python train.py", tmp_path, {"SEED": "7"}, IMAGE, None)
    work = tmp_path.resolve()
    assert launch.argv == [
        runtime_cls.kind,
        "exec",
        "--containall",
        "--no-eval",
        "--bind",
        f"{work}:/srv/workDir",
        "--pwd",
        "/srv/workDir",
        IMAGE,
        "/bin/sh",
        "-c",
        "python train.py",
    ]
    assert launch.env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/home/alice",
        "USER": "alice",
        f"{prefix}LANG": "C.UTF-8",
        f"{prefix}SEED": "7",
    }
    assert launch.cwd == work
    assert launch.notes == []


def test_gpus_add_nv_and_select_devices(flavour: Flavour, tmp_path: Path) -> None:
    prefix = flavour[0]
    launch = make(flavour).prepare("true", tmp_path, {}, IMAGE, ["1", "3"])
    assert launch.argv[-7:] == ["--pwd", "/srv/workDir", "--nv", IMAGE, "/bin/sh", "-c", "true"]
    assert launch.env[f"{prefix}CUDA_VISIBLE_DEVICES"] == "1,3"


def test_no_gpu_assigned_means_no_nv_and_no_visible_device(
    flavour: Flavour, tmp_path: Path
) -> None:
    prefix = flavour[0]
    launch = make(flavour).prepare("true", tmp_path, {}, IMAGE, [])
    assert "--nv" not in launch.argv
    assert launch.env[f"{prefix}CUDA_VISIBLE_DEVICES"] == ""
    untouched = make(flavour).prepare("true", tmp_path, {}, IMAGE, None)
    assert "--nv" not in untouched.argv
    assert f"{prefix}CUDA_VISIBLE_DEVICES" not in untouched.env


def test_amd_sites_swap_the_gpu_option(flavour: Flavour, tmp_path: Path) -> None:
    launch = make(flavour, gpu_args=["--rocm"]).prepare("true", tmp_path, {}, IMAGE, ["0"])
    assert "--rocm" in launch.argv
    assert "--nv" not in launch.argv


def test_site_options_binds_and_extra_args(flavour: Flavour, tmp_path: Path) -> None:
    runtime = make(
        flavour,
        executable="/opt/apptainer/bin/tool",
        binds=["/gpfs/datasets:/datasets", {"source": "/cvmfs"}],
        extra_args=["--writable-tmpfs"],
        no_home=True,
        no_eval=False,
        isolate_network=True,
        path="/opt/conda/bin:/usr/bin:/bin",
        pass_env=["NCCL_SOCKET_IFNAME", "NOT_SET_ON_NODE"],
    )
    launch = runtime.prepare("true", tmp_path, {}, IMAGE, None)
    work = tmp_path.resolve()
    assert launch.argv == [
        "/opt/apptainer/bin/tool",
        "exec",
        "--containall",
        "--no-home",
        "--net",
        "--network",
        "none",
        "--bind",
        f"{work}:/srv/workDir",
        "--pwd",
        "/srv/workDir",
        "--bind",
        "/gpfs/datasets:/datasets:ro",
        "--bind",
        "/cvmfs:/cvmfs:ro",
        "--writable-tmpfs",
        IMAGE,
        "/bin/sh",
        "-c",
        "true",
    ]
    prefix = flavour[0]
    assert launch.env[f"{prefix}PATH"] == "/opt/conda/bin:/usr/bin:/bin"
    assert launch.env[f"{prefix}NCCL_SOCKET_IFNAME"] == "ib0"
    assert f"{prefix}NOT_SET_ON_NODE" not in launch.env


def test_nothing_else_of_the_node_reaches_the_tool_or_the_container(
    flavour: Flavour, tmp_path: Path
) -> None:
    launch = make(flavour).prepare("true", tmp_path, {"A": "1"}, IMAGE, None)
    assert "HPO_EDGE_TOKEN" not in launch.env
    assert "APPTAINER_BIND" not in launch.env and "SINGULARITY_BIND" not in launch.env
    assert all("site-secret" not in value for value in launch.env.values())


def test_hostile_values_stay_single_arguments_and_never_reach_the_command_line(
    flavour: Flavour, tmp_path: Path
) -> None:
    prefix = flavour[0]
    work = tmp_path / "dir with spaces 'and quotes'"
    work.mkdir()
    exec_ = f"python train.py --tag {shlex.quote(HOSTILE)}"
    launch = make(flavour).prepare(exec_, work, {"HOSTILE": HOSTILE}, IMAGE, None)
    assert launch.argv[-3:] == ["/bin/sh", "-c", exec_]
    assert f"{work.resolve()}:/srv/workDir" in launch.argv
    assert launch.env[f"{prefix}HOSTILE"] == HOSTILE
    assert not any(HOSTILE in arg for arg in launch.argv[:-1])


def test_the_job_cannot_set_home_or_move_the_working_directory(
    flavour: Flavour, tmp_path: Path
) -> None:
    prefix = flavour[0]
    launch = make(flavour).prepare("true", tmp_path, {"HOME": "/x", "PWD": "/etc"}, IMAGE, None)
    assert f"{prefix}HOME" not in launch.env
    assert f"{prefix}PWD" not in launch.env
    assert len(launch.notes) == 2
    assert launch.env["HOME"] == "/home/alice"  # the tool's own, from the node


@pytest.mark.parametrize(
    "image",
    [
        "docker://registry.example.org/eval:mlflow",
        "DOCKER://registry.example.org/eval",
        "oras://ghcr.io/x/eval:1",
        "library://alice/default/eval:latest",
        "shub://x/y",
        "https://example.org/eval.sif",
    ],
)
def test_registry_references_are_refused_because_nodes_never_pull(
    flavour: Flavour, tmp_path: Path, image: str
) -> None:
    with pytest.raises(RuntimeUnsupportedError, match="harvester must pre-pull") as info:
        make(flavour).prepare("true", tmp_path, {}, image, None)
    assert image in str(info.value)


def test_only_a_host_with_network_may_let_the_tool_pull(flavour: Flavour, tmp_path: Path) -> None:
    image = "docker://registry.example.org/steer:1"
    launch = make(flavour, allow_pull=True).prepare("true", tmp_path, {}, image, None)
    assert launch.argv[-4] == image
    with pytest.raises(RuntimeUnsupportedError, match="absolute path"):
        make(flavour, allow_pull=True).prepare("true", tmp_path, {}, "eval.sif", None)


@pytest.mark.parametrize("image", ["eval.sif", "./eval.sif", "--writable", "instance://x"])
def test_only_absolute_local_images_run(flavour: Flavour, tmp_path: Path, image: str) -> None:
    with pytest.raises(RuntimeUnsupportedError, match="absolute path"):
        make(flavour).prepare("true", tmp_path, {}, image, None)


def test_a_job_without_image_needs_the_site_default(flavour: Flavour, tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnsupportedError, match="default_image"):
        make(flavour).prepare("true", tmp_path, {}, None, None)
    launch = make(flavour, default_image="/sif/base.sif").prepare("true", tmp_path, {}, None, None)
    assert launch.argv[-4] == "/sif/base.sif"
    other = make(flavour, default_image="/sif/base.sif").prepare("true", tmp_path, {}, IMAGE, None)
    assert other.argv[-4] == IMAGE


@pytest.mark.parametrize("name", ["a,b", "a:b"])
def test_a_working_directory_the_tool_cannot_bind_is_refused(
    flavour: Flavour, tmp_path: Path, name: str
) -> None:
    work = tmp_path / name
    work.mkdir()
    with pytest.raises(RuntimeUnsupportedError, match="edge root"):
        make(flavour).prepare("true", work, {}, IMAGE, None)


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"extra_args": ["--writable"]}, "read-only"),
        ({"extra_args": ["-w"]}, "read-only"),
        ({"binds": ["/data,/etc"]}, "contains"),
        ({"binds": ["relative"]}, "absolute"),
        ({"binds": ["/data:/srv/workDir"]}, "working directory"),
        ({"binds": ["/data:/srv/workDir/sub"]}, "working directory"),
        ({"binds": [{"source": "/data", "mode": "rw"}]}, "mode"),
        ({"default_image": "docker://x/y"}, "absolute path"),
        ({"bind": "/data"}, "bind"),
    ],
)
def test_bad_configs_name_the_problem(
    flavour: Flavour, config: dict[str, object], words: str
) -> None:
    config_cls = flavour[2]
    with pytest.raises(ValidationError, match=words):
        config_cls.model_validate(config)
