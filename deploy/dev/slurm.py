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
CUDA_VISIBLE_DEVICES. The devices stay after ``down``: several clusters on one machine
(parallel test runs) share them, and removing them under a running cluster would take its
GPUs away; aliasing /dev/null, they are harmless. Cgroups are off (proctrack/linuxproc, task/none), jobs of root are
allowed, and a node that was down returns to service by itself (ReturnToService=2).
(On a machine run by systemd, installing the packages may also start their own services,
e.g. the system munged; those are the packages' business and are left as they are.)

**Two more nodes** (``up --two-nodes``; infra.py asks for them unless HPO_DEV_SLURM_NODES=1)
make the multi-node layouts run across machines for real: nodes hpo-node1 and hpo-node2
in partition ``duo`` (the one-node partition ``debug`` stays the default, so nothing else
changes), each a slurmd in a network namespace of its own (``ip netns``, a veth pair on
a private bridge, its own address in a 10.213.X.0/24 picked free) and a UTS namespace
with its own hostname, so torch.distributed's ranks meet over a real link between two
hosts; slurmctld listens on the bridge. munge and the filesystem are shared, as on a
cluster; each node's slurmd also has a mount namespace of its own, only so that a hosts
file in DIR naming every node can be bound over its /etc/hosts. If the namespaces cannot
be made, the cluster starts with its one node and says why. Everything is removed by
``down``.
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
    pids: dict[str, int] = field(default_factory=dict)  # munged, slurmctld, slurmd[-NODE]
    devices: list[str] = field(default_factory=list)  # fake GPUs this cluster created
    network: dict[str, str] = field(default_factory=dict)  # bridge, subnet, suffix
    """The private network of the two extra nodes; empty for a one-node cluster."""

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
    ctld_addr = f"{cluster.network['subnet']}.1" if cluster.network else "127.0.0.1"
    settings = {
        "ClusterName": "hpodev",
        "SlurmctldHost": f"{cluster.host}({ctld_addr})",
        "SlurmctldPort": free_port(),
        "SlurmdPort": free_port(),
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "AuthInfo": f"socket={d / 'munge.socket'}",
        "StateSaveLocation": d / "state",
        "SlurmdSpoolDir": d / "spool" / "%n",
        "SlurmctldPidFile": d / "slurmctld.pid",
        "SlurmdPidFile": d / "slurmd-%n.pid",
        "SlurmctldLogFile": d / "slurmctld.log",
        "SlurmdLogFile": d / "slurmd-%n.log",
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
    node = f"CPUs={cpus} RealMemory={real_memory} Gres=gpu:6 State=UNKNOWN"
    lines += [
        f"NodeName={cluster.host} NodeAddr=127.0.0.1 {node}",
        f"PartitionName=debug Nodes={cluster.host} Default=YES MaxTime=INFINITE State=UP",
    ]
    gres = [f"NodeName={cluster.host} Name=gpu File=/dev/fakegpu[0-5]"]
    for name, addr in extra_nodes(cluster).items():
        lines.append(f"NodeName={name} NodeAddr={addr} {node}")
        gres.append(f"NodeName={name} Name=gpu File=/dev/fakegpu[0-5]")
    if cluster.network:
        lines.append(
            f"PartitionName={TWO_NODE_PARTITION} Nodes={','.join(extra_nodes(cluster))}"
            " MaxTime=INFINITE State=UP"
        )
    Path(cluster.conf).write_text("\n".join(lines) + "\n")
    (d / "gres.conf").write_text("\n".join(gres) + "\n")


# --- two more nodes in network namespaces ----------------------------------------------------

TWO_NODE_PARTITION = "duo"
EXTRA_NODES = ("hpo-node1", "hpo-node2")


def extra_nodes(cluster: Cluster) -> dict[str, str]:
    """Node name -> address of the namespaced nodes (none for a one-node cluster)."""
    if not cluster.network:
        return {}
    return {name: f"{cluster.network['subnet']}.{11 + i}" for i, name in enumerate(EXTRA_NODES)}


def namespace(cluster: Cluster, index: int) -> str:
    return f"hpo-{cluster.network['suffix']}-{index + 1}"


def ip(*args: str) -> None:
    result = subprocess.run(
        ["ip", *args],
        env={**os.environ, "PATH": SBIN_PATH},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode:
        raise SlurmUnavailable(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


def free_subnet() -> str:
    """A 10.213.X prefix no route of this machine covers."""
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"],
        env={**os.environ, "PATH": SBIN_PATH},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    for _ in range(50):
        subnet = f"10.213.{secrets.randbelow(254) + 1}"
        if f"{subnet}." not in routes:
            return subnet
    raise SlurmUnavailable("no free 10.213.X.0/24 for the two extra nodes")


def make_network(cluster: Cluster) -> None:
    """A bridge on this host and, per extra node, a network namespace joined to it by a
    veth pair; ``hosts`` in DIR names every node. Recorded before the first step, so
    remove_network() can undo a half-made one."""
    if shutil.which("ip", path=SBIN_PATH) is None:
        raise SlurmUnavailable("the two extra nodes need iproute2 (apt-get install iproute2)")
    suffix = secrets.token_hex(3)
    cluster.network = {"suffix": suffix, "bridge": f"hb{suffix}", "subnet": free_subnet()}
    cluster.save()
    subnet, bridge = cluster.network["subnet"], cluster.network["bridge"]
    ip("link", "add", bridge, "type", "bridge")
    ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
    ip("link", "set", bridge, "up")
    hosts = ["127.0.0.1 localhost", f"{subnet}.1 {cluster.host}"]
    hosts += [f"{addr} {name}" for name, addr in extra_nodes(cluster).items()]
    (Path(cluster.dir) / "hosts").write_text("\n".join(hosts) + "\n")
    for index, (name, addr) in enumerate(extra_nodes(cluster).items()):
        ns, host_end, node_end = (
            namespace(cluster, index),
            f"hv{suffix}{index}",
            f"hn{suffix}{index}",
        )
        ip("netns", "add", ns)
        ip("link", "add", host_end, "type", "veth", "peer", "name", node_end)
        ip("link", "set", node_end, "netns", ns)
        ip("link", "set", host_end, "master", bridge, "up")
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", node_end)
        ip("-n", ns, "link", "set", node_end, "up")
        ip("-n", ns, "link", "set", "lo", "up")


def remove_network(cluster: Cluster) -> None:
    if not cluster.network:
        return
    for index in range(len(EXTRA_NODES)):
        ns = namespace(cluster, index)
        with suppress(SlurmUnavailable):
            ip("netns", "del", ns)  # takes its veth end, and so the pair, with it
    with suppress(SlurmUnavailable):
        ip("link", "del", cluster.network["bridge"])


def spawn_extra_slurmd(cluster: Cluster, index: int, name: str) -> None:
    """slurmd of node ``name`` in its network namespace, under its own hostname, with the
    cluster's hosts file as /etc/hosts (``ip netns exec`` would also remount /sys, hiding
    the cgroup filesystem slurmd wants)."""
    slurmd = shutil.which("slurmd", path=SBIN_PATH) or "slurmd"
    hosts = shlex.quote(str(Path(cluster.dir) / "hosts"))
    inner = (
        f"mount --bind {hosts} /etc/hosts && hostname {name} && "
        f"exec {slurmd} -D -N {name} -f {shlex.quote(cluster.conf)}"
    )
    netns = f"--net=/run/netns/{namespace(cluster, index)}"
    argv = ["nsenter", netns, "unshare", "--mount", "--uts", "/bin/sh", "-c", inner]
    spawn(cluster, f"slurmd-{name}", argv)


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


def node_states(cluster: Cluster) -> list[str]:
    """The state of every node (``idle``, ``down*`` ...), empty when sinfo cannot say."""
    return node_state(cluster).split()


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


def start(directory: Path, *, two_nodes: bool = False) -> Cluster:
    """Start the cluster in ``directory`` (created if needed) and wait until it takes jobs;
    with ``two_nodes`` also the namespaced nodes of partition ``duo``, where possible."""
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
        for sub in ("state", "spool", *(f"spool/{n}" for n in (host, *EXTRA_NODES))):
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
        if two_nodes:
            try:
                make_network(cluster)
            except (SlurmUnavailable, OSError) as exc:
                log(f"one node only, the two-node partition cannot be made here: {exc}")
                remove_network(cluster)
                cluster.network = {}
                cluster.save()
        write_config(cluster)
        spawn(cluster, "slurmctld", ["slurmctld", "-D", "-f", cluster.conf])
        spawn(cluster, "slurmd", ["slurmd", "-D", "-f", cluster.conf])
        for index, name in enumerate(extra_nodes(cluster)):
            spawn_extra_slurmd(cluster, index, name)
        count = 1 + len(extra_nodes(cluster))
        if not wait_until(lambda: node_states(cluster) == ["idle"] * count, 60, interval=0.5):
            logs = "\n".join(
                f"{log_file.name}:\n{tail(log_file)}" for log_file in directory.glob("slurm*.log")
            )
            raise SlurmUnavailable(
                f"nodes not idle within 60 s (states {node_states(cluster) or '?'}); {logs}"
            )
    except BaseException:
        stop(cluster)
        raise
    extra = (
        f", partition {TWO_NODE_PARTITION}: {' '.join(extra_nodes(cluster))}"
        if cluster.network
        else ""
    )
    log(f"Slurm ready: node {host}{extra}, SLURM_CONF={cluster.conf}")
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
    """Stop the daemons this cluster started (jobs first); the fake GPUs stay (module doc)."""
    if alive(cluster.pids.get("slurmctld", 0), cluster.conf):
        with suppress(OSError, subprocess.SubprocessError):
            cancel_jobs(cluster)
    order = [n for n in cluster.pids if n.startswith("slurmd")] + ["slurmctld", "munged"]
    survivors = [
        f"{name} (pid {cluster.pids[name]})"
        for name in order
        if name in cluster.pids and not terminate(cluster.pids[name], cluster.marker(name))
    ]
    remove_network(cluster)
    if survivors:
        raise SlurmUnavailable(f"could not stop {', '.join(survivors)}")


# --- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start a cluster in a new dir, print export lines")
    up_parser.add_argument(
        "--two-nodes", action="store_true", help="also partition duo's two nodes"
    )
    for name in ("down", "status"):
        commands.add_parser(name).add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            directory = Path(tempfile.mkdtemp(prefix="hpo-dev-slurm-"))
            try:
                started = start(directory, two_nodes=args.two_nodes)
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
