"""Start and stop a private SecantusDB server (the MongoDB-protocol server of the demo).

``hpo demo`` and ``deploy/dev/infra.py`` need a MongoDB-protocol server where no MongoDB
is installable; they run SecantusDB (``pip install 'hpo-relay[demo]'``). It always runs as
a **separate process** (``python -m secantus``) and no hpo-relay module imports it:

* SecantusDB is GPL-2.0 and hpo-relay is Apache-2.0. Talking to it over a socket, like to
  any MongoDB, keeps the two programs separate works.
* Crash isolation: a native WiredTiger fault or a stuck server thread ends that process
  only, and :meth:`MongoServer.stop` can always kill it.

The storage directory outlives the server, so a second ``hpo demo`` sees the first one's
data. WiredTiger leaves ``WiredTiger.lock`` there after exit; that file is only locked
(``fcntl``) while a server runs, so it does not block the next start, even after SIGKILL.
WiredTiger refuses a second live server on the same directory: that start fails at once.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from shared.netutil import free_port

# An empty config passed with --config: otherwise SecantusDB reads ./secantusd.toml,
# ~/.secantus/secantusd.toml or /etc/secantus/secantusd.toml (auth, TLS...) if present.
_CONFIG_NAME = "hpo-secantusd.toml"
_CONFIG_TEXT = "# Written by hpo-relay: no settings, so no other secantusd.toml applies.\n"
_LOG_NAME = "secantus.log"
_INSTALL_HINT = "pip install 'hpo-relay[demo]'"


class SecantusNotInstalledError(RuntimeError):
    """SecantusDB is not installed in the Python environment that would run it."""


class SecantusStartError(RuntimeError):
    """SecantusDB exited or did not answer a ping before the ready timeout."""


class MongoServer:
    """A SecantusDB process started by :func:`start_secantus`.

    Use it as a context manager or call :meth:`stop`; the process runs in its own process
    group, so it does not get the terminal's Ctrl-C and outlives a crashed parent.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        host: str,
        port: int,
        data_dir: Path,
        log_file: Path,
    ) -> None:
        self._process = process
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.log_file = log_file

    @property
    def url(self) -> str:
        return f"mongodb://{_client_host(self.host)}:{self.port}"

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server, SIGKILL it after ``timeout`` seconds; safe to call twice.

        A clean stop takes 0.1-4 s. SecantusDB sometimes loses a SIGTERM (its main thread
        blocks in an untimed wait, and a signal landing just before that wait is never
        handled), so while the server still listens the signal is sent again; once the
        port is closed its shutdown has begun, and a second signal would re-enter it.
        SIGKILL loses no committed data (WiredTiger recovers from its log at the next start).
        """
        if self._process.poll() is not None:
            return
        deadline = time.monotonic() + timeout
        _signal_group(self.pid, signal.SIGTERM)
        while True:
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(max(0.0, min(1.0, deadline - time.monotonic())))
                return
            if time.monotonic() >= deadline:
                _signal_group(self.pid, signal.SIGKILL)
                self._process.wait()
                return
            if _tcp_open(_client_host(self.host), self.port):
                _signal_group(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        """``kill -9`` the server, as a crash would (for fault tests and the chaos
        harness); what it acknowledged with a journaled write concern survives."""
        if self._process.poll() is None:
            _signal_group(self.pid, signal.SIGKILL)
        self._process.wait()

    def __enter__(self) -> MongoServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MongoServer(url={self.url!r}, pid={self.pid}, data_dir={str(self.data_dir)!r})"


def start_secantus(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_file: Path | None = None,
    ready_timeout: float = 30.0,
) -> MongoServer:
    """Start SecantusDB on ``data_dir`` and return once it answers a ping.

    ``host`` is an IPv4 address to bind; ``port=None`` picks a free port. The server's
    output is appended to ``log_file`` (default ``data_dir/secantus.log``); its last lines
    are in the error if it fails. Startup takes about one second.
    """
    if importlib.util.find_spec("secantus") is None:
        raise SecantusNotInstalledError(
            f"SecantusDB is not installed for {sys.executable}; install it with {_INSTALL_HINT}"
        )
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = (log_file or data_dir / _LOG_NAME).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    config = data_dir / _CONFIG_NAME
    config.write_text(_CONFIG_TEXT)
    if port is not None and _tcp_open(_client_host(host), port):
        # Otherwise the ping below could reach whatever already listens there.
        raise SecantusStartError(f"cannot start SecantusDB: port {port} is already in use")
    chosen_port = free_port(host) if port is None else port
    command = [
        sys.executable,
        "-m",
        "secantus",
        "--config",
        str(config),
        "--host",
        host,
        "--port",
        str(chosen_port),
        "--storage-path",
        str(data_dir),
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - an argv list, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,
        )
    server = MongoServer(process, host=host, port=chosen_port, data_dir=data_dir, log_file=log_path)
    try:
        _wait_ready(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: MongoServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not server.running:
            raise SecantusStartError(
                f"SecantusDB on port {server.port} exited before it was ready; "
                f"end of {server.log_file}:\n{_log_tail(server.log_file)}"
            )
        if _tcp_open(_client_host(server.host), server.port) and _ping(server.url):
            return
        if time.monotonic() > deadline:
            raise SecantusStartError(
                f"SecantusDB at {server.url} did not answer a ping within {timeout:.0f} s; "
                f"end of {server.log_file}:\n{_log_tail(server.log_file)}"
            )
        time.sleep(0.1)


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _ping(url: str) -> bool:
    client: MongoClient[dict[str, Any]] = MongoClient(
        url, serverSelectionTimeoutMS=2000, connectTimeoutMS=1000
    )
    try:
        with client:
            client.admin.command("ping")
    except PyMongoError:
        return False
    return True


def _client_host(host: str) -> str:
    """Where a client connects when the server binds ``host`` (an IPv4 address)."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - 8192))
            text = log.read().decode(errors="replace")
    except OSError as exc:
        return f"(cannot read the log: {exc})"
    return "\n".join(text.splitlines()[-lines:])
