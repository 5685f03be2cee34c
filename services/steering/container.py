"""Running a user's iDDS-style steering container for one generation round.

Called by the steering service when a segment (or, in a segmented task, several) needs
new points and the task names ``steeringExec`` instead of a built-in optimiser. One
call is one round: a fresh working directory under ``workdir_root``, ``%IN`` written
there, the program started through the same runtime port that evaluation payloads use
(the steering service passes the sandbox :mod:`.sandbox` built, with its limits),
``%OUT`` read back from that directory on the host (a sandbox may bind it elsewhere,
e.g. ``/srv/workDir``) and checked (:mod:`services.steering.idds_format` holds the
formats and the checks).

A round that goes wrong (non-zero exit, timeout, no or unusable output, a point outside
the space) is tried again with a fresh directory, up to ``attempts`` times; then the
result carries a ``reason`` written for the task's owner (exit code, the end of the
program's stderr and stdout, the JSON error, the first bad point), and the working
directory is kept for diagnosis with its path in the result. A successful round leaves
nothing behind. A runtime that refuses the call (an image on the ``process`` runtime)
fails at once: trying again cannot help.

The program runs in its own process group. On timeout (the wall-clock limit) the group
gets SIGTERM and, after :data:`KILL_GRACE_SECONDS`, SIGKILL; whatever it left running in
the group after it exited is killed too. In the bwrap sandbox the program also has a
PID namespace of its own, so nothing it started, even in another session, outlives it.
A failed attempt's reason names the sandbox's limits and the signal that ended it.
Its stdout and stderr go to files next to the attempt's directory
(``attempt-N.stdout``, ``attempt-N.stderr``), not into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.steering.idds_format import (
    DEFAULT_FAILED_LOSS,
    IN_FILE,
    OUT_FILE,
    OptSpaceForm,
    OutputError,
    SegmentInput,
    SegmentOutcome,
    Selection,
    WrittenForm,
    build_input,
    parse_output,
    select_points,
    substitute_exec,
)
from shared.domain.models import Point
from shared.runtime import Launch, Runtime, RuntimeUnsupportedError
from shared.searchspace import SearchSpace

log = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 5.0
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
TAIL_LINES = 10
_TAIL_BYTES = 8192
_TAIL_LINE_CHARS = 240
_SHELL_UNSAFE = frozenset(" \t\n*?[")
"""Characters that ``$PWD`` must not contain: the spec's ``--in=$PWD/%IN`` leaves it
unquoted, so the shell would split or glob the path."""


@dataclass(frozen=True)
class ContainerResult:
    """The outcome of one round.

    ``ok``: ``segments`` maps each model_id (0 when unsegmented) to its new points and
    whether its search is over; ``warnings`` lists points that were dropped. Not ``ok``:
    ``reason`` says why, for the user; ``workdir`` is the kept working directory (None
    when nothing ran). ``attempts`` is how many times the program was started.
    """

    ok: bool
    segments: Mapping[int, SegmentOutcome] = field(default_factory=dict)
    reason: str = ""
    warnings: tuple[str, ...] = ()
    attempts: int = 0
    workdir: Path | None = None
    opt_space_form: WrittenForm | None = None
    attempt_reasons: tuple[str, ...] = ()

    @property
    def points(self) -> list[dict[str, Any]]:
        """The new points of an unsegmented round (model_id 0)."""
        outcome = self.segments.get(0)
        return [] if outcome is None else outcome.points

    @property
    def search_over(self) -> bool:
        """Every segment of the round is over (for an unsegmented round: the one)."""
        return (
            self.ok and bool(self.segments) and all(s.search_over for s in self.segments.values())
        )


async def run_steering_container(
    exec_template: str,
    image: str | None,
    runtime: Runtime,
    space: SearchSpace,
    history: Sequence[Point],
    num_points: int,
    max_points: int,
    *,
    workdir_root: Path,
    attempt_timeout: float,
    attempts: int = 3,
    failed_loss: float = DEFAULT_FAILED_LOSS,
    opt_space_form: OptSpaceForm = "auto",
    env: Mapping[str, str] | None = None,
    files: Mapping[str, str] | None = None,
) -> ContainerResult:
    """One round for an unsegmented task: up to min(``num_points``, ``max_points`` -
    len(``history``)) new points, in ``result.points``.

    ``exec_template`` is ``steeringExec``; ``image`` is ``steeringContainer`` (None to
    run on the host); ``history`` is every point of the segment, any status;
    ``attempt_timeout`` is per attempt, in seconds. ``env`` adds variables to the
    runtime's clean environment; ``files`` (name -> text, e.g. the task's submitted
    files) are written into each attempt's directory, except files named like ``%IN``
    or ``%OUT``. Raises ValueError only for arguments the operator controls
    (``workdir_root``, ``attempts``); everything about the user's program comes back as
    a failed result.
    """
    segment = SegmentInput(model_id=0, space=space, history=history, num_points=num_points)
    return await _run_round(
        exec_template,
        image,
        runtime,
        [segment],
        segmented=False,
        max_points=max_points,
        workdir_root=workdir_root,
        attempt_timeout=attempt_timeout,
        attempts=attempts,
        failed_loss=failed_loss,
        opt_space_form=opt_space_form,
        env=env,
        files=files,
    )


async def run_segmented_steering_container(
    exec_template: str,
    image: str | None,
    runtime: Runtime,
    segments: Sequence[SegmentInput],
    max_points: int,
    *,
    workdir_root: Path,
    attempt_timeout: float,
    attempts: int = 3,
    failed_loss: float = DEFAULT_FAILED_LOSS,
    opt_space_form: OptSpaceForm = "auto",
    env: Mapping[str, str] | None = None,
    files: Mapping[str, str] | None = None,
) -> ContainerResult:
    """One round for a segmented task, in the ``model_id`` layout.

    Pass every segment of the task (the container needs every ``opt_space`` entry for
    the points it is shown), each with its own ``num_points`` (0 for a segment that
    needs no points now or is over). ``%NUM_POINTS`` is the largest of them and
    ``%MAX_POINTS`` is ``max_points`` (per segment). ``result.segments[model_id]``
    holds each segment's new points.
    """
    ids = [s.model_id for s in segments]
    if not segments or len(set(ids)) != len(ids):
        raise ValueError(f"segments need distinct model ids, got {ids}")
    return await _run_round(
        exec_template,
        image,
        runtime,
        segments,
        segmented=True,
        max_points=max_points,
        workdir_root=workdir_root,
        attempt_timeout=attempt_timeout,
        attempts=attempts,
        failed_loss=failed_loss,
        opt_space_form=opt_space_form,
        env=env,
        files=files,
    )


def check_workdir_root(path: Path) -> Path:
    """The resolved root, created if missing. Raises ValueError when the shell would
    split or glob it inside ``$PWD``; call it at start-up to fail early."""
    resolved = path.resolve()
    bad = sorted(_SHELL_UNSAFE.intersection(str(resolved)))
    if bad:
        raise ValueError(
            f"steering work directory {str(resolved)!r} contains {bad!r}: steering programs "
            "use $PWD unquoted, so it must contain no whitespace or glob characters"
        )
    resolved.mkdir(parents=True, exist_ok=True)
    return resolved


async def _run_round(
    exec_template: str,
    image: str | None,
    runtime: Runtime,
    segments: Sequence[SegmentInput],
    *,
    segmented: bool,
    max_points: int,
    workdir_root: Path,
    attempt_timeout: float,
    attempts: int,
    failed_loss: float,
    opt_space_form: OptSpaceForm,
    env: Mapping[str, str] | None,
    files: Mapping[str, str] | None,
) -> ContainerResult:
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    root = await asyncio.to_thread(check_workdir_root, workdir_root)
    if all(s.room(max_points) == 0 for s in segments):
        idle = {
            s.model_id: SegmentOutcome(s.model_id, [], search_over=len(s.history) >= max_points)
            for s in segments
        }
        return ContainerResult(ok=True, segments=idle)
    try:
        document, form = build_input(
            segments, segmented=segmented, form=opt_space_form, failed_loss=failed_loss
        )
        text = json.dumps(document, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:  # SearchSpaceError, or a NaN in a point's parameters
        return ContainerResult(ok=False, reason=f"cannot write {IN_FILE}: {exc}")
    num_points = max(s.num_points for s in segments)
    command = substitute_exec(exec_template, num_points=num_points, max_points=max_points)
    call_dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="steering-", dir=root))
    reasons: list[str] = []
    try:
        for attempt in range(1, attempts + 1):
            workdir = call_dir / f"attempt-{attempt}"
            await asyncio.to_thread(_prepare_workdir, workdir, text, files or {})
            try:
                launch = runtime.prepare(command, workdir, dict(env or {}), image, None)
            except RuntimeUnsupportedError as exc:
                await asyncio.to_thread(_remove, call_dir)
                return ContainerResult(
                    ok=False,
                    reason=f"the steering container cannot run on the {runtime.kind} runtime: "
                    f"{exc}",
                    opt_space_form=form,
                )
            outcome = await _attempt(
                launch, workdir, attempt, segments, segmented, max_points, attempt_timeout
            )
            if isinstance(outcome, str):
                log.warning("steering container attempt %d/%d: %s", attempt, attempts, outcome)
                reasons.append(outcome)
                continue
            await asyncio.to_thread(_remove, call_dir)
            return ContainerResult(
                ok=True,
                segments=outcome.segments,
                warnings=tuple(outcome.warnings),
                attempts=attempt,
                opt_space_form=form,
            )
    except BaseException:
        _remove(call_dir)
        raise
    return ContainerResult(
        ok=False,
        reason=_summary(command, reasons, call_dir),
        attempts=len(reasons),
        workdir=call_dir,
        opt_space_form=form,
        attempt_reasons=tuple(reasons),
    )


async def _attempt(
    launch: Launch,
    workdir: Path,
    attempt: int,
    segments: Sequence[SegmentInput],
    segmented: bool,
    max_points: int,
    attempt_timeout: float,
) -> Selection | str:
    """Run the program once: its new points, or why the attempt failed."""
    stdout = workdir.parent / f"attempt-{attempt}.stdout"
    stderr = workdir.parent / f"attempt-{attempt}.stderr"
    try:
        code, timed_out = await _execute(launch, stdout, stderr, attempt_timeout)
    except OSError as exc:
        return f"the steering program could not be started: {exc}"
    if timed_out:
        problem = (
            f"the steering program timed out after {attempt_timeout:g} s (its wall-clock "
            "limit) and was killed with everything it started"
        )
    elif code != 0:
        problem = _exit_text(code)
    else:
        try:
            text = await asyncio.to_thread(_read_output, workdir / OUT_FILE)
            ids = [s.model_id for s in segments]
            items = parse_output(text, segmented=segmented, model_ids=ids)
            selection = select_points(items, segments, max_points=max_points, segmented=segmented)
        except OutputError as exc:
            problem = str(exc)
        else:
            return selection
    limits = "".join(
        f"\n  the sandbox's {note}" for note in launch.notes if note.startswith("limits: ")
    )
    return problem + limits + await asyncio.to_thread(_tails, stdout, stderr)


class _ExitWatch(asyncio.SubprocessProtocol):
    def __init__(self, exited: asyncio.Future[None]) -> None:
        self._exited = exited

    def process_exited(self) -> None:
        if not self._exited.done():
            self._exited.set_result(None)


async def _execute(
    launch: Launch, stdout: Path, stderr: Path, attempt_timeout: float
) -> tuple[int | None, bool]:
    """Start ``launch`` and wait at most ``attempt_timeout`` seconds for it to exit:
    (exit code, timed out)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    out_fd, err_fd = _open_logs(stdout, stderr)
    try:
        transport, _ = await loop.subprocess_exec(
            lambda: _ExitWatch(exited),
            *launch.argv,
            stdin=subprocess.DEVNULL,
            stdout=out_fd,
            stderr=err_fd,
            cwd=launch.cwd,
            env=launch.env,
            process_group=0,
        )
    finally:
        os.close(out_fd)
        os.close(err_fd)
    pid = transport.get_pid()
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(exited), attempt_timeout)
        except TimeoutError:
            timed_out = True
            _signal_group(pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(exited), KILL_GRACE_SECONDS)
            except TimeoutError:
                _signal_group(pid, signal.SIGKILL)
                await exited
        return transport.get_returncode(), timed_out
    finally:
        # Whatever the program left running in its group goes with it (also when this
        # task is cancelled: then wait for the exit, so that nothing is left unreaped).
        _signal_group(pid, signal.SIGKILL)
        if not exited.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(exited), KILL_GRACE_SECONDS)
        transport.close()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _open_logs(stdout: Path, stderr: Path) -> tuple[int, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    out_fd = os.open(stdout, flags, 0o600)
    try:
        return out_fd, os.open(stderr, flags, 0o600)
    except OSError:
        os.close(out_fd)
        raise


def _prepare_workdir(workdir: Path, input_text: str, files: Mapping[str, str]) -> None:
    workdir.mkdir()
    for name, content in files.items():
        if name not in (IN_FILE, OUT_FILE) and name not in ("", ".", "..") and "/" not in name:
            (workdir / name).write_text(content, encoding="utf-8")
    (workdir / IN_FILE).write_text(input_text, encoding="utf-8")


def _read_output(path: Path) -> str:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise OutputError(
            f"the steering program exited with code 0 but wrote no {OUT_FILE} (%OUT) in its "
            "working directory"
        ) from None
    if size > MAX_OUTPUT_BYTES:
        raise OutputError(f"{OUT_FILE} is {size} bytes; the limit is {MAX_OUTPUT_BYTES}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise OutputError(f"{OUT_FILE} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise OutputError(f"{OUT_FILE} cannot be read: {exc.strerror or exc}") from None


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        log.warning("could not remove steering work directory %s", path)


_SIGNAL_CAUSES = {
    signal.SIGXCPU: "it used up its CPU-time limit",
    signal.SIGXFSZ: "it wrote a file beyond the file-size limit",
    signal.SIGKILL: "the CPU-time hard limit, the memory of the host, or a kill",
}


def _signal_text(number: int) -> str:
    try:
        sig = signal.Signals(number)
    except ValueError:
        return f"signal {number}"
    cause = _SIGNAL_CAUSES.get(sig)
    return sig.name if cause is None else f"{sig.name}: {cause}"


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"the steering program was killed by {_signal_text(-code)}"
    if code is not None and 128 < code < 128 + signal.NSIG:
        # a shell or a sandbox reports its child's death by signal N as 128 + N
        return (
            f"the steering program exited with code {code} (killed by {_signal_text(code - 128)})"
        )
    return f"the steering program exited with code {code}"


def _tail(path: Path) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > _TAIL_BYTES and lines:
        lines = lines[1:]  # the first one is probably cut
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return [
        line if len(line) <= _TAIL_LINE_CHARS else line[: _TAIL_LINE_CHARS - 3] + "..."
        for line in lines[-TAIL_LINES:]
    ]


def _tails(stdout: Path, stderr: Path) -> str:
    parts = []
    for name, path in (("stderr", stderr), ("stdout", stdout)):
        lines = _tail(path)
        if lines:
            body = "\n".join(f"    {line}" for line in lines)
            parts.append(f"\n  last lines of its {name}:\n{body}")
    return "".join(parts)


def _summary(command: str, reasons: list[str], call_dir: Path) -> str:
    count = len(reasons)
    head = (
        "the steering container failed"
        if count == 1
        else f"the steering container failed {count} times"
    )
    lines = [f"{head}; command: {command}"]
    if count > 1 and len(set(reasons)) > 1:
        lines.extend(f"attempt {n}: {reason}" for n, reason in enumerate(reasons[:-1], start=1))
        lines.append(f"attempt {count}: {reasons[-1]}")
    else:
        lines.append(reasons[-1])
    lines.append(f"working directory kept for diagnosis: {call_dir}")
    return "\n".join(lines)
