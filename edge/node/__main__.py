"""``python -m edge.node run-job JOB_DIR`` or ``run-worker WORKER_DIR``: what a batch
job runs on a compute node (one job, or a late-binding worker of one slot per GPU).

Deliberately free of the harvester's dependencies (no HTTP client, no CLI framework):
only the standard library, pydantic and the edge package itself are imported.
"""

from __future__ import annotations

import sys

from edge.node import agent, worker

USAGE = "usage: python -m edge.node run-job JOB_DIR | run-worker WORKER_DIR"

if __name__ == "__main__":
    commands = {"run-job": agent.main, "run-worker": worker.main}
    if len(sys.argv) != 3 or sys.argv[1] not in commands:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    sys.exit(commands[sys.argv[1]](sys.argv[2]))
