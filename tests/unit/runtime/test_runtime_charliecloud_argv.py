"""The charliecloud runtime's command line, as root and as a user (the contract suite in
tests/contract/test_runtimes.py runs it for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.runtime import CharliecloudRuntimeConfig, RuntimeUnsupportedError
from shared.runtime.charliecloud import CharliecloudRuntime


def runtime(euid: int, **options: object) -> CharliecloudRuntime:
    return CharliecloudRuntime(
        CharliecloudRuntimeConfig.model_validate(options),
        environ={"PATH": "/agent/bin", "NCCL_X": "1", "SECRET": "s"},
        euid=lambda: euid,
        is_dir=lambda path: True,
    )


def test_as_a_user_the_pid_namespace_needs_a_user_namespace(tmp_path: Path) -> None:
    launch = runtime(1000, pass_env=["NCCL_X"]).prepare(
        "python3 train.py", tmp_path, {"SEED": "1"}, "/gpfs/img", ["1"]
    )
    assert launch.argv == [
        "setpriv", "--pdeathsig", "KILL", "--",
        "unshare", "--user", "--map-current-user", "--pid", "--fork", "--mount",
        "--mount-proc", "--kill-child", "--",
        "ch-run", "--private-tmp", "--bind", f"{tmp_path.resolve()}:/srv/workDir",
        "--cd", "/srv/workDir", "--unset-env=USER",
        "/gpfs/img", "--", "/bin/sh", "-c", "python3 train.py",
    ]  # fmt: skip
    assert launch.env["NCCL_X"] == "1" and "SECRET" not in launch.env
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "1" and launch.env["SEED"] == "1"
    assert launch.env["PATH"].startswith("/usr/local/sbin") and "USER" in launch.env


def test_as_root_the_payload_is_nobody_and_a_job_user_is_kept(tmp_path: Path) -> None:
    launch = runtime(0, isolate_network=True).prepare(
        "true", tmp_path, {"USER": "alice"}, "/gpfs/img", None
    )
    assert "--user" not in launch.argv and "--net" in launch.argv
    ch_run = launch.argv.index("ch-run")
    assert launch.argv[ch_run + 1 : ch_run + 5] == ["--uid", "65534", "--gid", "65534"]
    assert "--unset-env=USER" not in launch.argv and launch.env["USER"] == "alice"


def test_writable_images_and_extra_binds_are_refused() -> None:
    for arg in ("-w", "--write", "--bind=/data", "-b", "--home"):
        with pytest.raises(ValidationError, match="read-only"):
            CharliecloudRuntimeConfig(extra_args=[arg])
    with pytest.raises(ValidationError, match="absolute path"):
        CharliecloudRuntimeConfig(default_image="docker://x/y")


def test_a_working_directory_with_a_colon_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "a:b"
    odd.mkdir()
    with pytest.raises(RuntimeUnsupportedError, match="contains ':'"):
        runtime(1000).prepare("true", odd, {}, "/gpfs/img", None)
