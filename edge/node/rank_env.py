"""``python -m edge.node rank-env JOB_DIR --layout JSON --master-port P --rdzv-id ID``.

What the multi-node launcher starts once per rank (``multi_node``) or once per node
(``elastic``). It reads the launcher's variables (:mod:`edge.node.ranks`), adds the rank
variables to the job's environment, asks the site's runtime (process, bwrap, apptainer
...) for the payload's launch exactly as the agent would for a single payload, and
``exec``s it: the launcher then waits for, and signals, the payload itself. For
``elastic`` the payload becomes ``torchrun --nnodes=MIN:MAX ... --no-python /bin/sh -c
EXEC`` and torchrun gives every worker its rank.

It never uses the network, never writes a file and never starts twice: supervision
(heartbeat, kill, status) stays with the one node agent on the first node. A rank that
cannot be placed prints why to the payload log and exits 127, which the launcher turns
into the failure of the whole launch.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from edge.documents import JobDocument
from edge.fsproto import JobPaths, read_text
from edge.node.layout import NodeLayout, visible_gpus
from edge.node.placeholders import substitute_exec
from edge.node.ranks import RankEnvError, RankInfo, rank_info
from shared.runtime import Launch, RuntimeUnsupportedError, open_runtime

CANNOT_START = 127
SHELL = "/bin/sh"


def torchrun_exec(layout: NodeLayout, exec_: str, endpoint: str, rdzv_id: str) -> str:
    """The shell line that starts torchrun on one node around the job's exec line."""
    argv = [
        *layout.torchrun,
        f"--nnodes={layout.min_nodes or layout.nodes}:{layout.nodes}",
        f"--nproc-per-node={layout.tasks_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={rdzv_id}",
        "--no-python",
        SHELL,
        "-c",
        exec_,
    ]
    return shlex.join(argv)


def rank_launch(
    doc: JobDocument,
    paths: JobPaths,
    layout: NodeLayout,
    info: RankInfo,
    *,
    master_port: int,
    rdzv_id: str,
    environ: Mapping[str, str],
    point_index: int = 0,
) -> Launch:
    """This rank's payload launch for the job's ``point_index``-th point, through the
    job's runtime."""
    spec, node = doc.spec, doc.node
    params = spec.points[point_index].params if point_index < len(spec.points) else {}
    exec_ = substitute_exec(
        spec.exec, segment=spec.segment, training_files=spec.training_files, params=params
    )
    env = dict(spec.env)
    if layout.kind == "elastic":
        exec_ = torchrun_exec(layout, exec_, f"{info.master_addr}:{master_port}", rdzv_id)
        env["NODE_RANK"] = str(info.node_rank)
    else:
        env.update(info.env(master_port))
    gpus = visible_gpus(environ)
    runtime = open_runtime(node.runtime.kind, node.runtime)
    return runtime.prepare(exec_, paths.work, env, node.image, gpus if gpus else node.gpus)


def _load(paths: JobPaths) -> JobDocument:
    text = read_text(paths.job_json)
    if text is None:
        raise RankEnvError(f"{paths.job_json} is missing or unreadable")
    return JobDocument.model_validate_json(text)


def _read_file(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def main(
    job_dir: str, layout_json: str, master_port: int, rdzv_id: str, point_index: int = 0
) -> int:
    """Replace this process with the rank's payload; return only on failure."""
    try:
        layout = NodeLayout.model_validate_json(layout_json)
        paths = JobPaths(Path(job_dir).absolute())
        info = rank_info(
            os.environ,
            hostname=socket.gethostname(),
            read_file=_read_file,
            skip_first_host=layout.skip_first_host,
        )
        launch = rank_launch(
            _load(paths),
            paths,
            layout,
            info,
            master_port=master_port,
            rdzv_id=rdzv_id,
            environ=os.environ,
            point_index=point_index,
        )
        for note in launch.notes:
            print(f"hpo-relay rank-env: {note}", file=sys.stderr)
        os.chdir(launch.cwd)
        os.execvpe(launch.argv[0], launch.argv, launch.env)  # noqa: S606 - argv from the runtime
    except (RankEnvError, RuntimeUnsupportedError, ValidationError, ValueError, OSError) as exc:
        print(f"hpo-relay rank-env on {socket.gethostname()}: {exc}", file=sys.stderr)
        return CANNOT_START
    return CANNOT_START  # not reached: execvpe returns only by raising


__all__ = ["main", "rank_launch", "torchrun_exec"]
