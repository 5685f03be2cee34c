"""The process runtime and the runtime registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.runtime import ProcessRuntimeConfig, RuntimeUnsupportedError, open_runtime


def test_launch_is_sh_c_in_the_workdir_with_a_clean_environment(tmp_path: Path) -> None:
    runtime = open_runtime("process", {"pass_env": ["SITE_LIB"], "path": "/opt/bin:/usr/bin"})
    launch = runtime.prepare("python train.py --lr 0.1", tmp_path, {"SEED": "1"}, None, ["0", "2"])
    assert launch.argv == ["/bin/sh", "-c", "python train.py --lr 0.1"]
    assert launch.cwd == tmp_path.resolve()
    assert launch.env == {
        "PATH": "/opt/bin:/usr/bin",
        "HOME": str(tmp_path.resolve()),
        "PWD": str(tmp_path.resolve()),
        "LANG": "C.UTF-8",
        "SEED": "1",
        "CUDA_VISIBLE_DEVICES": "0,2",
    }  # SITE_LIB is not set in this test's environment, so it is not passed


def test_the_job_cannot_move_the_working_directory(tmp_path: Path) -> None:
    launch = open_runtime("process").prepare("true", tmp_path, {"PWD": "/etc"}, None, None)
    assert launch.env["PWD"] == str(tmp_path.resolve())
    assert "CUDA_VISIBLE_DEVICES" not in launch.env


def test_an_image_is_refused_unless_the_site_allows_ignoring_it(tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnsupportedError, match="ignore_image"):
        open_runtime("process").prepare("true", tmp_path, {}, "docker://x/y:z", None)
    launch = open_runtime("process", ProcessRuntimeConfig(ignore_image=True)).prepare(
        "true", tmp_path, {}, "docker://x/y:z", None
    )
    assert launch.notes


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match="unknown runtime 'docker'"):
        open_runtime("docker")
    with pytest.raises(ValidationError):
        open_runtime("process", {"bind": "/data"})
