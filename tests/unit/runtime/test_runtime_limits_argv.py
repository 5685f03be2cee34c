"""Limits and the unprivileged user in the runtimes' translation (pure); the sandbox
that enforces them is run for real in tests/unit/test_steering_sandbox.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.runtime import (
    ApptainerRuntimeConfig,
    BwrapRuntimeConfig,
    ResourceLimits,
    image_runtime_kinds,
    open_runtime,
)
from shared.runtime.apptainer import ApptainerRuntime
from shared.runtime.bwrap import BwrapRuntime

LIMITS = ResourceLimits(cpu_seconds=60, memory_bytes=2 * 1024**3, processes=64, file_bytes=2**20)


def bwrap(euid: int, **config: object) -> BwrapRuntime:
    return BwrapRuntime(
        BwrapRuntimeConfig.model_validate(config),
        environ={"PATH": "/usr/bin:/bin"},
        is_dir=lambda _path: False,
        euid=lambda: euid,
    )


def tail(argv: list[str]) -> list[str]:
    return argv[argv.index("--") + 1 :]


def test_limits_are_a_prlimit_prefix() -> None:
    assert LIMITS.argv() == [
        "prlimit", "--core=0", "--cpu=60:61", f"--as={2 * 1024**3}", "--nproc=64",
        f"--fsize={2**20}", "--",
    ]  # fmt: skip
    assert ResourceLimits().argv() == []
    assert LIMITS.describe() == (
        "CPU time 60 s per process, memory 2 GiB of address space per process, "
        "64 processes and threads, files of at most 1 MiB"
    )


def test_root_drops_to_the_unprivileged_user_in_its_own_user_namespace(tmp_path: Path) -> None:
    staged = tmp_path / "idds_input.json"
    staged.write_text("{}")
    launch = bwrap(0, limits=LIMITS, run_as="4242:4343").prepare("steer", tmp_path, {}, None, None)
    assert tail(launch.argv) == [
        "setpriv", "--reuid=4242", "--regid=4343", "--clear-groups", "--inh-caps=-all",
        "--bounding-set=-all", "--no-new-privs", "--",
        "unshare", "--user", "--map-current-user", "--",
        *LIMITS.argv(), "/bin/sh", "-c", "steer",
    ]  # fmt: skip
    caps = launch.argv[launch.argv.index("ALL") + 1 : launch.argv.index("--")]
    assert caps == [
        "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
    ]  # fmt: skip
    assert launch.argv[launch.argv.index("/tmp") - 3 : launch.argv.index("/tmp")] == [
        "--perms", "1777", "--tmpfs",
    ]  # fmt: skip
    # prepare hands the working directory over (the tests run as root, as CI does)
    for path in (tmp_path, staged):
        assert (path.stat().st_uid, path.stat().st_gid) == (4242, 4343)
    assert oct(tmp_path.stat().st_mode & 0o777) == "0o711"
    assert any(note.startswith("limits: CPU time 60 s") for note in launch.notes)


def test_a_caller_that_is_not_root_keeps_its_user_in_a_new_user_namespace(
    tmp_path: Path,
) -> None:
    launch = bwrap(1000, limits=LIMITS, run_as="4242:4343").prepare(
        "steer", tmp_path, {}, None, None
    )
    assert "--unshare-user" in launch.argv and "setpriv" not in launch.argv
    assert tail(launch.argv) == [*LIMITS.argv(), "/bin/sh", "-c", "steer"]


def test_root_without_run_as_is_told_the_process_limit_does_not_bind(tmp_path: Path) -> None:
    launch = bwrap(0, limits=LIMITS).prepare("steer", tmp_path, {}, None, None)
    assert "setpriv" not in launch.argv
    assert "the process limit does not bind root: set run_as" in launch.notes


@pytest.mark.parametrize("bad", ["0:0", "1000:0", "nobody", "1000", "-1:5"])
def test_run_as_must_name_an_unprivileged_uid_and_gid(bad: str) -> None:
    with pytest.raises(ValidationError, match="run_as"):
        BwrapRuntimeConfig(run_as=bad)


def test_image_runtimes_put_the_limits_around_the_tool(tmp_path: Path) -> None:
    config = ApptainerRuntimeConfig(
        allow_pull=True, limits=ResourceLimits(cpu_seconds=5, memory_bytes=2**30)
    )
    launch = ApptainerRuntime(config, environ={}).prepare(
        "steer", tmp_path, {}, "docker://example.org/steer:1", None
    )
    assert launch.argv[:5] == ["prlimit", "--core=0", "--cpu=5:6", f"--as={2**30}", "--"]
    assert launch.argv[5:7] == ["apptainer", "exec"]
    with pytest.raises(ValidationError, match="process limit"):
        ApptainerRuntimeConfig(limits=ResourceLimits(processes=10))


def test_the_registry_says_which_runtimes_run_images() -> None:
    assert image_runtime_kinds() == ["apptainer", "singularity"]
    assert all(open_runtime(kind).runs_images for kind in image_runtime_kinds())
    assert not open_runtime("bwrap").runs_images and not open_runtime("process").runs_images
