"""A private RabbitMQ node: its own name, ports, data, logs and cookie, in one directory.

The machine's broker (127.0.0.1:5672) is shared by every test run on the machine; a test
or the chaos harness that kills RabbitMQ must kill a broker of its own. This starts
Debian's RabbitMQ (the `rabbitmq-server` script below /usr/lib/rabbitmq, run directly so
that it does not switch to the `rabbitmq` user) with:

* RABBITMQ_NODENAME `hpo-<random>@localhost`, RABBITMQ_NODE_PORT and RABBITMQ_DIST_PORT
  free ports on 127.0.0.1 (never 5672 or 25672);
* RABBITMQ_MNESIA_BASE, RABBITMQ_LOG_BASE, RABBITMQ_CONFIG_FILE,
  RABBITMQ_ENABLED_PLUGINS_FILE (no plugins), RABBITMQ_PID_FILE and HOME (so its own
  Erlang cookie) under the directory, and RABBITMQ_CONF_ENV_FILE pointing at an empty
  file, so /etc/rabbitmq/rabbitmq-env.conf does not rename it.

The node runs in a process group of its own: `kill()` is a `kill -9` of the whole node,
and `start()` again boots it on the same data (durable queues and persistent messages
come back). A boot takes 5-15 s here (more under load).

    node = RabbitNode(Path("/tmp/x")); node.start(); node.url; node.kill(); node.start()
    node.stop()
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from contextlib import suppress
from pathlib import Path

HOST = "127.0.0.1"
SERVER_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
SHARED_PORTS = frozenset({5672, 25672})


class RabbitNodeError(RuntimeError):
    """The node could not be started or stopped; the message says why."""


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in SHARED_PORTS:
            return port


def amqp_ready(port: int) -> bool:
    """True when the node answers the AMQP protocol header with connection.start."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.settimeout(5)
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1) == b"\x01"
    except OSError:
        return False


class RabbitNode:
    """One private node; its name and ports are kept in ``node.json`` in the directory,
    so that a restart (even by another process) comes back at the same address."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        state = self.directory / "node.json"
        if state.exists():
            saved = json.loads(state.read_text())
        else:
            saved = {
                "name": f"hpo-{secrets.token_hex(4)}@localhost",
                "port": free_port(),
                "dist_port": free_port(),
            }
            state.write_text(json.dumps(saved))
        self.name: str = saved["name"]
        self.port: int = saved["port"]
        self.dist_port: int = saved["dist_port"]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{self.port}/"

    @property
    def pid(self) -> int | None:
        """The process group of the running node (the script and its Erlang VM)."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def env(self) -> dict[str, str]:
        d = self.directory
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(d),
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": HOST,
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, ready_timeout: float = 300.0) -> None:
        """Boot the node (again, on the same data) and return once it speaks AMQP."""
        if self.running:
            return
        if not SERVER_SCRIPT.exists():
            raise RabbitNodeError(
                f"{SERVER_SCRIPT} is missing: install Debian's RabbitMQ "
                "(apt-get install -y rabbitmq-server)"
            )
        if amqp_ready(self.port):
            raise RabbitNodeError(f"something already answers AMQP on port {self.port}")
        d = self.directory
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {HOST}:{self.port}\n"
            "loopback_users.guest = true\n"
            "log.console = false\n"
        )
        (d / "advanced.config").write_text("[].\n")
        (d / "enabled_plugins").write_text("[].\n")
        (d / "rabbitmq-env.conf").write_text("")
        with (d / "server.out").open("ab") as out:
            self._process = subprocess.Popen(  # noqa: S603 - a fixed argv, no shell
                [str(SERVER_SCRIPT)],
                env=self.env(),
                cwd=d,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + ready_timeout
        while not amqp_ready(self.port):
            if self._process.poll() is not None:
                raise RabbitNodeError(
                    f"RabbitMQ node {self.name} exited with {self._process.returncode}; "
                    f"end of {d / 'server.out'}:\n{_tail(d / 'server.out')}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RabbitNodeError(
                    f"RabbitMQ node {self.name} did not answer on port {self.port} within "
                    f"{ready_timeout:.0f} s; see {d / 'log'}"
                )
            time.sleep(0.2)

    def kill(self) -> None:
        """``kill -9`` the whole node, as a crash would."""
        if self._process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._process = None

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node cleanly (rabbitmqctl stop), killing it if that does not end it."""
        if not self.running:
            self._process = None
            return
        assert self._process is not None
        ctl = shutil.which("rabbitmqctl", path="/usr/lib/rabbitmq/bin:/usr/sbin:/usr/bin")
        if ctl is not None:
            with suppress(subprocess.SubprocessError, OSError):
                subprocess.run(  # noqa: S603 - a fixed argv, no shell
                    [ctl, "-n", self.name, "stop"],
                    env=self.env(),
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def settle(self) -> None:
        """A clean restart, so that every queue declared so far survives a ``kill -9``.

        RabbitMQ (3.10 here, and later versions too) can lose a quorum queue declared a
        moment before the node is killed: its Raft member is not yet registered on disk,
        and after the restart the queue exists with no leader, for ever ("leader not
        known"); every consume on it times out and closes the connection. A real broker
        declares its queues long before it crashes; a test that kills the node right
        after the services declared theirs settles it first."""
        self.stop()
        self.start()

    def remove(self) -> None:
        """Stop the node and delete its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read it: {exc})"
