"""``python -m edge.node``: what a batch job runs on compute nodes.

* ``run-job JOB_DIR [--layout JSON]``: the node agent for one staged job;
* ``run-worker WORKER_DIR``: a late-binding worker of one slot per GPU (layout 1, see
  :mod:`edge.node.worker`);
* ``rank-env JOB_DIR --layout JSON --master-port P --rdzv-id ID``: one rank of a
  multi-node layout, started by the site's launcher (see :mod:`edge.node.rank_env`).

Deliberately free of the harvester's dependencies (no HTTP client, no CLI framework):
only the standard library, pydantic and the edge package itself are imported.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge.node")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run-job", help="run the payload of one staged job")
    run.add_argument("job_dir")
    run.add_argument("--layout", help="the site layout as JSON (default: single)")
    worker = commands.add_parser("run-worker", help="run a late-binding worker (layout 1)")
    worker.add_argument("worker_dir")
    rank = commands.add_parser("rank-env", help="start one rank of a multi-node payload")
    rank.add_argument("job_dir")
    rank.add_argument("--layout", required=True)
    rank.add_argument("--master-port", type=int, required=True)
    rank.add_argument("--rdzv-id", required=True)
    rank.add_argument("--point-index", type=int, default=0)
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from edge.node.layout import NodeLayout

    if args.command == "run-worker":
        from edge.node.worker import main as worker_main

        return worker_main(args.worker_dir)
    if args.command == "rank-env":
        from edge.node.rank_env import main as rank_main

        return rank_main(
            args.job_dir, args.layout, args.master_port, args.rdzv_id, args.point_index
        )
    from edge.node.agent import main as agent_main

    try:
        layout = NodeLayout.model_validate_json(args.layout) if args.layout else None
    except ValidationError as exc:
        print(f"hpo-edge node: --layout is not a valid layout: {exc}", file=sys.stderr)
        return 2
    return agent_main(args.job_dir, layout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
