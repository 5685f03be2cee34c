"""The compute-node agent: runs the evaluation payload of one staged job directory.

It is what the batch job executes (``python -m edge.node run-job JOB_DIR``) and it only
reads and writes files under the job directory; it never opens a network connection.
For each point of the job, in order, it writes ``input.json`` (the point's parameters),
runs the exec string through the configured runtime with output to ``payload.log``,
and moves what the payload produced (output, meta and metrics files) to
``points/<index>/``, so every point's result survives the next one. Meanwhile it
touches ``heartbeat`` and watches for ``kill``.

With a multi-node layout (``multi_node``, ``elastic``: :mod:`edge.node.layout`) the
payload of each point is the site's launcher starting one ``rank-env`` wrapper per rank
or node, which puts the payload through the same runtime there; this agent, on the
first node, supervises the launcher as it would a single payload.

With the task's checkPointToSave, it also snapshots the payload's checkpoint files
every checkPointInterval into ``checkpoints/`` (see :mod:`edge.node.checkpoint`), and
once more when the batch system stops the job (SIGTERM at walltime or on a cancel):
such a job ends ``preempted`` if there is a checkpoint to resume from, else ``killed``.

``status.json`` ends as ``finished`` when every payload exited 0 and ``failed``
otherwise; whether the evaluation *succeeded* is the harvester's call, from the
output files. A bad ``job.json`` never produces a traceback: the agent writes a failed
status with the reason, which the harvester turns into a message for the user.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from edge.documents import JobDocument, NodeState, NodeStatus, PointRun, file_names
from edge.fsproto import (
    JobPaths,
    check_file_name,
    read_json,
    read_text,
    touch,
    write_json_atomic,
)
from edge.node.layout import NodeLayout, derived_port, whole_node_gpus
from edge.node.placeholders import substitute_exec
from edge.node.preemption import Preemption, preemption_for
from edge.node.supervise import PayloadExit, Supervision, run_payload
from shared.clock import utcnow
from shared.config import LogSettings, load
from shared.edge_api import PointSpec
from shared.logs import setup_logging
from shared.runtime import Launch, RuntimeUnsupportedError, open_runtime

log = logging.getLogger(__name__)

CANNOT_START = 127


class JobSetupError(Exception):
    """The job cannot be run as staged; the message is for the user."""


class NodeAgent:
    def __init__(
        self,
        job_dir: Path,
        *,
        host: str | None = None,
        layout: NodeLayout | None = None,
        gpus: list[str] | None = None,
    ) -> None:
        """``gpus``: the GPUs of the slot running the job (a late-binding worker's);
        None keeps what ``job.json`` says (or, for ``whole_node``, every GPU of the
        node)."""
        self.paths = JobPaths(job_dir.resolve())
        self.layout = layout or NodeLayout()
        self.host = host or socket.gethostname()
        self._gpus = gpus
        self._signal_reason: str | None = None
        self._status = NodeStatus(state="running", host=self.host, agent_pid=os.getpid())
        self._preemption: Preemption | None = None

    @property
    def state(self) -> NodeState:
        return self._status.state

    def request_stop(self, reason: str) -> None:
        """Called from a signal handler (batch cancel, walltime): stop like a kill."""
        self._signal_reason = reason

    def _stop_reason(self) -> str | None:
        if self._signal_reason is not None:
            if self._preemption is not None:
                self._preemption.on_stop_requested()
            return self._signal_reason
        if self.paths.kill.exists():
            why = (read_text(self.paths.kill) or "").strip()
            return f"kill requested by the harvester{': ' + why if why else ''}"
        return None

    def _save(self) -> None:
        write_json_atomic(self.paths.status, self._status.model_dump(mode="json"))

    def _heartbeat(self) -> None:
        touch(self.paths.heartbeat)

    def _beat(self) -> None:
        """The supervision's heartbeat: also the clock of the periodic snapshots."""
        self._heartbeat()
        if self._preemption is not None:
            self._preemption.tick()

    def _stopped(self, exit_code: int | None, reason: str) -> int:
        """End of a job stopped before its payloads ended: preempted or killed."""
        preemption = self._preemption
        if self._signal_reason is not None and preemption is not None and preemption.finish():
            return self._finish("preempted", exit_code, reason)
        return self._finish("killed", exit_code, reason)

    def _finish(self, state: NodeState, exit_code: int | None, reason: str = "") -> int:
        self._status.state = state
        self._status.exit_code = exit_code
        self._status.reason = reason
        self._status.pid = None
        self._status.ended_at = utcnow()
        self._save()
        self._heartbeat()
        log.info("job %s %s (exit %s) %s", self.paths.job_id, state, exit_code, reason)
        return 0 if state == "finished" else 1

    def fail_internally(self, exc: BaseException) -> int:
        return self._finish("failed", None, f"internal error in the node agent: {exc!r}")

    def _load(self) -> JobDocument:
        text = read_text(self.paths.job_json)
        if text is None:
            raise JobSetupError(f"{self.paths.job_json} is missing or unreadable")
        try:
            return JobDocument.model_validate_json(text)
        except ValidationError as exc:
            raise JobSetupError(f"job.json is not a valid job document: {exc}") from exc

    def run(self) -> int:
        """Run the job to its end; the return value is the agent's exit code."""
        if not self.paths.dir.is_dir():
            print(f"hpo-edge node: no job directory {self.paths.dir}", file=sys.stderr)
            return 2
        previous = read_json(self.paths.status)
        if isinstance(previous, dict) and previous.get("state") not in (None, "running"):
            log.warning(
                "job %s already ended (%s): not run again", self.paths.job_id, previous.get("state")
            )
            return 0 if previous.get("state") == "finished" else 1
        self._status.started_at = utcnow()
        self._save()
        self._heartbeat()
        try:
            doc = self._load()
            return self._run_points(doc)
        except (JobSetupError, RuntimeUnsupportedError, ValueError, OSError) as exc:
            return self._finish("failed", None, str(exc))

    def _run_points(self, doc: JobDocument) -> int:
        spec, node = doc.spec, doc.node
        for name in file_names(doc):
            check_file_name(name)
        gpus = node.gpus if self._gpus is None else self._gpus
        if self._gpus is None and self.layout.kind == "whole_node":
            gpus = whole_node_gpus(os.environ, self.layout.gpus_per_node)
        self._status.gpus = gpus
        runtime = open_runtime(node.runtime.kind, node.runtime)
        work = self.paths.work
        work.mkdir(exist_ok=True)
        if not (work / spec.files.training_data).exists():
            write_json_atomic(work / spec.files.training_data, spec.training_files, indent=None)
        self._preemption = preemption_for(doc, self.paths, self._checkpoint_note)
        sup = Supervision(
            heartbeat=self._beat,
            stop_reason=self._stop_reason,
            heartbeat_interval=node.heartbeat_interval,
            kill_grace_seconds=node.kill_grace_seconds,
        )
        first_failure: int | None = None
        for index, point in enumerate(spec.points):
            stop = self._stop_reason()
            if stop is not None:
                return self._stopped(first_failure, stop)
            input_path = work / spec.files.input
            if index > 0 or not input_path.exists():
                write_json_atomic(input_path, point.params, indent=None)
            exec_ = substitute_exec(
                spec.exec,
                segment=spec.segment,
                training_files=spec.training_files,
                params=point.params,
            )
            launch = runtime.prepare(exec_, work, spec.env, node.image, gpus)
            for note in launch.notes:
                log.warning("%s", note)
            if self.layout.launches_ranks:
                launch = self._rank_launch(index)
            result = self._run_one(index, point, launch, sup, many=len(spec.points) > 1)
            self._collect(index, doc)
            # A batch cancel or walltime signals the payload and the agent together: the
            # payload may end before the supervisor sees the stop, but it was still killed.
            stop = result.stop_reason or self._signal_reason
            if stop is not None:
                return self._stopped(result.exit_code, stop)
            if result.exit_code != 0 and first_failure is None:
                first_failure = result.exit_code
        if first_failure is None:
            config = spec.checkpoint_config
            if self._preemption is not None and config is not None and config.final:
                self._preemption.finished()
            return self._finish("finished", 0)
        return self._finish("failed", first_failure, f"payload exited with {first_failure}")

    def _rank_launch(self, index: int) -> Launch:
        """The launcher starting one ``rank-env`` wrapper per rank (or node) for the
        index-th point; it inherits this agent's environment, scheduler variables
        included, which the launcher needs to find the allocation."""
        layout = self.layout
        port = layout.master_port or derived_port(self.paths.job_id, index)
        wrapper = [sys.executable, "-m", "edge.node", "rank-env", str(self.paths.dir)]
        wrapper += ["--layout", layout.model_dump_json(), "--master-port", str(port)]
        wrapper += ["--rdzv-id", f"{self.paths.job_id}-{index}", "--point-index", str(index)]
        if os.environ.get("PYTHONPATH"):  # some launchers (Open MPI) do not pass it on
            wrapper = ["env", f"PYTHONPATH={os.environ['PYTHONPATH']}", *wrapper]
        log.info("point %d: %d node(s) through %s", index, layout.nodes, layout.launcher[:1])
        return Launch(argv=[*layout.launcher, *wrapper], env=dict(os.environ), cwd=self.paths.work)

    def _checkpoint_note(self, message: str) -> None:
        """A snapshot problem, for the user: in the status and in ``payload.log``."""
        log.warning("job %s: %s", self.paths.job_id, message)
        self._status.checkpoint_note = message
        self._save()
        with open(self.paths.payload_log, "a") as handle:
            handle.write(f"hpo-relay: {message}\n")

    def _run_one(
        self, index: int, point: PointSpec, launch: Launch, sup: Supervision, *, many: bool
    ) -> PayloadExit:
        fd = os.open(self.paths.payload_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            if many:
                os.write(fd, f"==== hpo-relay: point {index} ({point.point_id}) ====\n".encode())
            run = PointRun(
                index=index, point_id=point.point_id, started_at=utcnow(), log_start=start
            )
            self._status.points.append(run)

            def started(pid: int) -> None:
                self._status.pid = pid
                self._save()

            try:
                result = run_payload(launch, fd, sup, started)
            except (OSError, ValueError) as exc:  # like a shell's "command not found"
                os.write(fd, f"hpo-relay: could not start the payload: {exc}\n".encode())
                result = PayloadExit(exit_code=CANNOT_START, pid=0, stop_reason=None)
            run.exit_code = result.exit_code
            run.ended_at = utcnow()
            run.log_end = os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
        self._save()
        return result

    def _collect(self, index: int, doc: JobDocument) -> None:
        """Move the payload's output, meta and metrics files out of the way of the
        next point, into ``points/<index>/``."""
        files = doc.spec.files
        target = self.paths.point_dir(index)
        target.mkdir(parents=True, exist_ok=True)
        for name in (files.output, files.meta, files.metrics):
            if name and os.path.lexists(self.paths.work / name):
                os.replace(self.paths.work / name, target / name)


def main(job_dir: str, layout: NodeLayout | None = None) -> int:
    """Entry point of ``hpo-edge node run-job`` and ``python -m edge.node run-job``."""
    setup_logging(load(LogSettings))
    agent = NodeAgent(Path(job_dir), layout=layout)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        agent.request_stop(f"node agent received {signal.Signals(signum).name}")

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        return agent.run()
    except Exception as exc:  # a bug here: the admin gets the traceback in agent.log
        log.exception("node agent failed")
        try:
            return agent.fail_internally(exc)
        except OSError:
            return 2


__all__ = ["JobSetupError", "NodeAgent", "main"]
