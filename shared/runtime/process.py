"""The ``process`` runtime: the exec string runs as a plain child process on the node.

What it isolates: nothing. The payload runs as the batch job's user with that user's
full filesystem view, network (unless the whole node agent was started under
``unshare -n``), devices and limits. What it does give is a *clean environment*: only
``PATH`` (the node's, or the configured one), ``HOME`` and ``PWD`` set to the working
directory, ``LANG``, the variables named in ``pass_env``, and the job's own variables;
nothing else of the agent's environment (tokens, ``PYTHONPATH``, virtualenvs) leaks in.

Use it for development, the embedded default and sites whose payloads need no
container. It cannot run an image: a job that names one is refused with a clear
message unless ``ignore_image`` is set, in which case the exec runs on the host.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.runtime.port import Launch, host_runtime_image_notes

SHELL = "/bin/sh"


class ProcessRuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["process"] = "process"
    path: str | None = None
    """``PATH`` for the payload; None means the node agent's own ``PATH``."""
    lang: str = "C.UTF-8"
    pass_env: list[str] = []
    """Names of node variables passed through unchanged (e.g. ``LD_LIBRARY_PATH``)."""
    ignore_image: bool = False
    """Run jobs that name a container image directly on the host instead of refusing."""


class ProcessRuntime:
    kind = "process"
    runs_images = False

    def __init__(
        self, config: ProcessRuntimeConfig, environ: Mapping[str, str] | None = None
    ) -> None:
        self._config = config
        self._environ = os.environ if environ is None else environ

    def prepare(
        self,
        exec_: str,
        workdir: Path,
        env: Mapping[str, str],
        image: str | None,
        gpus: Sequence[str] | None,
    ) -> Launch:
        notes = host_runtime_image_notes("process", image, ignore_image=self._config.ignore_image)
        workdir = workdir.resolve()
        child_env = {
            "PATH": self._config.path or self._environ.get("PATH", os.defpath),
            "HOME": str(workdir),
            "LANG": self._config.lang,
        }
        for name in self._config.pass_env:
            if name in self._environ:
                child_env[name] = self._environ[name]
        child_env.update(env)
        if gpus is not None:
            child_env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        child_env["PWD"] = str(workdir)
        return Launch(argv=[SHELL, "-c", exec_], env=child_env, cwd=workdir, notes=notes)
