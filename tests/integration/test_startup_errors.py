"""Start-up mistakes through the real entry points: one line saying what to fix, a
non-zero exit, no traceback. None of these needs a server: each mistake is found
before anything is contacted."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(command: str, *args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    done = subprocess.run(
        [str(BIN / command), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stderr


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


DEV = {"HPO_DEV_MODE": "1", "HPO_OPS_PORT": "off"}


def test_missing_signing_key_is_one_line(tmp_path: Path) -> None:
    code, err = run("hpo-services", "run", "api", env={"HPO_ARTIFACTS_URL": f"file://{tmp_path}"})
    line = one_line(err)
    assert code == 2
    assert line.startswith("hpo-services: ")
    assert "HPO_SIGNING_KEY must be set" in line


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("HPO_API_PORT", "eighty", "HPO_API_PORT: must be a whole number (got 'eighty')"),
        ("HPO_API_PORT", "70000", "HPO_API_PORT: input should be less than or equal to 65535"),
        ("HPO_OPS_PORT", "x", "HPO_OPS_PORT: must be a port number (0 to 65535) or off, not 'x'"),
        ("HPO_BUS_URL", "redis://h", "HPO_BUS_URL: unsupported URL scheme 'redis'"),
        ("HPO_MONGO_URL", "postgres://u:secret@h/db", "HPO_MONGO_URL: unsupported URL scheme"),
        ("HPO_ARTIFACTS_URL", "gs://bucket", "HPO_ARTIFACTS_URL: unsupported URL scheme 'gs'"),
    ],
)
def test_bad_setting_is_one_line_naming_the_variable(variable: str, value: str, says: str) -> None:
    code, err = run("hpo-services", "run", "api", env={**DEV, variable: value})
    line = one_line(err)
    assert code == 2
    assert says in line
    assert "secret" not in line  # a URL may hold a password: it is never repeated


@pytest.mark.parametrize("variable", ["HPO_API_PORT", "HPO_OPS_PORT"])
def test_port_in_use_is_one_line_before_any_server_is_contacted(
    variable: str, taken_port: int
) -> None:
    env = {**DEV, "HPO_OPS_PORT": "0", variable: str(taken_port)}
    # an unreachable database: reporting the port must not wait for it
    env["HPO_MONGO_URL"] = "mongodb://127.0.0.1:9/hpo"
    code, err = run("hpo-services", "run", "api", env=env, timeout=60)
    line = one_line(err)
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{taken_port} (set by {variable})" in line
    assert "address already in use" in line


def test_embedded_port_in_use_is_one_line(taken_port: int) -> None:
    code, err = run(
        "hpo-services", "run", "all", "--embedded", env={"HPO_OPS_PORT": str(taken_port)}
    )
    assert code == 2
    assert "(set by HPO_OPS_PORT): address already in use" in one_line(err)


def site_toml(tmp_path: Path, **extra: str) -> Path:
    lines = {
        "site": '"s1"',
        "api_url": '"http://127.0.0.1:9"',
        "token": '"t"',
        "root": f'"{tmp_path / "edge"}"',
        **extra,
    }
    path = tmp_path / "site.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
    return path


def test_harvester_ops_port_in_use_is_one_line(tmp_path: Path, taken_port: int) -> None:
    config = site_toml(tmp_path, ops_port=str(taken_port))
    code, err = run("hpo-edge", "harvester", "--config", str(config), env={})
    line = one_line(err)
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{taken_port} (set by ops_port)" in line


def test_harvester_bad_url_scheme_is_one_line(tmp_path: Path) -> None:
    config = site_toml(tmp_path, api_url='"ftp://hpo.example.org"')
    code, err = run("hpo-edge", "harvester", "--config", str(config), env={})
    line = one_line(err)
    assert code == 2
    assert "api_url" in line and "scheme" in line.lower()
