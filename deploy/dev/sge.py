#!/usr/bin/env python3
"""A real one-node Grid Engine cell for the tests, private to one directory.

    sudo python3 deploy/dev/sge.py up          # starts it; prints export lines and its DIR
    sudo python3 deploy/dev/sge.py status DIR
    sudo python3 deploy/dev/sge.py down DIR    # stops what `up` started, deletes DIR

deploy/dev/infra.py calls start() and stop(), so `infra.py up|run|down` (and with it
deploy/dev/test.sh) bring Grid Engine up with the other servers and export
HPO_TEST_SGE_ROOT, the cell's SGE_ROOT; its common/settings.sh has the variables the
client commands need (SGE_ROOT, SGE_CELL, SGE_QMASTER_PORT, SGE_EXECD_PORT).

It needs root and Debian's packages gridengine-master, gridengine-exec and
gridengine-client (Son of Grid Engine 8.1.9; installed with apt-get when missing). The
cell the packages set up for the machine (/var/lib/gridengine/default) is left alone:
this one has its own SGE_ROOT in DIR (the package's binaries linked in), cell `hpodev`
with classic (flat-file) spooling in DIR, an sge_qmaster and an sge_execd on free ports,
and a host alias file, because on test machines 127.0.0.1 resolves back to `localhost`
while the host calls itself otherwise, which Grid Engine refuses as a spoofed client.
The node is this host with nproc slots in queue all.q, nproc more in queue gpu.q (for
the compute-class tests: the scheduler sorts queues by sequence number, so a job that
names no queue runs in all.q while it has room, one that asks `-q gpu.q` there), and six
GPUs as the consumable `gpu` for the host (Grid Engine counts them; it assigns no device
ids); root may run jobs (min_uid 0),
`qdel` sends SIGTERM (the queue's terminate_method) so the agent can stop its payload,
and the scheduler runs every second.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

PACKAGES = ["gridengine-master", "gridengine-exec", "gridengine-client"]
PACKAGE_ROOT = Path("/var/lib/gridengine")
LIBEXEC = Path("/usr/lib/gridengine")
SHARE = Path("/usr/share/gridengine")
CELL = "hpodev"
GPUS = 6
STATE_FILE = "cell.json"
HOW_TO = "run it as root on Debian: sudo python3 deploy/dev/sge.py up (or deploy/dev/test.sh)"

PE_SMP = """\
pe_name            smp
slots              9999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    $pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
"""

QUEUES = {"all.q": 0, "gpu.q": 10}
"""The queues, by name, and their sequence numbers (lower is tried first)."""

QUEUE = """\
qname                 {name}
hostlist              {host}
seq_no                {seq_no}
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               smp
rerun                 FALSE
slots                 {slots}
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      posix_compliant
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      SIGTERM
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
""" + "".join(
    f"{limit:<22}INFINITY\n"
    for kind in ("rt", "cpu", "fsize", "data", "stack", "core", "rss", "vmem")
    for limit in (f"s_{kind}", f"h_{kind}")
)

EXEC_HOST = """\
hostname              {host}
load_scaling          NONE
complex_values        gpu={gpus}
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
"""

COMPLEXES = [
    "gpu                 gpu        INT         <=    YES         YES        0        0",
    "exclusive           excl       BOOL        EXCL  YES         YES        0        1000",
]


class SgeUnavailable(Exception):
    """Grid Engine cannot be started here; the message says why and what to do."""


@dataclass
class Cell:
    root: str
    host: str
    qmaster_port: int
    execd_port: int
    pids: dict[str, int] = field(default_factory=dict)  # sge_qmaster, sge_execd

    def save(self) -> None:
        (Path(self.root) / STATE_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Cell | None:
        path = directory / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None

    @property
    def common(self) -> Path:
        return Path(self.root) / CELL / "common"

    @property
    def spool(self) -> Path:
        return Path(self.root) / "spool"

    def variables(self) -> dict[str, str]:
        return {
            "SGE_ROOT": self.root,
            "SGE_CELL": CELL,
            "SGE_QMASTER_PORT": str(self.qmaster_port),
            "SGE_EXECD_PORT": str(self.execd_port),
        }

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.variables(), **extra}


def log(message: str) -> None:
    print(f"sge: {message}", file=sys.stderr, flush=True)


def wait_until(ready: Callable[[], bool], timeout: float, interval: float = 0.3) -> bool:
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
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return state != "Z" and f"SGE_ROOT={marker}".encode() in environ


def tail(path: Path, lines: int = 15) -> str:
    with suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def ensure_installed() -> None:
    if (LIBEXEC / "sge_qmaster").exists() and shutil.which("qsub"):
        return
    if shutil.which("apt-get") is None:
        raise SgeUnavailable("Grid Engine is not installed and there is no apt-get to install it")
    log(f"installing {' '.join(PACKAGES)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        if subprocess.run(command, env=env, stdout=sys.stderr, check=False).returncode:
            raise SgeUnavailable(f"`{shlex.join(command)}` failed; see its output above")


def tool(cell: Cell, argv: list[str], stdin: str | None = None) -> str:
    """Run a Grid Engine command against the cell; SgeUnavailable when it fails."""
    result = subprocess.run(
        argv,
        env=cell.env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cell.root,
    )
    if result.returncode:
        said = (result.stderr + result.stdout).strip()
        raise SgeUnavailable(f"`{shlex.join(argv)}` failed: {said}")
    return result.stdout


def loopback_names(host: str) -> list[str]:
    """Names the loopback address resolves to, which must count as this host."""
    names = {"localhost"}
    with suppress(OSError):
        name, aliases, _ = socket.gethostbyaddr("127.0.0.1")
        names.update([name, *aliases])
    names.discard(host)
    return sorted(names)


def write_cell(cell: Cell) -> None:
    """The private SGE_ROOT: the package's binaries, the cell's bootstrap and spool."""
    root = Path(cell.root)
    for sub in ("bin", "lib", "util", "utilbin"):
        (root / sub).symlink_to(PACKAGE_ROOT / sub)
    cell.common.mkdir(parents=True)
    (cell.spool / "qmaster").mkdir(parents=True)
    (cell.spool / "execd").mkdir()
    spooling = f"{cell.common};{cell.spool / 'qmaster'}"
    (cell.common / "bootstrap").write_text(
        "# Version: 8.1.9\n"
        "admin_user              none\n"
        "default_domain          none\n"
        "ignore_fqdn             true\n"
        "spooling_method         classic\n"
        "spooling_lib            libspoolc\n"
        f"spooling_params         {spooling}\n"
        f"binary_path             {LIBEXEC}\n"
        f"qmaster_spool_dir       {cell.spool / 'qmaster'}\n"
        "security_mode           none\n"
        "listener_threads        2\n"
        "worker_threads          2\n"
        "scheduler_threads       1\n"
        "jvm_threads             0\n"
    )
    (cell.common / "act_qmaster").write_text(f"{cell.host}\n")
    (cell.common / "host_aliases").write_text(
        " ".join([cell.host, *loopback_names(cell.host)]) + "\n"
    )
    settings = "".join(f"{k}={shlex.quote(v)}; export {k}\n" for k, v in cell.variables().items())
    (cell.common / "settings.sh").write_text(settings)
    tool(cell, [str(LIBEXEC / "spoolinit"), "classic", "libspoolc", spooling, "init"])
    overrides = {
        "execd_spool_dir": str(cell.spool / "execd"),
        "min_uid": "0",
        "min_gid": "0",
        "load_report_time": "00:00:05",
        "max_unheard": "00:01:00",
        "execd_params": "ENABLE_ADDGRP_KILL=TRUE",
    }
    lines = []
    for line in (SHARE / "default-configuration").read_text().splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() else ""
        lines.append(f"{key} {overrides.pop(key)}" if key in overrides else line)
    lines += [f"{key} {value}" for key, value in overrides.items()]
    configuration = root / "configuration.template"
    configuration.write_text("\n".join(lines) + "\n")
    spooldefaults = str(LIBEXEC / "spooldefaults")
    tool(cell, [spooldefaults, "configuration", str(configuration)])
    tool(cell, [spooldefaults, "complexes", str(SHARE / "util/resources/centry")])
    tool(cell, [spooldefaults, "usersets", str(SHARE / "util/resources/usersets")])
    tool(cell, [spooldefaults, "managers", "root"])
    hosts = root / "hosts.template"
    hosts.mkdir()
    (hosts / cell.host).write_text(f"hostname {cell.host}\n")
    tool(cell, [spooldefaults, "adminhosts", str(hosts)])
    tool(cell, [spooldefaults, "submithosts", str(hosts)])


def spawn(cell: Cell, name: str) -> subprocess.Popen[bytes]:
    """Start a daemon in the foreground (SGE_ND), in a session of its own."""
    with (Path(cell.root) / f"{name}.out").open("ab") as out:
        process = subprocess.Popen(
            [str(LIBEXEC / name)],
            env=cell.env(SGE_ND="1"),
            cwd=cell.root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cell.pids[name] = process.pid
    cell.save()
    return process


def configure(cell: Cell) -> None:
    """Resources, scheduler, execution host, parallel environment and queue."""
    root = Path(cell.root)
    complexes = tool(cell, ["qconf", "-sc"]).rstrip("\n") + "\n" + "\n".join(COMPLEXES) + "\n"
    (root / "complexes.txt").write_text(complexes)
    tool(cell, ["qconf", "-Mc", str(root / "complexes.txt")])
    scheduler = []
    for line in tool(cell, ["qconf", "-ssconf"]).splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() else ""
        fast = {
            "schedule_interval": "0:0:1",
            "flush_submit_sec": "1",
            "flush_finish_sec": "1",
            "queue_sort_method": "seqno",
        }
        scheduler.append(f"{key} {fast[key]}" if key in fast else line)
    (root / "scheduler.txt").write_text("\n".join(scheduler) + "\n")
    tool(cell, ["qconf", "-Msconf", str(root / "scheduler.txt")])
    slots = len(os.sched_getaffinity(0))
    files = {
        "exechost.txt": (["-Ae"], EXEC_HOST.format(host=cell.host, gpus=GPUS)),
        "pe.txt": (["-Ap"], PE_SMP),
        **{
            f"queue-{name}.txt": (
                ["-Aq"],
                QUEUE.format(name=name, host=cell.host, slots=slots, seq_no=seq_no),
            )
            for name, seq_no in QUEUES.items()
        },
    }
    for name, (option, text) in files.items():
        (root / name).write_text(text)
        tool(cell, ["qconf", *option, str(root / name)])


def queue_ready(cell: Cell) -> bool:
    """Every queue's instance is known to have an execution daemon (no ``u`` state)."""
    return all(_instance_ready(cell, name) for name in QUEUES)


def _instance_ready(cell: Cell, queue: str) -> bool:
    try:
        listing = tool(cell, ["qstat", "-f", "-q", queue])
    except (SgeUnavailable, subprocess.SubprocessError):
        return False
    for line in listing.splitlines():
        fields = line.split()
        if fields and fields[0] == f"{queue}@{cell.host}":
            return len(fields) == 5 and fields[3] != "-NA-"  # name qtype r/u/t load arch
    return False


def start(directory: Path) -> Cell:
    """Start the cell in ``directory`` (created) and wait until its queue takes jobs."""
    if os.geteuid() != 0:
        raise SgeUnavailable(
            f"a test Grid Engine needs root (execd runs jobs as their users); {HOW_TO}"
        )
    ensure_installed()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    host = socket.gethostname().split(".")[0]
    cell = Cell(str(directory), host, free_port(), free_port())
    cell.save()
    try:
        write_cell(cell)
        spawn(cell, "sge_qmaster")
        if not wait_until(lambda: _answers(cell), 60):
            raise SgeUnavailable(
                f"sge_qmaster did not answer within 60 s:\n"
                f"{tail(cell.spool / 'qmaster' / 'messages')}\n{tail(directory / 'sge_qmaster.out')}"
            )
        configure(cell)
        spawn(cell, "sge_execd")
        if not wait_until(lambda: queue_ready(cell), 90, interval=1):
            raise SgeUnavailable(
                f"queues {', '.join(QUEUES)} on {host} not ready within 90 s; "
                "execd messages:\n"
                f"{tail(cell.spool / 'execd' / host / 'messages')}\n"
                f"{tail(directory / 'sge_execd.out')}"
            )
    except BaseException:
        stop(cell)
        raise
    log(f"one-node Grid Engine ready: host {host}, SGE_ROOT={cell.root} SGE_CELL={CELL}")
    return cell


def _answers(cell: Cell) -> bool:
    try:
        tool(cell, ["qconf", "-sh"])
    except (SgeUnavailable, subprocess.SubprocessError):
        return False
    return True


def running(cell: Cell) -> bool:
    return bool(cell.pids) and all(alive(pid, cell.root) for pid in cell.pids.values())


def terminate(pid: int, marker: str) -> bool:
    """SIGTERM the session ``pid`` leads, SIGKILL it after 15 s; True once it is gone."""
    for sig, patience in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if not alive(pid, marker):
            return True
        with suppress(ProcessLookupError):
            os.killpg(pid, sig)
        if wait_until(lambda: not alive(pid, marker), patience, interval=0.1):
            return True
    return False


def stop(cell: Cell) -> None:
    """Delete the cell's jobs, stop its daemons (execd first)."""
    if alive(cell.pids.get("sge_qmaster", 0), cell.root):
        with suppress(SgeUnavailable, OSError, subprocess.SubprocessError):
            tool(cell, ["qdel", "-f", "-u", "*"])
    survivors = [
        f"{name} (pid {cell.pids[name]})"
        for name in ("sge_execd", "sge_qmaster")
        if name in cell.pids and not terminate(cell.pids[name], cell.root)
    ]
    if survivors:
        raise SgeUnavailable(f"could not stop {', '.join(survivors)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start a cell in a new directory, print export lines")
    for name in ("down", "status"):
        commands.add_parser(name).add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            directory = Path(tempfile.mkdtemp(prefix="hpo-dev-sge-"))
            try:
                cell = start(directory)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            for name, value in cell.variables().items():
                print(f"export {name}={shlex.quote(value)}")
            print(f"export HPO_TEST_SGE_ROOT={shlex.quote(cell.root)}")
            print(f"# stop with: python3 deploy/dev/sge.py down {shlex.quote(cell.root)}")
            return 0
        found = Cell.load(args.dir)
        if found is None:
            log(f"no cell in {args.dir}")
            return 1
        if args.command == "status":
            up = running(found)
            print(f"{'up' if up else 'DOWN'} {found.root}")
            return 0 if up else 1
        stop(found)
        shutil.rmtree(args.dir, ignore_errors=True)
        log("down")
        return 0
    except SgeUnavailable as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
