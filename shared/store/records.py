"""Records the store keeps beside the domain aggregates, shared by every adapter:
an online study, a trial with its learning curve, a steering process's capabilities."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import utcnow
from shared.domain.models import Point
from shared.store.documents import Doc, from_doc

ClassKey = tuple[str, str]
"""(site, compute class)."""

KEEP_EXPIRED = timedelta(days=7)
"""How long a steering process's record is kept after it ran out."""


class Trial(BaseModel):
    """A point with its curve, as the pruners see it."""

    point: Point
    intermediate: dict[int, float] = Field(default_factory=dict)
    pruner_attrs: dict[str, Any] = Field(default_factory=dict)


def trial_from_doc(doc: Doc) -> Trial:
    """Point documents carry ``intermediate`` (step -> value; keys are strings) and
    ``pruner_attrs`` (what an Optuna pruner remembers between calls, as JSON)."""
    raw = doc.get("intermediate") or {}
    attrs = doc.get("pruner_attrs")
    return Trial(
        point=from_doc(Point, doc),
        intermediate={int(k): float(v) for k, v in raw.items()},
        pruner_attrs=json.loads(attrs) if isinstance(attrs, str) else {},
    )


class Study(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    """The id of the study's task."""
    owner: str
    title: str
    key: str
    direction: Literal["minimize", "maximize"] = "minimize"
    properties: dict[str, Any] = Field(default_factory=dict)
    pruner: str = "NopPruner"
    pruner_args: dict[str, Any] = Field(default_factory=dict)
    idle_timeout: float | None = None
    """Seconds without an ask or a tell after which the study is closed (set by its
    owner); None: open until the owner closes it."""
    created: datetime = Field(default_factory=utcnow)


class SteeringCapability(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    """The steering process's instance name."""
    programs: bool
    programs_reason: str = ""
    images: bool
    images_reason: str = ""
    runtime: str
    image_runtime: str | None = None
    seen: datetime
    valid_until: datetime
