"""Payload runtimes: a port and one module per implementation, chosen by ``kind``.

Only ``process`` exists so far; ``apptainer``, ``singularity`` and ``bwrap`` slot in as
further modules with their own config model, added to :data:`RuntimeConfig` (then a
discriminated union on ``kind``) and to the registry below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from shared.runtime.port import Launch, Runtime, RuntimeUnsupportedError
from shared.runtime.process import ProcessRuntime, ProcessRuntimeConfig

RuntimeConfig = ProcessRuntimeConfig
"""The typed ``[runtime]`` table of a site config; a union on ``kind`` once there are more."""


def _process(config: Mapping[str, Any]) -> Runtime:
    return ProcessRuntime(ProcessRuntimeConfig.model_validate(config))


_REGISTRY: dict[str, Callable[[Mapping[str, Any]], Runtime]] = {"process": _process}


def runtime_kinds() -> list[str]:
    return sorted(_REGISTRY)


def open_runtime(kind: str, config: BaseModel | Mapping[str, Any] | None = None) -> Runtime:
    """Build the runtime ``kind`` from its config (a model or a plain mapping).

    Raises ValueError for an unknown kind and pydantic's ValidationError for a config
    that does not fit the kind.
    """
    factory = _REGISTRY.get(kind)
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
    return factory(data)


__all__ = [
    "Launch",
    "ProcessRuntimeConfig",
    "Runtime",
    "RuntimeConfig",
    "RuntimeUnsupportedError",
    "open_runtime",
    "runtime_kinds",
]
