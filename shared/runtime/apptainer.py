"""The ``apptainer`` runtime: the payload runs in a read-only SIF image with ``apptainer exec``.

Isolation, environment handling and image rules are those of :mod:`shared.runtime.sif`:
``--containall``, only the working directory writable at ``/srv/workDir``, the job's
variables passed as ``APPTAINERENV_*`` (never on the command line), ``--nv`` with
``CUDA_VISIBLE_DEVICES`` when GPUs are assigned, and registry references refused
because compute nodes never pull.

Contract-tested only: Apptainer is not installable on the project's test machines, so
the tests check the exact argv and environment and run payloads through a recording
shim that stands in for ``apptainer``; no test runs a real container.

Site config::

    [runtime]
    kind = "apptainer"
    executable = "/usr/bin/apptainer"      # default: "apptainer" on the node's PATH
    binds = ["/gpfs/datasets:/datasets"]   # read-only
    extra_args = []
"""

from __future__ import annotations

from typing import Literal

from shared.runtime.sif import SifRuntime, SifRuntimeConfig


class ApptainerRuntimeConfig(SifRuntimeConfig):
    kind: Literal["apptainer"] = "apptainer"
    executable: str = "apptainer"


class ApptainerRuntime(SifRuntime):
    kind = "apptainer"
    env_prefix = "APPTAINERENV_"


__all__ = ["ApptainerRuntime", "ApptainerRuntimeConfig"]
