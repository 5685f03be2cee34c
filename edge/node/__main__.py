"""``python -m edge.node run-job JOB_DIR``: what a batch job runs on a compute node.

Deliberately free of the harvester's dependencies (no HTTP client, no CLI framework):
only the standard library, pydantic and the edge package itself are imported.
"""

from __future__ import annotations

import sys

from edge.node.agent import main

USAGE = "usage: python -m edge.node run-job JOB_DIR"

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "run-job":
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[2]))
