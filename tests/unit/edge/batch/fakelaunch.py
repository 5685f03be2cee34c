"""Stand-ins for ``jsrun`` and ``mpirun`` that start their command once per rank on this
host, with the variables the real launchers give each rank.

The ``fake_launchers`` fixture (test_batch_layouts.py) installs one executable per
launcher, first on PATH, each running this file. Every call appends its argv to
``$FAKE_LAUNCH_DIR/launch.jsonl``. The ranks run one after another (the commands under
test do not talk to each other); the exit status is the first non-zero one.

What each rank gets, and from which documentation:

  jsrun --nrs=N --tasks_per_rs=T [--opt=value ...] CMD...   (IBM Job Step Manager, jsrun
        man page: JSM_NAMESPACE_RANK, JSM_NAMESPACE_SIZE, JSM_NAMESPACE_LOCAL_RANK,
        JSM_NAMESPACE_LOCAL_SIZE); one resource set per host, ranks packed by host
  mpirun -n N*T -ppn T CMD...   (MPICH Hydra / Intel MPI: PMI_RANK, PMI_SIZE,
        MPI_LOCALRANKID, MPI_LOCALNRANKS); ranks packed by host
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def jsrun(args: list[str]) -> tuple[int, int, list[str], str]:
    options: dict[str, str] = {}
    while args and args[0].startswith("--"):
        name, _, value = args.pop(0)[2:].partition("=")
        options[name] = value
    nodes, per_node = int(options["nrs"]), int(options.get("tasks_per_rs", "1"))
    return nodes * per_node, per_node, args, "JSM_NAMESPACE_"


def mpirun(args: list[str]) -> tuple[int, int, list[str], str]:
    options: dict[str, str] = {}
    while args and args[0] in ("-n", "-ppn"):
        options[args[0]] = args[1]
        args = args[2:]
    return int(options["-n"]), int(options["-ppn"]), args, "PMI_"


def rank_env(prefix: str, rank: int, size: int, per_node: int) -> dict[str, str]:
    local = rank % per_node
    if prefix == "JSM_NAMESPACE_":
        names = ("RANK", "SIZE", "LOCAL_RANK", "LOCAL_SIZE")
        return {
            prefix + n: str(v) for n, v in zip(names, (rank, size, local, per_node), strict=True)
        }
    return {
        "PMI_RANK": str(rank),
        "PMI_SIZE": str(size),
        "MPI_LOCALRANKID": str(local),
        "MPI_LOCALNRANKS": str(per_node),
    }


def main() -> int:
    tool = str(globals().get("TOOL") or Path(sys.argv[0]).name)
    args = sys.argv[1:]
    with (Path(os.environ["FAKE_LAUNCH_DIR"]) / "launch.jsonl").open("a") as calls:
        calls.write(json.dumps({"tool": tool, "argv": args}) + "\n")
    size, per_node, command, prefix = jsrun(list(args)) if tool == "jsrun" else mpirun(args)
    failed = 0
    for rank in range(size):
        env = {**os.environ, **rank_env(prefix, rank, size, per_node)}
        code = subprocess.run(command, env=env, check=False).returncode
        failed = failed or code
    return failed


if __name__ == "__main__":
    sys.exit(main())
