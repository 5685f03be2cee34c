"""The runtime port: how an evaluation payload is started on a compute node.

A runtime never starts anything itself. The node agent asks it to turn an exec string,
a working directory, the job's environment, an optional image and the GPUs assigned to
the payload into a :class:`Launch` (argv, environment, cwd), and then starts that with
its own process handling (log redirection, process group, kill). Keeping the runtime a
pure translation is what lets apptainer, singularity, bwrap and a plain process share
the same agent, and lets a steering container use the same code on the central side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class RuntimeUnsupportedError(ValueError):
    """The runtime cannot run this payload as asked (for example an image without a
    container runtime). The message is meant for the user who submitted the task."""


@dataclass(frozen=True)
class Launch:
    """What to start: ``argv`` with exactly ``env`` (nothing inherited) in ``cwd``."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    notes: list[str] = field(default_factory=list)


class Runtime(Protocol):
    """One way of running a payload. Implementations are cheap, stateless objects."""

    kind: str
    runs_images: bool
    """True when the runtime runs the job's image; False when it runs the host's software."""

    def prepare(
        self,
        exec_: str,
        workdir: Path,
        env: Mapping[str, str],
        image: str | None,
        gpus: Sequence[str] | None,
    ) -> Launch:
        """Called by the node agent once per payload start, just before it starts it.

        ``exec_`` is a shell command line whose user values were already shell-quoted;
        ``gpus`` None means "leave GPU visibility alone", an empty list means "no GPU".
        Raises :class:`RuntimeUnsupportedError` when the payload cannot run here.
        """
        ...


def host_runtime_image_notes(kind: str, image: str | None, *, ignore_image: bool) -> list[str]:
    """For runtimes that run the host's software: refuse a job's image, or, when the
    site admin allows it, note that it is ignored."""
    if not image:
        return []
    if not ignore_image:
        raise RuntimeUnsupportedError(
            f"this site runs payloads without a container (runtime {kind!r}) but the job "
            f"asks for image {image!r}; the site admin can set runtime.ignore_image = true "
            "to run the exec on the host's software"
        )
    return [f"image {image!r} ignored: the {kind} runtime runs the host's software"]
