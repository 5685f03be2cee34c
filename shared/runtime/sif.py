"""What the ``apptainer`` and ``singularity`` runtimes share: ``<tool> exec`` of a SIF image.

Both tools take the same command line; they differ in the executable and in the prefix
that carries variables into the container (``APPTAINERENV_`` / ``SINGULARITYENV_``).
The payload is started as::

    <tool> exec --containall [--no-home] [--no-eval] [--net --network none]
        --bind WORKDIR:/srv/workDir --pwd /srv/workDir [--bind SRC:DST:ro ...]
        [--nv] [extra args] IMAGE /bin/sh -c EXEC

What it isolates: the image is mounted read-only (never ``--writable``); ``--containall``
gives the payload its own PID and IPC namespaces, a minimal ``/dev``, an empty private
``/tmp`` and ``$HOME`` instead of the host's, and a clean environment; the only host
directory it can write is the working directory at ``/srv/workDir``; the site may add
read-only binds (datasets). ``--nv`` exposes the node's NVIDIA devices and driver when
GPUs are assigned, and ``CUDA_VISIBLE_DEVICES`` selects the payload's.
What it does not isolate: the network, unless ``isolate_network`` is set (compute nodes
are offline anyway, and ``--network none`` needs the site's apptainer.conf to allow it);
CPU, memory and GPU limits, which are the batch system's job.

**Environment: prefixed variables, not ``--env``.** The job's variables reach the
container as ``APPTAINERENV_NAME=value`` in the environment of the ``apptainer``
process, which ``--cleanenv`` (part of ``--containall``) still honours. ``--env`` would
put every value on the command line, readable by every user of the node in
``/proc/<pid>/cmdline``; a process's environment is readable only by its owner. The
``apptainer`` process itself gets only ``launcher_env`` from the node, so nothing else
of the node agent's environment (tokens, ``APPTAINER_BIND``) leaks into the container or
changes how it is started. ``--no-eval`` (Apptainer >= 1.1, SingularityCE >= 3.10) makes
the tool single-quote the values instead of evaluating them in a shell, so ``$(...)``,
quotes and spaces arrive verbatim; set ``no_eval = false`` only for older releases.

**Limits.** ``limits`` (CPU time, memory, file size; see :mod:`shared.runtime.limits`)
are set with ``prlimit`` around the tool, so they hold for the tool and the payload it
becomes. A process limit is refused: around the tool it would count every process of
the caller's user, and root is exempt from it.

**Images.** A local SIF file (or sandbox directory) given by absolute path. A registry
reference (``docker://``, ``oras://``, ...) is refused: compute nodes have no network and
never pull; the harvester pulls on the login node and hands over the SIF path. Only
``allow_pull`` (for the central steering containers, which have network) lifts that.

Apptainer and Singularity are not installable on the project's test machines: these
runtimes are contract-tested only (exact argv and environment, plus a recording shim
that stands in for the tool), never against a real installation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from shared.runtime.images import image_scheme, is_pull_reference
from shared.runtime.limits import ResourceLimits
from shared.runtime.port import Launch, RuntimeUnsupportedError

WORKDIR = "/srv/workDir"
"""Where the job's working directory appears inside the container (PanDA's convention)."""
SHELL = "/bin/sh"
RESERVED_ENV = frozenset({"HOME", "PWD"})
"""Set by the tool itself (``--pwd``, the contained home); a job cannot override them."""


def _check_bind_path(value: str, what: str) -> str:
    """Bind specs are split on ``,`` and ``:`` by the tool: such paths cannot be bound."""
    if not value.startswith("/"):
        raise ValueError(f"{what} {value!r} must be an absolute path")
    if "," in value or ":" in value:
        raise ValueError(f"{what} {value!r} cannot be bound: it contains ',' or ':'")
    return value


class ReadOnlyBind(BaseModel):
    """A host path the site exposes read-only to every payload (e.g. a dataset area).

    Written as ``"/data"`` (same path inside), ``"/gpfs/data:/data"``, or a table
    ``{source = "/gpfs/data", target = "/data"}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    target: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            source, _, target = value.partition(":")
            return {"source": source, "target": target or None}
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _check_bind_path(value, "bind source")

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _check_bind_path(value, "bind target")
        path = PurePosixPath(value)
        if path == PurePosixPath(WORKDIR) or PurePosixPath(WORKDIR) in path.parents:
            raise ValueError(f"bind target {value!r} would cover the working directory")
        return value

    def spec(self) -> str:
        return f"{self.source}:{self.target or self.source}:ro"


class SifRuntimeConfig(BaseModel):
    """The settings both tools share; each runtime module adds ``kind`` and the default
    ``executable``."""

    model_config = ConfigDict(extra="forbid")

    executable: str
    """Name (looked up in the launcher's ``PATH``) or absolute path of the tool."""
    extra_args: list[str] = []
    """Added after the runtime's own options, before the image (e.g. ``["--nvccli"]``)."""
    binds: list[ReadOnlyBind] = []
    default_image: str | None = None
    """Absolute SIF path used when the job names no image; None refuses such jobs."""
    path: str | None = None
    """``PATH`` inside the container; None keeps the image's own."""
    lang: str = "C.UTF-8"
    pass_env: list[str] = []
    """Node variables passed into the container unchanged (e.g. ``NCCL_SOCKET_IFNAME``)."""
    launcher_env: list[str] = ["PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "XDG_RUNTIME_DIR"]
    """Node variables the tool itself runs with (never seen by the payload)."""
    gpu_args: list[str] = ["--nv"]
    """Options added when GPUs are assigned to the payload; ``["--rocm"]`` on AMD sites.
    A site whose harvester assigns no GPUs but whose payloads need them puts ``--nv`` in
    ``extra_args`` instead."""
    no_eval: bool = True
    """Pass ``--no-eval`` so variable values are never shell-evaluated; false only for
    Apptainer < 1.1 and SingularityCE < 3.10, which lack the option."""
    no_home: bool = False
    """``--containall`` already hides the host home behind an empty throwaway one; set
    this to have no home directory at all (``--no-home``)."""
    isolate_network: bool = False
    """Add ``--net --network none`` (needs the site's apptainer.conf to allow it)."""
    allow_pull: bool = False
    """Let the tool fetch registry references itself. Only for hosts with network (the
    central steering containers); never set it for compute nodes, which never pull."""
    limits: ResourceLimits = ResourceLimits()
    """CPU time, memory and file size of the tool and its payload; none by default."""

    @field_validator("limits")
    @classmethod
    def _no_process_limit(cls, value: ResourceLimits) -> ResourceLimits:
        if value.processes is not None:
            raise ValueError("a process limit cannot be applied around a container tool")
        return value

    @field_validator("extra_args")
    @classmethod
    def _read_only_image(cls, value: list[str]) -> list[str]:
        for arg in value:
            if arg in ("-w", "--writable") or arg.startswith("--writable="):
                raise ValueError("payload images run read-only: --writable is not allowed")
        return value

    @field_validator("default_image")
    @classmethod
    def _local_default_image(cls, value: str | None) -> str | None:
        if value is not None and (image_scheme(value) is not None or not value.startswith("/")):
            raise ValueError("default_image must be the absolute path of a SIF file")
        return value


class SifRuntime:
    """Translates a payload into ``<tool> exec``; subclasses set ``kind`` and ``env_prefix``."""

    kind: str
    env_prefix: str
    runs_images = True

    def __init__(self, config: SifRuntimeConfig, environ: Mapping[str, str] | None = None) -> None:
        self._config = config
        self._environ = os.environ if environ is None else environ

    def _image(self, image: str | None) -> str:
        chosen = image or self._config.default_image
        if not chosen:
            raise RuntimeUnsupportedError(
                f"this site runs payloads in containers (runtime {self.kind!r}) but the task "
                "names no evaluationContainer and the site sets no runtime.default_image"
            )
        if is_pull_reference(chosen):
            if self._config.allow_pull:
                return chosen
            raise RuntimeUnsupportedError(
                f"image {chosen!r} is a registry reference, and compute nodes never pull: "
                "the harvester must pre-pull it on the login node into a SIF file on the "
                "shared filesystem and give the node agent that path"
            )
        if image_scheme(chosen) is not None or not chosen.startswith("/"):
            raise RuntimeUnsupportedError(
                f"image {chosen!r} is not usable on a compute node: runtime {self.kind!r} "
                "takes the absolute path of a SIF file (or sandbox directory)"
            )
        return chosen

    def _launcher_env(self, container_env: Mapping[str, str]) -> dict[str, str]:
        env = {n: self._environ[n] for n in self._config.launcher_env if n in self._environ}
        env.setdefault("PATH", os.defpath)
        env.update({self.env_prefix + name: value for name, value in container_env.items()})
        return env

    def _container_env(
        self, env: Mapping[str, str], gpus: Sequence[str] | None, notes: list[str]
    ) -> dict[str, str]:
        values: dict[str, str] = {}
        if self._config.path:
            values["PATH"] = self._config.path
        values["LANG"] = self._config.lang
        for name in self._config.pass_env:
            if name in self._environ:
                values[name] = self._environ[name]
        for name, value in env.items():
            if name in RESERVED_ENV:
                notes.append(f"job variable {name} ignored: {self.kind} sets it in the container")
            else:
                values[name] = value
        if gpus is not None:
            values["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        return values

    def prepare(
        self,
        exec_: str,
        workdir: Path,
        env: Mapping[str, str],
        image: str | None,
        gpus: Sequence[str] | None,
    ) -> Launch:
        chosen = self._image(image)
        workdir = workdir.resolve()
        try:
            _check_bind_path(str(workdir), "working directory")
        except ValueError as exc:
            raise RuntimeUnsupportedError(f"{exc}; move the site's edge root") from exc
        config = self._config
        notes: list[str] = []
        if not config.limits.empty:
            notes.append(f"limits: {config.limits.describe()}")
        argv = [*config.limits.argv(), config.executable, "exec", "--containall"]
        if config.no_home:
            argv.append("--no-home")
        if config.no_eval:
            argv.append("--no-eval")
        if config.isolate_network:
            argv += ["--net", "--network", "none"]
        argv += ["--bind", f"{workdir}:{WORKDIR}", "--pwd", WORKDIR]
        for bind in config.binds:
            argv += ["--bind", bind.spec()]
        if gpus:
            argv += config.gpu_args
        argv += [*config.extra_args, chosen, SHELL, "-c", exec_]
        container_env = self._container_env(env, gpus, notes)
        return Launch(argv=argv, env=self._launcher_env(container_env), cwd=workdir, notes=notes)


__all__ = ["RESERVED_ENV", "WORKDIR", "ReadOnlyBind", "SifRuntime", "SifRuntimeConfig"]
