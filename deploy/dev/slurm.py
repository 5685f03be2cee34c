#!/usr/bin/env python3
"""A real one-node Slurm cluster for the tests, private to one directory.

    sudo python3 deploy/dev/slurm.py up         # starts it; prints export lines and its DIR
    sudo python3 deploy/dev/slurm.py status DIR
    sudo python3 deploy/dev/slurm.py down DIR   # stops what `up` started, deletes DIR

deploy/dev/infra.py calls start() and stop() so that `infra.py up|run|down` (and with it
deploy/dev/test.sh) bring Slurm up with the other servers and export HPO_TEST_SLURM_CONF,
the path of the cluster's slurm.conf; Slurm's commands find the cluster through
SLURM_CONF=<that path>.

It needs root and Debian's packages (installed with apt-get when missing: slurmctld,
slurmd, slurm-client, munge). Nothing is written to /etc and the machine's own munge and
Slurm, if any, are left alone: the cluster runs its own munged (fresh key, own socket)
and its own slurmctld and slurmd on free ports, with config, state, spool and logs in
DIR. The node is this host (`hostname -s`) with nproc CPUs, half the memory, and six
fake GPUs, so GPU requests are scheduled for real: /dev/fakegpu0..5 are created as
character devices aliasing /dev/null (1:3), because Slurm 22.05 drops plain files named
in gres.conf ("is not a valid character or block device") and then sets no
CUDA_VISIBLE_DEVICES. Cgroups are off (proctrack/linuxproc, task/none), jobs of root are
allowed, and a node that was down returns to service by itself (ReturnToService=2).
(On a machine run by systemd, installing the packages may also start their own services,
e.g. the system munged; those are the packages' business and are left as they are.)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
COMMANDS = ["slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "munged"]
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
FAKE_GPUS = [f"/dev/fakegpu{i}" for i in range(6)]
STATE_FILE = "cluster.json"
HOW_TO = "run it as root on Debian: sudo python3 deploy/dev/slurm.py up (or deploy/dev/test.sh)"


class SlurmUnavailable(Exception):
    """Slurm cannot be started here; the message says why and what to do."""


@dataclass
class Cluster:
    dir: str
    conf: str
    host: str
    pids: dict[str, int] = field(default_factory=dict)  # munged, slurmctld, slurmd
    devices: list[str] = field(default_factory=list)  # fake GPUs this cluster created

    def save(self) -> None:
        (Path(self.dir) / STATE_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Cluster | None:
        path = directory / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": self.conf, "PATH": SBIN_PATH}

    def marker(self, name: str) -> str:
        """What the daemon's command line contains (guards against pid reuse)."""
        return str(Path(self.dir) / "munge.socket") if name == "munged" else self.conf


def log(message: str) -> None:
    print(f"slurm: {message}", file=sys.stderr, flush=True)


def wait_until(ready: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def alive(pid: int, marker: str) -> bool:
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaps our own exited child
    try:
        for _ in range(50):  # a process that has just exec'd shows an empty cmdline briefly
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if cmdline or state == "Z":
                break
            time.sleep(0.01)
    except OSError:
        return False
    return state != "Z" and marker.encode() in cmdline


def tail(path: Path, lines: int = 15) -> str:
    with suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


# --- preparing the machine ------------------------------------------------------------------


def ensure_installed() -> None:
    def missing() -> list[str]:
        return [c for c in COMMANDS if shutil.which(c, path=SBIN_PATH) is None]

    if not missing():
        return
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"{', '.join(missing())} missing and no apt-get to install them")
    log(f"installing {' '.join(PACKAGES)} with apt-get (a minute or two)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        if subprocess.run(command, env=env, stdout=sys.stderr, check=False).returncode:
            raise SlurmUnavailable(f"`{shlex.join(command)}` failed; see its output above")
    if missing():
        raise SlurmUnavailable(f"still missing after apt-get: {', '.join(missing())}")


def make_fake_gpus() -> list[str]:
    """Create the fake GPU devices that do not exist yet; return those created."""
    created = []
    for path in FAKE_GPUS:
        with suppress(FileNotFoundError):
            if stat.S_ISCHR(os.stat(path).st_mode):
                continue
            os.unlink(path)  # a plain file (older set-ups touched them): replace it
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except OSError as exc:
            log(f"cannot mknod {path} ({exc}): a plain file, so jobs get no CUDA_VISIBLE_DEVICES")
            Path(path).touch()
        created.append(path)
    return created


def write_config(cluster: Cluster) -> None:
    d = Path(cluster.dir)
    cpus = len(os.sched_getaffinity(0))
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    real_memory = max(256, mem_kb // 1024 // 2)
    settings = {
        "ClusterName": "hpodev",
        "SlurmctldHost": f"{cluster.host}(127.0.0.1)",
        "SlurmctldPort": free_port(),
        "SlurmdPort": free_port(),
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "AuthInfo": f"socket={d / 'munge.socket'}",
        "StateSaveLocation": d / "state",
        "SlurmdSpoolDir": d / "spool",
        "SlurmctldPidFile": d / "slurmctld.pid",
        "SlurmdPidFile": d / "slurmd.pid",
        "SlurmctldLogFile": d / "slurmctld.log",
        "SlurmdLogFile": d / "slurmd.log",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "JobCompType": "jobcomp/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core",  # memory not consumable: jobs need no --mem
        "GresTypes": "gpu",
        "ReturnToService": 2,
        "DisableRootJobs": "NO",
        "MpiDefault": "none",
        "KillWait": 5,
        "SlurmdParameters": "config_overrides",  # trust the counts below, not the probe
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines += [
        f"NodeName={cluster.host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={real_memory}"
        " Gres=gpu:6 State=UNKNOWN",
        f"PartitionName=debug Nodes={cluster.host} Default=YES MaxTime=INFINITE State=UP",
    ]
    Path(cluster.conf).write_text("\n".join(lines) + "\n")
    (d / "gres.conf").write_text(f"NodeName={cluster.host} Name=gpu File=/dev/fakegpu[0-5]\n")


# --- daemons --------------------------------------------------------------------------------


def spawn(cluster: Cluster, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    binary = shutil.which(argv[0], path=SBIN_PATH) or argv[0]
    with (Path(cluster.dir) / f"{name}.out").open("ab") as out:
        process = subprocess.Popen(
            [binary, *argv[1:]],
            env=cluster.env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster.pids[name] = process.pid
    cluster.save()
    return process


def node_state(cluster: Cluster) -> str:
    result = subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format=%T"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def start(directory: Path) -> Cluster:
    """Start the cluster in ``directory`` (created if needed) and wait until it takes jobs."""
    if os.geteuid() != 0:
        raise SlurmUnavailable(
            f"a test Slurm needs root (slurmd runs jobs as their users); {HOW_TO}"
        )
    ensure_installed()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # munged wants its socket's directory searchable by all
    host = socket.gethostname().split(".")[0]
    cluster = Cluster(str(directory), str(directory / "slurm.conf"), host)
    cluster.save()
    try:
        for sub in ("state", "spool"):
            (directory / sub).mkdir(exist_ok=True)
        key = directory / "munge.key"
        with os.fdopen(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(secrets.token_bytes(1024))
        munged = spawn(
            cluster,
            "munged",
            [
                "munged",
                "--foreground",
                f"--socket={directory / 'munge.socket'}",
                f"--key-file={key}",
                f"--pid-file={directory / 'munged.pid'}",
                f"--seed-file={directory / 'munged.seed'}",
                f"--log-file={directory / 'munged.log'}",
            ],
        )
        socket_path = directory / "munge.socket"
        wait_until(lambda: socket_path.exists() or munged.poll() is not None, 15)
        if not socket_path.exists():
            raise SlurmUnavailable(f"munged did not start:\n{tail(directory / 'munged.out')}")
        cluster.devices = make_fake_gpus()
        write_config(cluster)
        spawn(cluster, "slurmctld", ["slurmctld", "-D", "-f", cluster.conf])
        spawn(cluster, "slurmd", ["slurmd", "-D", "-f", cluster.conf])
        if not wait_until(lambda: node_state(cluster) == "idle", 60, interval=0.5):
            raise SlurmUnavailable(
                f"node {host} not idle within 60 s (state {node_state(cluster) or '?'}); "
                f"slurmctld.log:\n{tail(directory / 'slurmctld.log')}\n"
                f"slurmd.log:\n{tail(directory / 'slurmd.log')}"
            )
    except BaseException:
        stop(cluster)
        raise
    log(f"one-node Slurm ready: node {host}, SLURM_CONF={cluster.conf}")
    return cluster


def running(cluster: Cluster) -> bool:
    return bool(cluster.pids) and all(alive(p, cluster.marker(n)) for n, p in cluster.pids.items())


def cancel_jobs(cluster: Cluster) -> None:
    """Cancel every job of this (private) cluster and give them a moment to end."""

    def active() -> list[str]:
        result = subprocess.run(
            ["squeue", "--noheader", "--format=%i"],
            env=cluster.env(),
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        return result.stdout.split() if result.returncode == 0 else []

    jobs = active()
    if jobs:
        log(f"cancelling {len(jobs)} job(s) left in the test cluster")
        subprocess.run(["scancel", *jobs], env=cluster.env(), capture_output=True, check=False)
        wait_until(lambda: not active(), 15, interval=0.5)


def terminate(pid: int, marker: str) -> bool:
    """SIGTERM the session ``pid`` leads, SIGKILL it after 15 s; True once it is gone."""

    def gone() -> bool:
        return not alive(pid, marker)

    for sig, patience in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if gone():
            return True
        with suppress(ProcessLookupError):
            os.killpg(pid, sig)
        if wait_until(gone, patience, interval=0.1):
            return True
    return False


def stop(cluster: Cluster) -> None:
    """Stop the daemons this cluster started (jobs first), remove its fake GPUs."""
    if alive(cluster.pids.get("slurmctld", 0), cluster.conf):
        with suppress(OSError, subprocess.SubprocessError):
            cancel_jobs(cluster)
    survivors = [
        f"{name} (pid {cluster.pids[name]})"
        for name in ("slurmd", "slurmctld", "munged")
        if name in cluster.pids and not terminate(cluster.pids[name], cluster.marker(name))
    ]
    for path in cluster.devices:
        with suppress(FileNotFoundError):
            os.unlink(path)
    cluster.devices = []
    if survivors:
        raise SlurmUnavailable(f"could not stop {', '.join(survivors)}")


# --- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start a cluster in a new directory, print export lines")
    for name in ("down", "status"):
        commands.add_parser(name).add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            directory = Path(tempfile.mkdtemp(prefix="hpo-dev-slurm-"))
            try:
                started = start(directory)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            print(f"export SLURM_CONF={shlex.quote(started.conf)}")
            print(f"export HPO_TEST_SLURM_CONF={shlex.quote(started.conf)}")
            print(f"# stop with: python3 deploy/dev/slurm.py down {shlex.quote(started.dir)}")
            return 0
        cluster = Cluster.load(args.dir)
        if cluster is None:
            log(f"no cluster in {args.dir}")
            return 1
        if args.command == "status":
            up = running(cluster)
            print(f"{'up' if up else 'DOWN'} {cluster.conf} {node_state(cluster) if up else ''}")
            return 0 if up else 1
        stop(cluster)
        shutil.rmtree(args.dir, ignore_errors=True)
        log("down")
        return 0
    except SlurmUnavailable as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
