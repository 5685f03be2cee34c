"""Recording stand-ins for the command-line tools of LSF, PBS and Slurm.

The ``fake_hpc`` fixture (conftest.py) installs one executable per tool, first on PATH,
each running this file. A call appends ``{"tool", "argv", "stdin"}`` to
``$FAKE_HPC_DIR/calls.jsonl`` and works on the jobs in ``$FAKE_HPC_DIR/jobs.json``
(``{id: {"kind", "state", "name", "queue", "forgotten", "script"}}``); tests move jobs
along by editing that file, and ``control.json`` makes a tool fail or turns Slurm
accounting on. Nothing runs: the point is the command-line contract.

What is emulated, and from which documentation:

LSF, after the IBM Spectrum LSF 10.1 command reference
(https://www.ibm.com/docs/en/spectrum-lsf/10.1.0: bsub, bjobs -o / -noheader, bkill):
  bsub < SCRIPT   options from ``#BSUB`` lines; stdout ``Job <ID> is submitted to queue
                  <Q>.`` (``default queue <normal>`` without ``-q``)
  bjobs [-a] [-noheader] -o "jobid stat ..." ID...   one line of the fields per known
                  job (a header line unless -noheader); stderr ``Job <ID> is not found``
                  for each unknown id, and exit 255 if there was one
  bkill ID        stdout ``Job <ID> is being terminated``; stderr ``Job <ID>: Job has
                  already finished`` or ``Job <ID>: No matching job found``, exit 255

PBS, after OpenPBS (src/cmds/qstat.c and qdel.c, src/lib/Libcmds/err_handling.c,
src/lib/Liblog/pbs_messages.c, src/include/pbs_error.h):
  qsub SCRIPT     stdout ``SEQ.SERVER``
  qstat -f -F json ID...   stdout ``{"timestamp", "pbs_version", "pbs_server", "Jobs":
                  {ID: {"Job_Name", "Job_Owner", "job_state", "queue", ...}}}`` ("Jobs"
                  only when a job was found); stderr ``qstat: Unknown Job Id ID`` (exit
                  153, PBSE_UNKJOBID 15001 & 0xff) or, for a finished job without -x,
                  ``qstat: ID Job has finished, use -x or -H to obtain historical job
                  information`` (exit 35, PBSE_HISTJOBID 15139 & 0xff)
  qstat ID...     the default listing: ``Job id  Name  User  Time Use S Queue``, a rule,
                  then one row per job; ids over 16 characters truncated with ``*``
  qdel ID         silent; ``qdel: Job has finished ID`` (35), ``qdel: Unknown Job Id ID``
                  (153)

Grid Engine 8.1.9 (Debian's gridengine-*), as the real one-node cell of deploy/dev/sge.py
answers; chosen for qsub, qstat and qdel by ``$FAKE_HPC_QSUB=sge`` (the ``fake_sge``
fixture), since PBS has tools of the same names:
  qsub -terse SCRIPT   options from ``#$`` lines; stdout ``ID``; an unknown resource in
                  ``-l``: stderr ``Unable to run job: unknown resource "NAME"`` and
                  ``Exiting.``, exit 1
  qstat -u * -xml  ``<job_info>`` with a ``<queue_info>`` of running jobs and a
                  ``<job_info>`` of pending ones, each a ``<job_list state=...>`` with
                  ``JB_job_number``, ``JB_name``, ``JB_owner``, ``state`` (``r``, ``qw``,
                  ``hqw``, ``Eqw`` ...); ended jobs are not listed at all
  qdel ID         stdout ``root has deleted job ID``; stderr ``denied: job "ID" does not
                  exist``, exit 1

Slurm 22.05, as the real one-node cluster of deploy/dev/slurm.py answers:
  sbatch --parsable SCRIPT   stdout ``ID``
  squeue --noheader --states=all --format=%i|%T --jobs=IDS   ``ID|STATE`` per known
                  job; when the only id asked for is unknown: stderr ``slurm_load_jobs
                  error: Invalid job id specified``, exit 1
  sacct --noheader --parsable2 --format=JobIDRaw,State --jobs=IDS   ``ID|STATE``; with
                  accounting off: stderr ``Slurm accounting storage is disabled``, exit 1
  scancel ID      silent, exit 0
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

STATE = Path(os.environ.get("FAKE_HPC_DIR", "."))
SERVER = "fakepbs"
TOOLS = ("bsub", "bjobs", "bkill", "qsub", "qstat", "qdel", "sbatch", "squeue", "sacct", "scancel")
LSF_ACTIVE = {"PEND", "RUN", "PSUSP", "USUSP", "SSUSP", "WAIT", "PROV"}
PBS_ACTIVE = {"Q", "H", "W", "T", "S", "U", "R", "B", "E"}
SLURM_ACTIVE = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING"}


def load(name: str, default: Any) -> Any:
    path = STATE / name
    return json.loads(path.read_text()) if path.exists() else default


def save(name: str, value: Any) -> None:
    (STATE / name).write_text(json.dumps(value, indent=1))


def new_id(kind: str) -> str:
    counter = int(load("counter.json", 100)) + 1
    save("counter.json", counter)
    return f"{counter}.{SERVER}" if kind == "pbs" else str(counter)


def directive(script: str, prefix: str, option: str) -> str | None:
    match = re.search(rf"^{prefix}\s+{option}\s+(\S+)", script, re.MULTILINE)
    return match.group(1).strip('"') if match else None


def submit(kind: str, script: str, name: str | None, queue: str | None) -> str:
    job_id = new_id(kind)
    initial = {"lsf": "PEND", "pbs": "Q", "slurm": "PENDING", "sge": "qw"}[kind]
    jobs = load("jobs.json", {})
    jobs[job_id] = {
        "kind": kind,
        "state": initial,
        "name": name or "job",
        "queue": queue or "",
        "forgotten": False,
        "script": script,
    }
    save("jobs.json", jobs)
    return job_id


def known(job_id: str) -> dict[str, Any] | None:
    job: dict[str, Any] | None = load("jobs.json", {}).get(job_id)
    return None if job is None or job["forgotten"] else job


def set_state(job_id: str, state: str) -> None:
    jobs = load("jobs.json", {})
    jobs[job_id]["state"] = state
    save("jobs.json", jobs)


# --- LSF ----------------------------------------------------------------------------------


def bsub(args: list[str], stdin: str) -> int:
    job_id = submit("lsf", stdin, directive(stdin, "#BSUB", "-J"), directive(stdin, "#BSUB", "-q"))
    queue = directive(stdin, "#BSUB", "-q")
    where = f"queue <{queue}>" if queue else "default queue <normal>"
    print(f"Job <{job_id}> is submitted to {where}.")
    return 0


def bjobs(args: list[str], stdin: str) -> int:
    fields, header, ids = ["jobid", "stat", "queue", "job_name"], True, []
    rest = iter(args)
    for arg in rest:
        if arg == "-o":
            fields = next(rest).split()
        elif arg == "-noheader":
            header = False
        elif not arg.startswith("-"):
            ids.append(arg)
    if header:
        print(" ".join(f.upper() for f in fields))
    code = 0
    for job_id in ids:
        job = known(job_id)
        if job is None:
            print(f"Job <{job_id}> is not found", file=sys.stderr)
            code = 255
            continue
        values = {
            "jobid": job_id,
            "stat": job["state"],
            "queue": job["queue"],
            "job_name": job["name"],
        }
        print(" ".join(values.get(f, "-") for f in fields))
    return code


def bkill(args: list[str], stdin: str) -> int:
    job_id = args[-1]
    job = known(job_id)
    if job is None:
        print(f"Job <{job_id}>: No matching job found", file=sys.stderr)
        return 255
    if job["state"] not in LSF_ACTIVE:
        print(f"Job <{job_id}>: Job has already finished", file=sys.stderr)
        return 255
    set_state(job_id, "EXIT")
    print(f"Job <{job_id}> is being terminated")
    return 0


# --- PBS ----------------------------------------------------------------------------------


def sge() -> bool:
    return os.environ.get("FAKE_HPC_QSUB") == "sge"


def qsub(args: list[str], stdin: str) -> int:
    if sge():
        return sge_qsub(args)
    script = Path(args[-1]).read_text()
    print(submit("pbs", script, directive(script, "#PBS", "-N"), directive(script, "#PBS", "-q")))
    return 0


def qstat(args: list[str], stdin: str) -> int:
    if sge():
        return sge_qstat(args)
    as_json = "-F" in args and args[args.index("-F") + 1] == "json"
    ids = [a for a in args if not a.startswith("-") and a != "json"]
    rows, code = {}, 0
    for job_id in ids:
        job = known(job_id)
        if job is None:
            print(f"qstat: Unknown Job Id {job_id}", file=sys.stderr)
            code = 153
        elif job["state"] == "F":
            hint = "use -x or -H to obtain historical job information"
            print(f"qstat: {job_id} Job has finished, {hint}", file=sys.stderr)
            code = 35
        else:
            rows[job_id] = job
    if as_json:
        doc: dict[str, Any] = {
            "timestamp": int(time.time()),
            "pbs_version": "23.06.06",
            "pbs_server": SERVER,
        }
        if rows:
            doc["Jobs"] = {
                job_id: {
                    "Job_Name": job["name"],
                    "Job_Owner": f"root@{SERVER}",
                    "job_state": job["state"],
                    "queue": job["queue"] or "workq",
                    "server": SERVER,
                    "Rerunable": "False",
                }
                for job_id, job in rows.items()
            }
        print(json.dumps(doc, indent=4))
    elif rows:
        print("Job id            Name             User              Time Use S Queue")
        print("----------------  ---------------- ----------------  -------- - -----")
        for job_id, job in rows.items():
            shown = job_id if len(job_id) <= 16 else job_id[:15] + "*"
            name, queue = job["name"][:16], job["queue"] or "workq"
            print(f"{shown:<17} {name:<16} {'root':<16}  00:00:00 {job['state']} {queue}")
    return code


def qdel(args: list[str], stdin: str) -> int:
    if sge():
        return sge_qdel(args)
    job_id = args[-1]
    job = known(job_id)
    if job is None:
        print(f"qdel: Unknown Job Id {job_id}", file=sys.stderr)
        return 153
    if job["state"] == "F":
        print(f"qdel: Job has finished {job_id}", file=sys.stderr)
        return 35
    set_state(job_id, "E")
    return 0


# --- Grid Engine ---------------------------------------------------------------------------

SGE_RESOURCES = {"h_rt", "gpu", "exclusive", "arch", "mem_free", "h_vmem"}


def sge_qsub(args: list[str]) -> int:
    script = Path(args[-1]).read_text()
    for value in re.findall(r"^#\$\s+-l\s+(\S+)", script, re.MULTILINE):
        for request in value.split(","):
            name = request.split("=", 1)[0]
            if name not in SGE_RESOURCES:
                print(f'Unable to run job: unknown resource "{name}"', file=sys.stderr)
                print("Exiting.", file=sys.stderr)
                return 1
    job_id = submit("sge", script, directive(script, r"#\$", "-N"), directive(script, r"#\$", "-q"))
    print(job_id if "-terse" in args else f'Your job {job_id} ("job") has been submitted')
    return 0


def sge_qstat(args: list[str]) -> int:
    running, pending = [], []
    for job_id, job in load("jobs.json", {}).items():
        if job["kind"] != "sge" or job["forgotten"] or job["state"] == "ended":
            continue
        entry = (
            f'    <job_list state="{"running" if "r" in job["state"] else "pending"}">\n'
            f"      <JB_job_number>{job_id}</JB_job_number>\n"
            f"      <JAT_prio>0.50000</JAT_prio>\n"
            f"      <JB_name>{job['name']}</JB_name>\n"
            f"      <JB_owner>root</JB_owner>\n"
            f"      <state>{job['state']}</state>\n"
            f"      <slots>1</slots>\n"
            "    </job_list>"
        )
        (running if "r" in job["state"] else pending).append(entry)
    print("<?xml version='1.0'?>")
    schema = "http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat"
    print(f'<job_info  xmlns:xsd="{schema}/qstat.xsd">')
    print("  <queue_info>", *running, "  </queue_info>", sep="\n")
    print("  <job_info>", *pending, "  </job_info>", sep="\n")
    print("</job_info>")
    return 0


def sge_qdel(args: list[str]) -> int:
    job_id = args[-1]
    job = known(job_id)
    if job is None or job["state"] == "ended":
        print(f'denied: job "{job_id}" does not exist', file=sys.stderr)
        return 1
    set_state(job_id, "ended")
    print(f"root has deleted job {job_id}")
    return 0


# --- Slurm --------------------------------------------------------------------------------


def sbatch(args: list[str], stdin: str) -> int:
    script = Path(args[-1]).read_text()
    print(submit("slurm", script, directive(script, "#SBATCH", "--job-name"), None))
    return 0


def option(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"{name}="))


def squeue(args: list[str], stdin: str) -> int:
    ids = option(args, "--jobs").split(",")
    found = [(job_id, known(job_id)) for job_id in ids]
    if len(ids) == 1 and found[0][1] is None:
        print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
        return 1
    for job_id, job in found:
        if job is not None:
            print(f"{job_id}|{job['state']}")
    return 0


def sacct(args: list[str], stdin: str) -> int:
    if not load("control.json", {}).get("accounting"):
        print("Slurm accounting storage is disabled", file=sys.stderr)
        return 1
    jobs = load("jobs.json", {})
    for job_id in option(args, "--jobs").split(","):
        if job_id in jobs:
            print(f"{job_id}|{jobs[job_id]['state']}")
    return 0


def scancel(args: list[str], stdin: str) -> int:
    job = known(args[-1])
    if job is not None and job["state"] in SLURM_ACTIVE:
        set_state(args[-1], "CANCELLED")
    return 0


def main() -> int:
    tool = str(globals().get("TOOL") or Path(sys.argv[0]).name)  # set by the wrappers
    args = sys.argv[1:]
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    with (STATE / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps({"tool": tool, "argv": args, "stdin": stdin}) + "\n")
    failure = load("control.json", {}).get("fail", {}).get(tool)
    if failure is not None:
        code, message = failure
        print(message, file=sys.stderr)
        return int(code)
    handler = globals()[tool]
    return int(handler(args, stdin))


if __name__ == "__main__":
    sys.exit(main())
