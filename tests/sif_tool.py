"""A recording stand-in for ``apptainer`` / ``singularity`` that pulls and execs.

Apptainer is not installable on the test machines, so the SIF cache and the harvester
are tested through the tool's command-line contract. Every call is appended to
``calls.jsonl`` next to the stand-in (argv and environment).

* ``TOOL pull [options] --arch ARCH DEST REF`` writes DEST as a fake SIF: a JSON object
  naming the reference and arch. A reference containing ``missing`` fails the way the
  real tool does (a ``FATAL:`` line, exit status 255). While a file ``hold`` exists next
  to the stand-in the pull waits, so tests can overlap pulls without sleeping.
* ``TOOL exec [options] IMAGE /bin/sh -c EXEC`` refuses an image that is not a fake SIF
  from ``pull``, then runs EXEC natively in the directory bound at ``--pwd`` with the
  ``<PREFIX>ENV_*`` variables as the whole environment (no image, no namespaces).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

SCRIPT = """\
import json, os, sys, time
from pathlib import Path

here = Path(__file__).resolve().parent
name = Path(sys.argv[0]).name
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({"argv": sys.argv, "env": dict(os.environ)}) + "\\n")
args = sys.argv[1:]

if args[0] == "pull":
    *options, dest, ref = args[1:]
    arch = options[options.index("--arch") + 1]
    while (here / "hold").exists():
        time.sleep(0.05)
    if "missing" in ref:
        print("INFO:    Converting OCI blobs to SIF format", flush=True)
        print(f"FATAL:   While making image from oci registry: manifest unknown: {ref}",
              file=sys.stderr)
        sys.exit(255)
    Path(dest).write_text(json.dumps({"fake_sif": True, "reference": ref, "arch": arch}))
    sys.exit(0)

if args[0] != "exec":
    sys.exit(f"shim: only 'pull' and 'exec' are supported, not {args[0]!r}")
prefix = {"apptainer": "APPTAINERENV_", "singularity": "SINGULARITYENV_"}[name]
takes_value = {"--bind", "-B", "--pwd", "--network", "--home"}
binds, pwd, i = {}, None, 1
while args[i].startswith("-"):
    if args[i] in takes_value:
        flag, value, i = args[i], args[i + 1], i + 2
        if flag in ("--bind", "-B"):
            source, _, rest = value.partition(":")
            binds[rest.split(":")[0] or source] = source
        elif flag == "--pwd":
            pwd = value
    else:
        i += 1
image, command = args[i], args[i + 1:]
try:
    assert json.loads(Path(image).read_text())["fake_sif"]
except Exception:
    sys.exit(f"FATAL:   could not open image {image}: not a SIF file")
env = {k[len(prefix):]: v for k, v in os.environ.items() if k.startswith(prefix)}
env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
env["PWD"] = binds[pwd]
os.chdir(binds[pwd])
os.execve("/bin/sh", command, env)
"""


def install(directory: Path, name: str = "apptainer") -> Path:
    """Write the stand-in as ``directory/name``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text(f"#!{sys.executable}\n{SCRIPT}")
    tool.chmod(0o755)
    return tool


def calls(directory: Path, verb: str | None = None) -> list[dict[str, Any]]:
    """The recorded calls, optionally only those of ``verb`` (``pull``, ``exec``)."""
    log = directory / "calls.jsonl"
    if not log.exists():
        return []
    found = [json.loads(line) for line in log.read_text().splitlines()]
    return [c for c in found if verb is None or c["argv"][1] == verb]


def on_path(directory: Path) -> str:
    """A ``PATH`` with ``directory`` first."""
    return f"{directory}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
