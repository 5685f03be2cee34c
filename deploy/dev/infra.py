#!/usr/bin/env python3
"""Start, inspect and stop the servers the test suite needs.

    python deploy/dev/infra.py up       # prints `export HPO_TEST_...=...` lines
    python deploy/dev/infra.py status
    python deploy/dev/infra.py down     # stops only what `up` started
    python deploy/dev/infra.py run -- python -m pytest -x   # up, the command, down

The servers: RabbitMQ (the machine's `rabbitmq-server` on 127.0.0.1:5672, installed and
started only where it is missing or stopped), SecantusDB (MongoDB protocol) and moto's S3
server, both on free ports (or $HPO_DEV_MONGO_PORT, $HPO_DEV_S3_PORT) with their data and
logs in a fresh temporary directory. As root, also a private one-node Slurm cluster
(deploy/dev/slurm.py; exported as HPO_TEST_SLURM_CONF, the path of its slurm.conf); where
it cannot start (not root, no apt-get) `up` goes on without it and the tests marked
`slurm` fail saying why; HPO_DEV_SLURM=0 skips it. Its two extra nodes in network
namespaces (partition `duo`, for the multi-node layouts) come too unless
HPO_DEV_SLURM_NODES=1. `up` and `down` share a state file
(.dev-infra.json in the repository root); `run` keeps its own servers, so it does not
disturb an `up`. As root, also a private one-node Grid Engine cell (deploy/dev/sge.py;
exported as HPO_TEST_SGE_ROOT, its SGE_ROOT), likewise optional; HPO_DEV_SGE=0 skips it.

Run it with the project's Python (.venv/bin/python, which deploy/dev/test.sh creates):
it needs the `shared` package, secantusdb and moto[server] installed there.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

try:
    import sge as dev_sge  # deploy/dev/sge.py, next to this script
    import slurm as dev_slurm  # deploy/dev/slurm.py, next to this script

    from shared.netutil import free_port
    from shared.store.server import start_secantus
except ModuleNotFoundError as exc:
    sys.exit(
        f"infra.py: cannot import {exc.name!r} with {sys.executable}. Run it with the "
        "project's Python (.venv/bin/python, created by deploy/dev/test.sh) or install "
        "the project there: pip install -e '.[demo,dev]'"
    )

DEFAULT_STATE = REPO_ROOT / ".dev-infra.json"
HOST = "127.0.0.1"
AMQP_PORT = 5672
AMQP_URL = f"amqp://guest:guest@{HOST}:{AMQP_PORT}/"
S3_CREDENTIALS = "testing:testing"
ENV_NAMES = {
    "rabbitmq": "HPO_TEST_AMQP_URL",
    "mongo": "HPO_TEST_MONGO_URL",
    "s3": "HPO_TEST_S3_URL",
    "slurm": "HPO_TEST_SLURM_CONF",
    "sge": "HPO_TEST_SGE_ROOT",
}
PROCESS_MARKERS = {"mongo": "secantus", "s3": "moto.server"}
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


class InfraError(Exception):
    """A server could not be started or stopped; the message says what to do."""


@dataclass
class Service:
    name: str
    url: str
    started: bool  # by this tool, so `down` stops it
    pid: int | None = None


@dataclass
class State:
    run_dir: str
    services: list[Service] = field(default_factory=list)

    def exports(self) -> dict[str, str]:
        return {ENV_NAMES[s.name]: s.url for s in self.services}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> State | None:
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(raw["run_dir"], [Service(**s) for s in raw["services"]])


def log(message: str) -> None:
    print(f"infra: {message}", file=sys.stderr, flush=True)


def env_port(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    if not value.isdigit():
        raise InfraError(f"${name} must be a port number, not {value!r}")
    return int(value)


# --- RabbitMQ ---------------------------------------------------------------------------


def amqp_ready(port: int) -> bool:
    """True when the broker answers the AMQP protocol header with connection.start."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.settimeout(5)
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1) == b"\x01"
    except OSError:
        return False


TEST_QUEUE = re.compile(r"^t[0-9a-f]{12}\.hpo\.")
"""Queues the tests declare under their per-test prefix (tests/conftest.py ``unique``)."""


def delete_stale_test_queues() -> None:
    """Delete service queues that earlier test runs left behind (a run killed before its
    clean-up). Each is a quorum queue, a Raft group of its own; hundreds of them make a
    small broker too slow to answer. Needs ``rabbitmqctl`` (the machine's own broker)."""
    ctl = shutil.which("rabbitmqctl", path=SBIN_PATH)
    if ctl is None:
        return
    try:
        listed = subprocess.run(
            [ctl, "list_queues", "--quiet", "--no-table-headers", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        log("rabbitmqctl list_queues did not answer; stale test queues left in place")
        return
    stale = [n.strip() for n in listed.stdout.splitlines() if TEST_QUEUE.match(n.strip())]
    if not stale:
        return
    log(f"deleting {len(stale)} queues left by earlier test runs")

    async def delete() -> None:
        import aio_pika

        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            for name in stale:
                channel = await connection.channel()
                with suppress(aio_pika.exceptions.ChannelClosed):
                    await channel.queue_delete(name)
                if not channel.is_closed:
                    await channel.close()

    asyncio.run(delete())


def ensure_rabbitmq() -> Service:
    """Use the running broker, or install (root only) and start the machine's one."""
    if amqp_ready(AMQP_PORT):
        log(f"RabbitMQ already running at {HOST}:{AMQP_PORT}; it is left running afterwards")
        delete_stale_test_queues()
        return Service("rabbitmq", AMQP_URL, started=False)
    root = os.geteuid() == 0
    if root and port_open(AMQP_PORT):
        raise InfraError(
            f"RabbitMQ listens on {HOST}:{AMQP_PORT} but does not answer the AMQP handshake "
            "(a hung node): restart it (`rabbitmqctl stop; rabbitmq-server -detached`), or, "
            "if it hangs again while recovering queues, stop it and remove its test queues "
            "with `rabbitmqctl delete_queue`"
        )
    if shutil.which("rabbitmq-server", path=SBIN_PATH) is None:
        if not root:
            raise InfraError(
                f"RabbitMQ is not installed and nothing answers on {HOST}:{AMQP_PORT}. "
                "Install and start it as root: "
                "`sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached`"
            )
        log("installing rabbitmq-server with apt-get (a minute or two)")
        apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "rabbitmq-server"]):
            if subprocess.run(command, env=apt_env, stdout=sys.stderr, check=False).returncode:
                raise InfraError(f"`{shlex.join(command)}` failed; see its output above")
        if wait_until(lambda: amqp_ready(AMQP_PORT), timeout=30):
            log("RabbitMQ was started by its package; `down` will stop it")
            return Service("rabbitmq", AMQP_URL, started=True)
    if not root:
        raise InfraError(
            f"RabbitMQ is installed but nothing answers on {HOST}:{AMQP_PORT}; start it as "
            "root: `sudo rabbitmq-server -detached` (or `sudo systemctl start rabbitmq-server`)"
        )
    log("starting RabbitMQ (`rabbitmq-server -detached`)")
    server = shutil.which("rabbitmq-server", path=SBIN_PATH) or "rabbitmq-server"
    result = subprocess.run(
        [server, "-detached"], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode:  # e.g. a node that is still booting: wait for it all the same
        log(f"rabbitmq-server -detached exited {result.returncode}: {result.stderr.strip()}")
    if not wait_until(lambda: amqp_ready(AMQP_PORT), timeout=120):
        raise InfraError(
            f"RabbitMQ did not answer on {HOST}:{AMQP_PORT} within 120 s; "
            "see /var/log/rabbitmq/ and `rabbitmqctl status`"
        )
    log(f"RabbitMQ ready at {HOST}:{AMQP_PORT}; `down` will stop it")
    return Service("rabbitmq", AMQP_URL, started=result.returncode == 0)


def stop_rabbitmq() -> None:
    log("stopping RabbitMQ (`rabbitmqctl stop`)")
    ctl = shutil.which("rabbitmqctl", path=SBIN_PATH) or "rabbitmqctl"
    result = subprocess.run([ctl, "stop"], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode:
        raise InfraError(f"rabbitmqctl stop failed: {result.stderr.strip() or result.stdout}")


# --- SecantusDB and moto ----------------------------------------------------------------


def start_mongo(run_dir: Path) -> Service:
    server = start_secantus(
        run_dir / "mongo",
        port=env_port("HPO_DEV_MONGO_PORT"),
        log_file=run_dir / "secantus.log",
    )
    log(f"SecantusDB ready at {server.url} (pid {server.pid})")
    return Service("mongo", server.url, started=True, pid=server.pid)


def start_s3(run_dir: Path) -> Service:
    if importlib.util.find_spec("moto") is None:
        raise InfraError(f"moto is not installed for {sys.executable}: pip install -e '.[dev]'")
    port = env_port("HPO_DEV_S3_PORT") or free_port()
    log_path = run_dir / "moto.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
            start_new_session=True,
        )
    try:
        answered = wait_until(
            lambda: process.poll() is not None or http_ok(f"http://{HOST}:{port}/"), 30
        )
        if not answered or process.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise InfraError(
                f"moto_server did not start on port {port}; end of {log_path}:\n{tail}"
            )
    except BaseException:
        stop_pid(process.pid, PROCESS_MARKERS["s3"], port)
        raise
    log(f"moto S3 ready at http://{HOST}:{port} (pid {process.pid})")
    return Service("s3", f"s3://{S3_CREDENTIALS}@{HOST}:{port}", started=True, pid=process.pid)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local http
            return bool(response.status == 200)
    except OSError:
        return False


def start_slurm() -> Service | None:
    """The private one-node Slurm, or None (the reason logged) where it cannot run."""
    directory = Path(tempfile.mkdtemp(prefix="hpo-dev-slurm-"))  # munged: not under run_dir
    try:
        two_nodes = os.environ.get("HPO_DEV_SLURM_NODES", "3") != "1"
        cluster = dev_slurm.start(directory, two_nodes=two_nodes)
    except dev_slurm.SlurmUnavailable as exc:
        shutil.rmtree(directory, ignore_errors=True)
        log(f"Slurm not started, so the tests marked `slurm` will fail: {exc}")
        return None
    return Service("slurm", cluster.conf, started=True, pid=cluster.pids["slurmctld"])


def stop_slurm(service: Service) -> None:
    directory = Path(service.url).parent
    cluster = dev_slurm.Cluster.load(directory)
    if cluster is not None:
        dev_slurm.stop(cluster)
    shutil.rmtree(directory, ignore_errors=True)


def start_sge() -> Service | None:
    """The private one-node Grid Engine, or None (the reason logged) where it cannot run."""
    directory = Path(tempfile.mkdtemp(prefix="hpo-dev-sge-"))
    try:
        cell = dev_sge.start(directory)
    except dev_sge.SgeUnavailable as exc:
        shutil.rmtree(directory, ignore_errors=True)
        log(f"Grid Engine not started, so the tests marked `sge` will fail: {exc}")
        return None
    return Service("sge", cell.root, started=True, pid=cell.pids["sge_qmaster"])


def stop_sge(service: Service) -> None:
    cell = dev_sge.Cell.load(Path(service.url))
    if cell is not None:
        dev_sge.stop(cell)
    shutil.rmtree(service.url, ignore_errors=True)


# --- processes ----------------------------------------------------------------------------


def wait_until(ready: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def process_alive(pid: int, marker: str) -> bool:
    """True if `pid` runs and its command line contains `marker` (guards against pid reuse)."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaps it if it is our own exited child
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and marker.encode() in cmdline


def stop_pid(pid: int, marker: str, port: int, timeout: float = 10) -> None:
    """SIGTERM the process group `pid` leads, SIGKILL it after `timeout` seconds.

    SecantusDB can lose a SIGTERM (see shared/store/server.py), so it is sent again while
    the server still listens on `port`.
    """

    def gone() -> bool:
        return not process_alive(pid, marker)

    deadline = time.monotonic() + timeout
    if gone():
        return
    signal_group(pid, signal.SIGTERM)
    while not wait_until(gone, 1.0, interval=0.05):
        if time.monotonic() > deadline:
            signal_group(pid, signal.SIGKILL)
            if wait_until(gone, 5.0, interval=0.05):
                return
            raise InfraError(f"process {pid} ({marker}) survived SIGKILL")
        if port_open(port):
            signal_group(pid, signal.SIGTERM)


def signal_group(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, sig)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def service_port(service: Service) -> int:
    port = urlsplit(service.url).port
    assert port is not None, service.url
    return port


def service_alive(service: Service) -> bool:
    if service.name == "rabbitmq":
        return amqp_ready(AMQP_PORT)
    if service.name == "slurm":
        cluster = dev_slurm.Cluster.load(Path(service.url).parent)
        return cluster is not None and dev_slurm.running(cluster)
    if service.name == "sge":
        cell = dev_sge.Cell.load(Path(service.url))
        return cell is not None and dev_sge.running(cell)
    return service.pid is not None and process_alive(service.pid, PROCESS_MARKERS[service.name])


# --- commands -----------------------------------------------------------------------------


def up(state_path: Path | None) -> State:
    """Start the servers, or reuse those of `state_path` if they all still run."""
    if state_path is not None:
        existing = State.load(state_path)
        if existing is not None:
            if all(service_alive(s) for s in existing.services):
                log(f"already up (state in {state_path})")
                return existing
            log(f"{state_path} is stale; stopping what is left of it")
            down(existing, state_path)
    run_dir = Path(tempfile.mkdtemp(prefix="hpo-dev-infra-"))
    path = state_path or run_dir / "state.json"
    state = State(str(run_dir))
    try:
        for start in (ensure_rabbitmq, lambda: start_mongo(run_dir), lambda: start_s3(run_dir)):
            state.services.append(start())
            state.save(path)
        slurm = start_slurm() if os.environ.get("HPO_DEV_SLURM", "1") != "0" else None
        if slurm is not None:
            state.services.append(slurm)
            state.save(path)
        sge = start_sge() if os.environ.get("HPO_DEV_SGE", "1") != "0" else None
        if sge is not None:
            state.services.append(sge)
            state.save(path)
    except BaseException:
        down(state, path)
        raise
    return state


def down(state: State, state_path: Path | None) -> None:
    """Stop, in reverse order, what `up` started, then delete its files."""
    failures = []
    for service in reversed(state.services):
        if not service.started:
            continue
        try:
            if service.name == "rabbitmq":
                stop_rabbitmq()
            elif service.name == "slurm":
                stop_slurm(service)
            elif service.name == "sge":
                stop_sge(service)
            elif service.pid is not None:
                stop_pid(service.pid, PROCESS_MARKERS[service.name], service_port(service))
        except (
            InfraError,
            dev_slurm.SlurmUnavailable,
            dev_sge.SgeUnavailable,
            OSError,
            subprocess.SubprocessError,
        ) as exc:
            failures.append(f"{service.name}: {exc}")
    shutil.rmtree(state.run_dir, ignore_errors=True)
    if state_path is not None:
        state_path.unlink(missing_ok=True)
    if failures:
        raise InfraError("could not stop everything:\n  " + "\n  ".join(failures))


def print_exports(state: State) -> None:
    for name, value in state.exports().items():
        print(f"export {name}={shlex.quote(value)}")


def cmd_up(args: argparse.Namespace) -> int:
    print_exports(up(args.state))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state = State.load(args.state)
    if state is None:
        log(f"nothing to stop (no {args.state})")
        return 0
    down(state, args.state)
    log("down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = State.load(args.state)
    if state is None:
        log(f"not up (no {args.state})")
        return 1
    healthy = True
    for service in state.services:
        alive = service_alive(service)
        healthy &= alive
        owner = "started by up" if service.started else "not ours"
        pid = f" pid {service.pid}" if service.pid else ""
        print(f"{service.name:9} {'up' if alive else 'DOWN':5} {service.url}{pid} ({owner})")
    return 0 if healthy else 1


def cmd_run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise InfraError("run needs a command: infra.py run -- python -m pytest")
    received: list[int] = []

    def interrupt(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    state: State | None = None
    try:
        state = up(None)  # private servers: never touches an `up` state file
        env = {**os.environ, **state.exports()}
        log(f"running {shlex.join(command)}")
        try:
            child = subprocess.Popen(command, env=env)
        except OSError as exc:
            log(f"cannot run {command[0]!r}: {exc}")
            return 127
        try:
            code = child.wait()
        except KeyboardInterrupt:
            code = stop_child(child, received)
        return code if code >= 0 else 128 - code
    except KeyboardInterrupt:
        return 128 + (received[-1] if received else signal.SIGINT)
    finally:
        if state is not None:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not leave orphans
            down(state, None)


def stop_child(child: subprocess.Popen[bytes], received: list[int]) -> int:
    """After Ctrl-C the child has had SIGINT from the terminal; forward other signals."""
    for sig in received:
        child.send_signal(sig)
    try:
        child.wait(15)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    return 128 + (received[-1] if received else signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE,
        help=f"state file of up/down/status (default: {DEFAULT_STATE.name} in the repository)",
    )
    commands = parser.add_subparsers(dest="name", required=True)
    commands.add_parser("up", help="start the servers and print export lines").set_defaults(
        func=cmd_up
    )
    commands.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    commands.add_parser("status", help="show the servers of the state file").set_defaults(
        func=cmd_status
    )
    run = commands.add_parser("run", help="up, run a command with HPO_TEST_* set, down")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    run.set_defaults(func=cmd_run)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except InfraError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
