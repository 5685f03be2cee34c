"""The chaos run's evaluation payload: 0.5-2 s of work, a known loss, and one failure
for about one point in ten. Every run's start and end are recorded, so the harness can
count runs per attempt and runs that outlived their node agent (a job's directory is
``jobs/<point>.a<attempt>/work``)."""

import json
import os
import pathlib
import sys
import time

MARKERS = pathlib.Path(sys.argv[1])
job = pathlib.Path.cwd().parent.name
(MARKERS / "runs").mkdir(parents=True, exist_ok=True)
run = MARKERS / "runs" / f"{job}~{os.getpid()}"
run.touch()
with open("input.json") as f:
    x = json.load(f)["x"]
shade = (x * 7919.0) % 1.0  # a stable pseudo-random number per point
time.sleep(0.5 + 1.5 * shade)
failed_once = MARKERS / f"failed-{x!r}"
if shade < 0.1 and not failed_once.exists():
    failed_once.touch()
    print("failing on purpose, once", flush=True)
    (MARKERS / "runs" / f"{run.name}.end").touch()
    sys.exit(1)
with open("output.json", "w") as f:
    json.dump({"status": 0, "loss": (x - 0.25) ** 2}, f)
(MARKERS / "runs" / f"{run.name}.end").touch()
