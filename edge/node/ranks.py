"""Where a rank stands in a multi-node launch, read from its launcher's own variables.

PyTorch (``init_method="env://"``), Horovod-less DeepSpeed and most trainers expect
``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and
``NODE_RANK``. Each launcher describes the same facts in its own words; this module
translates them, from variables and the scheduler's host list only (no DNS, no
``scontrol``, no network), so that it works on offline compute nodes:

=========  ==================  ===========================  ==========================
launcher   rank / world size   local rank (/ ranks on node)  node rank / first host
=========  ==================  ===========================  ==========================
srun       SLURM_PROCID /      SLURM_LOCALID                 SLURM_NODEID /
           SLURM_NTASKS                                      SLURM_STEP_NODELIST or
                                                             SLURM_JOB_NODELIST
jsrun      JSM_NAMESPACE_RANK  JSM_NAMESPACE_LOCAL_RANK      this host's place in
           / _SIZE             (/ _LOCAL_SIZE)               LSB_MCPU_HOSTS or LSB_HOSTS
Open MPI   OMPI_COMM_WORLD_    OMPI_COMM_WORLD_LOCAL_RANK    this host's place in
           RANK / _SIZE        (/ _LOCAL_SIZE)               PBS_NODEFILE (or the above)
PMI        PMI_RANK /          MPI_LOCALRANKID or            as for Open MPI
(MPICH,    PMI_SIZE            PALS_LOCAL_RANKID
Intel MPI,                     (/ MPI_LOCALNRANKS)
Cray PALS)
=========  ==================  ===========================  ==========================

The launcher is recognised by its rank variable, MPI and jsrun first: a Slurm batch step
already carries ``SLURM_PROCID=0``, which an ``mpirun`` inside the job passes on to all
its ranks. The first host of the list is where rank 0 runs (every launcher's default
block placement) and so where the ranks meet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass


class RankEnvError(ValueError):
    """The launcher's variables do not say where this rank stands; the message says why."""


@dataclass(frozen=True)
class RankInfo:
    launcher: str
    rank: int
    local_rank: int
    world_size: int
    node_rank: int
    master_addr: str

    def env(self, master_port: int) -> dict[str, str]:
        return {
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(master_port),
            "WORLD_SIZE": str(self.world_size),
            "RANK": str(self.rank),
            "LOCAL_RANK": str(self.local_rank),
            "NODE_RANK": str(self.node_rank),
        }


@dataclass(frozen=True)
class _Names:
    """The variables of one launcher that has no node rank of its own."""

    launcher: str
    rank: str
    size: str
    local_rank: tuple[str, ...]
    local_size: tuple[str, ...]


_OTHERS = (
    _Names(
        "jsrun",
        "JSM_NAMESPACE_RANK",
        "JSM_NAMESPACE_SIZE",
        ("JSM_NAMESPACE_LOCAL_RANK",),
        ("JSM_NAMESPACE_LOCAL_SIZE",),
    ),
    _Names(
        "Open MPI",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        ("OMPI_COMM_WORLD_LOCAL_RANK",),
        ("OMPI_COMM_WORLD_LOCAL_SIZE",),
    ),
    _Names(
        "the PMI launcher",
        "PMI_RANK",
        "PMI_SIZE",
        ("MPI_LOCALRANKID", "PALS_LOCAL_RANKID", "PMI_LOCAL_RANK"),
        ("MPI_LOCALNRANKS", "PALS_LOCAL_SIZE", "PMI_LOCAL_SIZE"),
    ),
)
"""Checked before srun's: a Slurm batch step already has ``SLURM_PROCID=0``."""

_BRACKETS = re.compile(r"\[([^\]]*)\]")


def _split_top(text: str) -> list[str]:
    """Split a Slurm host list on the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _expand_range(spec: str, hostlist: str) -> list[str]:
    values: list[str] = []
    for item in spec.split(","):
        low, _, high = item.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise RankEnvError(f"cannot read the Slurm host list {hostlist!r}")
        width = len(low)
        values += [str(n).zfill(width) for n in range(int(low), int(high or low) + 1)]
    return values


def expand_hostlist(hostlist: str) -> list[str]:
    """``node[01-03,07],gpu5`` → ``node01 node02 node03 node07 gpu5`` (Slurm's syntax,
    read here because ``scontrol show hostnames`` asks the controller over the network)."""
    hosts: list[str] = []
    for part in _split_top(hostlist):
        names = [""]
        pos = 0
        for match in _BRACKETS.finditer(part):
            names = [n + part[pos : match.start()] for n in names]
            names = [n + v for n in names for v in _expand_range(match.group(1), hostlist)]
            pos = match.end()
        hosts += [n + part[pos:] for n in names]
    return hosts


def _unique(hosts: list[str]) -> list[str]:
    return list(dict.fromkeys(h for h in hosts if h))


def scheduler_hosts(environ: Mapping[str, str], read_file: Callable[[str], str]) -> list[str]:
    """The job's hosts in order, each once: PBS_NODEFILE, LSB_MCPU_HOSTS ("host n ..."),
    LSB_HOSTS (a host per slot), or the Slurm node list; [] if none is set."""
    if environ.get("PBS_NODEFILE"):
        try:
            return _unique(read_file(environ["PBS_NODEFILE"]).split())
        except OSError as exc:
            raise RankEnvError(f"cannot read PBS_NODEFILE: {exc}") from exc
    if environ.get("LSB_MCPU_HOSTS"):
        return _unique(environ["LSB_MCPU_HOSTS"].split()[0::2])
    if environ.get("LSB_HOSTS"):
        return _unique(environ["LSB_HOSTS"].split())
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
    return _unique(expand_hostlist(nodelist)) if nodelist else []


def _int(environ: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            if not value.isdigit():
                raise RankEnvError(f"{name}={value!r} is not a number")
            return int(value)
    return None


def _need(environ: Mapping[str, str], launcher: str, *names: str) -> int:
    value = _int(environ, *names)
    if value is None:
        raise RankEnvError(f"{' or '.join(names)} is not set: {launcher} did not say it")
    return value


def _short(host: str) -> str:
    return host.split(".", 1)[0]


def _node_rank(hosts: list[str], hostname: str, rank: int, local_size: int | None) -> int:
    """This host's place in the host list, else (names that differ) rank // ranks per node."""
    short = [_short(h) for h in hosts]
    if _short(hostname) in short:
        return short.index(_short(hostname))
    if local_size:
        return rank // local_size
    raise RankEnvError(f"host {hostname!r} is not in the job's host list {hosts}")


def rank_info(
    environ: Mapping[str, str],
    *,
    hostname: str,
    read_file: Callable[[str], str],
    skip_first_host: bool = False,
) -> RankInfo:
    """Map the launcher's variables of this process; raises RankEnvError naming what is
    missing."""
    hosts = scheduler_hosts(environ, read_file)
    if skip_first_host and len(hosts) > 1:
        hosts = hosts[1:]
    if not hosts:
        raise RankEnvError(
            "no host list: none of PBS_NODEFILE, LSB_MCPU_HOSTS, LSB_HOSTS, "
            "SLURM_STEP_NODELIST, SLURM_JOB_NODELIST is set"
        )
    if "SLURM_PROCID" in environ and not any(v.rank in environ for v in _OTHERS):
        launcher = "srun"
        rank = _need(environ, launcher, "SLURM_PROCID")
        size = _need(environ, launcher, "SLURM_NTASKS", "SLURM_NPROCS")
        local = _need(environ, launcher, "SLURM_LOCALID")
        node = _need(environ, launcher, "SLURM_NODEID")
        return RankInfo(launcher, rank, local, size, node, hosts[0])
    names = next((v for v in _OTHERS if v.rank in environ), None)
    if names is None:
        raise RankEnvError(
            "not started by a known launcher: none of JSM_NAMESPACE_RANK (jsrun), "
            "OMPI_COMM_WORLD_RANK (Open MPI), PMI_RANK (MPICH, Intel MPI, Cray PALS), "
            "SLURM_PROCID (srun) is set"
        )
    rank = _need(environ, names.launcher, names.rank)
    size = _need(environ, names.launcher, names.size)
    local = _need(environ, names.launcher, *names.local_rank)
    local_size = _int(environ, *names.local_size)
    node = _node_rank(hosts, hostname, rank, local_size)
    return RankInfo(names.launcher, rank, local, size, node, hosts[0])
