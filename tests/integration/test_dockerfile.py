"""The Dockerfile's commands, run in a virtualenv (no container engine here): the
COPY lines bring everything the package needs, its ``pip install`` builds and installs
the project (not an editable checkout: package data included), and the ENTRYPOINT with
the image's ENV starts and reports a start-up mistake in one line.

Not run: ``FROM`` (this interpreter stands for python:3.11-slim), ``apt-get install
bubblewrap`` and ``useradd`` (they need root and would change this machine), and
``HEALTHCHECK`` (compiled only). Dependencies come from the test's own environment
(``--no-deps``), not from the registry, so a dependency missing from pyproject.toml
would not be caught here.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def instructions(text: str) -> list[tuple[str, str]]:
    joined = text.replace("\\\n", " ")
    steps = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            steps.append((word.upper(), " ".join(rest.split())))
    return steps


def env_pairs(value: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in value.split())


def test_dockerfile_commands_install_a_working_package(tmp_path: Path) -> None:
    steps = instructions((REPO / "Dockerfile").read_text())
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert sys.version_info[:2] == (3, 11)
    image = tmp_path / "image"
    workdir = image / "src"
    workdir.mkdir(parents=True)
    environ: dict[str, str] = {}
    venv.create(image / "venv", with_pip=False)  # pip and setuptools: from deps.pth
    python = image / "venv" / "bin" / "python"
    packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(packages) / "deps.pth").write_text(site.getsitepackages()[0] + "\n")
    entrypoint: list[str] = []
    ran_pip = False
    for word, value in steps[1:]:
        if word == "ENV":
            environ |= env_pairs(value)
        elif word == "WORKDIR":
            workdir = image / value.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            *sources, target = value.split()
            for source in sources:
                origin = REPO / source
                assert origin.exists(), f"COPY {source}: not in the repository"
                destination = (
                    workdir / target / origin.name
                    if target.endswith("/") and len(sources) > 1
                    else workdir / target
                )
                if origin.is_dir():
                    shutil.copytree(
                        origin, destination, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    destination = (
                        workdir / target if not target.endswith("/") else workdir / origin.name
                    )
                    shutil.copy(origin, destination)
        elif word == "RUN" and value.startswith("pip install"):
            args = json_free(value.removeprefix("pip install").strip())
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-deps",
                    "--no-build-isolation",
                    "--no-index",
                    *args,
                ],
                cwd=workdir,
                check=True,
                timeout=500,
            )
            ran_pip = True
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(value)
        elif word == "CMD" and value.startswith("["):
            json.loads(value)
        elif word == "HEALTHCHECK":
            command = json.loads(value[value.index("CMD") + 3 :])
            assert command[:2] == ["python", "-c"]
            compile(command[2], "healthcheck", "exec")
    assert ran_pip and entrypoint == ["hpo-services"]
    shutil.rmtree(image / "src")  # as an image without the build context: nothing from it
    home = image / "var" / "lib" / "hpo-relay"
    home.mkdir(parents=True, exist_ok=True)
    bin_dir = image / "venv" / "bin"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    run_env = {**clean, **environ, "HPO_HOME": str(home), "PATH": f"{bin_dir}:{clean['PATH']}"}
    check = subprocess.run(
        [
            str(python),
            "-c",
            "import services, importlib.resources as r;"
            "print(services.__file__);"
            "print(len(r.files('services.monitor').joinpath('static', 'index.html').read_text()))",
        ],
        cwd=home,
        env=run_env,
        capture_output=True,
        text=True,
        check=True,
    )
    location, size = check.stdout.split()
    assert location.startswith(str(image / "venv")), location
    assert int(size) > 0
    for command in (["hpo", "--help"], ["hpo-edge", "version"], [*entrypoint, "--help"]):
        done = subprocess.run(
            [str(bin_dir / command[0]), *command[1:]],
            cwd=home,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (command, done.stderr)
    mistake = subprocess.run(
        [str(bin_dir / entrypoint[0]), "run", "api"],
        cwd=home,
        env={**run_env, "HPO_API_PORT": "http"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert mistake.returncode == 2
    assert mistake.stderr.strip() == (
        "hpo-services: HPO_API_PORT: must be a whole number (got 'http')"
    )


def json_free(args: str) -> list[str]:
    """The shell words of a simple RUN line (quotes only, no expansion)."""
    import shlex

    return shlex.split(args)
