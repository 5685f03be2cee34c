"""Request and reply of online ask-and-tell: the api asks the steering service for a
trial of a study (docs/architecture.md §4, request/reply).

Only the ask travels: drawing a point is sampler work and belongs to steering, while
tell, failure and intermediate reports are conditional writes the api does itself.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from shared.bus import register_rpc
from shared.messages import Message

STEERING_TARGET = "steering"


def trial_point_id(task_id: str, segment: str, index: int) -> str:
    """A trial is the study's point ``index``; its id is derived as for batch points."""
    return f"{task_id}.{segment}.{index}"


class AskRequest(Message):
    """One new trial for the study (a task) of ``owner``.

    ``ask_id`` makes the ask idempotent: a retried request with the same id gets the
    trial the first one created instead of a second one. ``retry`` says that an earlier
    attempt may have created it, so that only a retry pays for looking it up (a first
    attempt that races another one on the same id still finds it, by the unique index).
    """

    routing_key: ClassVar[str] = "study.ask"
    task_id: str
    owner: str
    ask_id: str
    retry: bool = False


class AskReply(Message):
    """The new trial, or ``error`` for an expected refusal (unknown or closed study,
    search space exhausted); ``not_found`` tells the api to answer 404."""

    routing_key: ClassVar[str] = "study.asked"
    index: int | None = None
    point_id: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    error: str = ""
    not_found: bool = False


register_rpc(AskRequest, AskReply)
