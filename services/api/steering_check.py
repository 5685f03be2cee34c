"""Refusing at submission a steering program or image that no steering process can run.

Steering records what its host can run (:mod:`shared.store.steering`); this reads the
records in force and turns a "cannot" into a 422 naming ``steeringExec`` or
``steeringContainer`` with steering's own reason. Before any steering process has ever
started against the database there is nothing to go by, and the task is accepted: the
steering process that takes it fails it with the same reason if it cannot run it.
"""

from __future__ import annotations

from typing import Any

from shared.clock import utcnow
from shared.domain.taskconfig import TaskConfig
from shared.store import Store


def _error(field: str, msg: str) -> dict[str, Any]:
    return {"loc": ["body", "config", field], "msg": msg, "type": "value_error"}


async def steering_refusals(store: Store, config: TaskConfig) -> list[dict[str, Any]]:
    """FastAPI-style error items; empty when the task's steering can run (or no steering
    process has said what it can run yet)."""
    if not config.steeringExec:
        return []
    records = await store.steering.in_force(utcnow())
    if not records:
        return []
    if config.steeringContainer:
        unable = [r for r in records if not r.images]
        if unable:
            instead = (
                "drop steeringContainer to run steeringExec in the service's sandbox"
                if all(r.programs for r in records)
                else "use a built-in optimiser (steering)"
            )
            return [
                _error(
                    "steeringContainer",
                    "the steering service cannot run steeringContainer images: "
                    f"{unable[0].images_reason}; {instead}",
                )
            ]
        return []
    unable = [r for r in records if not r.programs]
    if unable:
        return [
            _error(
                "steeringExec",
                "the steering service cannot run steering programs: "
                f"{unable[0].programs_reason}; use a built-in optimiser (steering) instead",
            )
        ]
    return []


__all__ = ["steering_refusals"]
