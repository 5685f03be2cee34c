"""The ``singularity`` runtime: ``singularity exec`` of a read-only SIF image.

For sites that still run SingularityCE (or Singularity 3.x) rather than Apptainer. The
command line is the same as the apptainer runtime's (see :mod:`shared.runtime.sif`);
the job's variables travel as ``SINGULARITYENV_*``. ``--no-eval`` needs SingularityCE
>= 3.10: sites on older releases set ``no_eval = false``, and then a value containing
``$(...)`` or backquotes may be evaluated by the tool's environment script.

Contract-tested only: Singularity is not installable on the project's test machines, so
the tests check the exact argv and environment and run payloads through a recording
shim that stands in for ``singularity``; no test runs a real container.
"""

from __future__ import annotations

from typing import Literal

from shared.runtime.sif import SifRuntime, SifRuntimeConfig


class SingularityRuntimeConfig(SifRuntimeConfig):
    kind: Literal["singularity"] = "singularity"
    executable: str = "singularity"


class SingularityRuntime(SifRuntime):
    kind = "singularity"
    env_prefix = "SINGULARITYENV_"


__all__ = ["SingularityRuntime", "SingularityRuntimeConfig"]
