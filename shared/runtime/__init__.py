"""Payload runtimes: a port and one module per implementation, chosen by ``kind``.

* ``process``: a plain child process on the host; isolates nothing (development);
* ``bwrap``: a bubblewrap sandbox on the host's software: read-only root, one writable
  working directory, no network; runs no image;
* ``apptainer`` and ``singularity``: ``exec`` of a pulled, read-only SIF image
  (contract-tested only: neither tool is installable on the test machines);
* ``charliecloud``: ``ch-run`` of a read-only image directory on the shared filesystem,
  unprivileged (tested for real).

The registry below is the one list of kinds: a new runtime is one module and one entry,
and :func:`image_runtime_kinds` offers it to the steering service as soon as its class
says ``runs_images`` and its config can ``allow_pull``.

Each module's docstring says what it isolates and what it does not. A site picks one in
its ``[runtime]`` table, validated as :data:`RuntimeConfig` (a union on ``kind``; a table
without ``kind`` is the ``process`` runtime, as before there was a choice).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, Discriminator, Tag, TypeAdapter

from shared.runtime.apptainer import ApptainerRuntime, ApptainerRuntimeConfig
from shared.runtime.bwrap import BwrapRuntime, BwrapRuntimeConfig
from shared.runtime.charliecloud import CharliecloudRuntime, CharliecloudRuntimeConfig
from shared.runtime.limits import ResourceLimits
from shared.runtime.port import Launch, Runtime, RuntimeUnsupportedError
from shared.runtime.process import ProcessRuntime, ProcessRuntimeConfig
from shared.runtime.singularity import SingularityRuntime, SingularityRuntimeConfig

DEFAULT_KIND = "process"


def _kind_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("kind", DEFAULT_KIND))
    return str(getattr(value, "kind", DEFAULT_KIND))


RuntimeConfig = Annotated[
    Annotated[ProcessRuntimeConfig, Tag("process")]
    | Annotated[BwrapRuntimeConfig, Tag("bwrap")]
    | Annotated[ApptainerRuntimeConfig, Tag("apptainer")]
    | Annotated[SingularityRuntimeConfig, Tag("singularity")]
    | Annotated[CharliecloudRuntimeConfig, Tag("charliecloud")],
    Discriminator(_kind_of),
]
"""The typed ``[runtime]`` table of a site config (and of ``job.json``), by ``kind``."""

_FACTORIES: dict[str, Callable[[Any], Runtime]] = {
    "process": ProcessRuntime,
    "bwrap": BwrapRuntime,
    "apptainer": ApptainerRuntime,
    "singularity": SingularityRuntime,
    "charliecloud": CharliecloudRuntime,
}
_MODELS: dict[str, type[BaseModel]] = {
    "process": ProcessRuntimeConfig,
    "bwrap": BwrapRuntimeConfig,
    "apptainer": ApptainerRuntimeConfig,
    "singularity": SingularityRuntimeConfig,
    "charliecloud": CharliecloudRuntimeConfig,
}
_CONFIG: TypeAdapter[RuntimeConfig] = TypeAdapter(RuntimeConfig)


def runtime_kinds() -> list[str]:
    return sorted(_FACTORIES)


def image_runtime_kinds() -> list[str]:
    """The kinds that run a job's image and can fetch it from a registry themselves
    (``allow_pull``), in the order a host is probed for them: what a steering host
    needs for ``steeringContainer`` references. ``charliecloud`` runs images but only
    from directories, so it is not one of them."""
    return [
        kind
        for kind, factory in _FACTORIES.items()
        if getattr(factory, "runs_images", False) and "allow_pull" in _MODELS[kind].model_fields
    ]


def parse_runtime_config(data: Mapping[str, Any]) -> RuntimeConfig:
    """Validate a ``[runtime]`` table; pydantic's ValidationError names the bad key."""
    return _CONFIG.validate_python(dict(data))


def open_runtime(kind: str, config: BaseModel | Mapping[str, Any] | None = None) -> Runtime:
    """Build the runtime ``kind`` from its config (a model or a plain mapping).

    Raises ValueError for an unknown kind and pydantic's ValidationError for a config
    that does not fit the kind.
    """
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise ValueError(f"unknown runtime {kind!r}: use one of {', '.join(runtime_kinds())}")
    if config is None:
        data: Mapping[str, Any] = {"kind": kind}
    elif isinstance(config, BaseModel):
        data = config.model_dump()
    else:
        data = {"kind": kind, **config}
    if data.get("kind", kind) != kind:
        raise ValueError(f"runtime config is for {data['kind']!r}, not {kind!r}")
    return factory(parse_runtime_config({**data, "kind": kind}))


__all__ = [
    "ApptainerRuntimeConfig",
    "BwrapRuntimeConfig",
    "CharliecloudRuntimeConfig",
    "Launch",
    "ProcessRuntimeConfig",
    "ResourceLimits",
    "Runtime",
    "RuntimeConfig",
    "RuntimeUnsupportedError",
    "SingularityRuntimeConfig",
    "image_runtime_kinds",
    "open_runtime",
    "parse_runtime_config",
    "runtime_kinds",
]
