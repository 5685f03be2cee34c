"""The built-in steering algorithms, one adapter module per library.

The steering service keeps no optimiser between draws: every draw rebuilds one from the
segment's stored points (:mod:`.observations`) and the task's seed, so a restarted or
second steering process proposes exactly what the first would have. How each library
is rebuilt is documented in its module: :mod:`.optuna_samplers`, :mod:`.grid`,
:mod:`.nevergrad_optimizers`. :mod:`.catalog` names what exists and checks a task's
``steering`` block when the config is validated.
"""

from __future__ import annotations

from services.steering.algorithms.base import (
    Direction,
    DrawRequest,
    Observation,
    Proposer,
    SteeringUnavailable,
)
from services.steering.algorithms.catalog import (
    LIBRARIES,
    build_proposer,
    canonical_algorithm,
    check_args,
    default_algorithm,
)
from services.steering.algorithms.observations import FailedPoints, observe, resolve_directions

__all__ = [
    "LIBRARIES",
    "Direction",
    "DrawRequest",
    "FailedPoints",
    "Observation",
    "Proposer",
    "SteeringUnavailable",
    "build_proposer",
    "canonical_algorithm",
    "check_args",
    "default_algorithm",
    "observe",
    "resolve_directions",
]
