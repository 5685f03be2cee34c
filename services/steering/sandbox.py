"""What runs users' steering programs on this host, found out once at start.

Users' ``steeringExec`` programs run on a central host next to the database and the
bus, so they never run bare by default:

* a program without an image runs in the ``bwrap`` sandbox (read-only host, only its
  fresh working directory writable, no network, its own PID and IPC namespaces, a clean
  environment, no capabilities; as an unprivileged user when the service is root) with
  the CPU, memory, process and file-size limits of :class:`SteeringSettings` and the
  wall-clock limit ``steering_attempt_timeout``;
* a ``steeringContainer`` image runs through the first image runtime of the registry
  found on the host (``steering_image_runtime = "auto"``), with the same limits bar the
  process count;
* ``steering_runtime = "process"`` runs programs unsandboxed, for a trusted development
  host only, and says so loudly at every start.

:func:`open_steering_runtimes` builds both and tries each for real (a sandbox that
cannot start, e.g. without bubblewrap or user namespaces, is found at start, not at a
user's first task). What it finds is logged in one line each and recorded in the
database (:mod:`shared.store.steering`), which is how the api refuses at submission a
task this host cannot steer. A task that reaches a host that cannot run it fails with
the same reason; nothing falls back to running unsandboxed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shared.config import SteeringSettings
from shared.runtime import (
    ResourceLimits,
    Runtime,
    image_runtime_kinds,
    open_runtime,
    parse_runtime_config,
)
from shared.runtime.bwrap import MANAGED

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 60.0
PROBE_FILE = "probe"


@dataclass(frozen=True)
class SteeringRuntimes:
    """The runtime for programs and the one for images; None with the reason why not."""

    programs: Runtime | None
    programs_reason: str
    images: Runtime | None
    images_reason: str

    def for_image(self, image: str | None) -> Runtime | str:
        """The runtime for a task's ``steeringContainer`` (None: no image), or why the
        task cannot be steered here, for its owner."""
        if image:
            if self.images is None:
                return f"this service cannot run steeringContainer images: {self.images_reason}"
            return self.images
        if self.programs is None:
            return f"this service cannot run steering programs: {self.programs_reason}"
        return self.programs


def limits_of(settings: SteeringSettings, *, processes: bool = True) -> ResourceLimits:
    return ResourceLimits(
        cpu_seconds=settings.steering_cpu_seconds,
        memory_bytes=settings.steering_memory_bytes,
        processes=settings.steering_processes if processes else None,
        file_bytes=settings.steering_file_bytes,
    )


def _hidden(settings: SteeringSettings) -> list[str]:
    """The hide list plus the service's home, unless a hidden or managed path covers it."""
    hide = list(settings.steering_sandbox_hide)
    home = PurePosixPath(settings.home.resolve())
    covered = [PurePosixPath(p) for p in (*hide, *MANAGED)]
    if home != PurePosixPath("/") and not any(c == home or c in home.parents for c in covered):
        hide.append(str(home))
    return hide


def program_runtime(settings: SteeringSettings) -> Runtime:
    """The runtime ``steering_runtime`` names, configured from the settings."""
    if settings.steering_runtime == "process":
        return open_runtime("process")
    return open_runtime(
        "bwrap",
        {
            "executable": settings.steering_bwrap,
            "limits": limits_of(settings),
            "run_as": settings.steering_sandbox_user,
            "hide": _hidden(settings),
        },
    )


def image_runtime(settings: SteeringSettings) -> tuple[Runtime, str] | str:
    """The image runtime and its executable (the first found on ``PATH`` for
    ``auto``), or why there is none."""
    wanted = settings.steering_image_runtime
    if wanted == "none":
        return "the operator set HPO_STEERING_IMAGE_RUNTIME=none"
    if wanted not in ("auto", *image_runtime_kinds()):
        return f"HPO_STEERING_IMAGE_RUNTIME={wanted!r} is not one of {image_runtime_kinds()}"
    kinds = image_runtime_kinds() if wanted == "auto" else [wanted]
    for kind in kinds:
        options = {"kind": kind, "allow_pull": True, "limits": limits_of(settings, processes=False)}
        executable = str(getattr(parse_runtime_config(options), "executable", kind))
        if shutil.which(executable):
            return open_runtime(kind, options), executable
    return f"no {' or '.join(kinds)} is installed on the steering host"


async def _run(argv: list[str], env: dict[str, str] | None, cwd: Path | None) -> str | None:
    """None when ``argv`` exits 0 in time; else what went wrong."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
        )
    except OSError as exc:
        return f"{argv[0]} cannot be started ({exc.strerror or exc})"
    try:
        output, _ = await asyncio.wait_for(process.communicate(), PROBE_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return f"{argv[0]} did not finish within {PROBE_TIMEOUT:g} s"
    if process.returncode != 0:
        text = output.decode(errors="replace").strip()[-500:]
        return f"{argv[0]} exited with code {process.returncode}: {text or '(no output)'}"
    return None


async def probe_programs(runtime: Runtime, root: Path) -> str | None:
    """Run a program through ``runtime`` that writes a file: None when that worked."""
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="probe-", dir=root))
    try:
        launch = runtime.prepare(f"echo ok > {PROBE_FILE}", workdir, {}, None, None)
        problem = await _run(launch.argv, launch.env, launch.cwd)
        if problem is None and not (workdir / PROBE_FILE).is_file():
            problem = "the sandboxed program could not write its working directory"
        return problem
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


async def open_steering_runtimes(settings: SteeringSettings, root: Path) -> SteeringRuntimes:
    """Build and try the runtimes; log one line for each that is missing or unsafe."""
    programs: Runtime | None = program_runtime(settings)
    programs_reason = ""
    if settings.steering_runtime == "process":
        log.warning(
            "UNSANDBOXED: HPO_STEERING_RUNTIME=process runs users' steering programs as "
            "plain processes of this service, with its files, network and privileges; "
            "use it only on a trusted development host"
        )
    else:
        assert programs is not None
        problem = await probe_programs(programs, root)
        if problem is not None:
            programs = None
            programs_reason = (
                f"the bwrap sandbox does not work on this host ({problem}); install "
                "bubblewrap and util-linux and allow user namespaces"
            )
            log.error("steering programs are refused: %s", programs_reason)
    found = image_runtime(settings)
    images: Runtime | None = None
    if isinstance(found, str):
        images_reason = found
    else:
        problem = await _run([found[1], "--version"], None, None)
        if problem is None:
            images, images_reason = found[0], ""
        else:
            images_reason = f"{found[0].kind} does not run here ({problem})"
    if images is None:  # the usual case on a central host: said, not warned about
        log.info("steeringContainer images are refused: %s", images_reason)
    else:
        log.info("steeringContainer images run with %s", images.kind)
    return SteeringRuntimes(programs, programs_reason, images, images_reason)


__all__ = [
    "SteeringRuntimes",
    "image_runtime",
    "limits_of",
    "open_steering_runtimes",
    "probe_programs",
    "program_runtime",
]
