"""Waiting for the servers a service needs, at start and while it runs.

A service may start before RabbitMQ or the database (a host reboot, an orchestrator
starting everything at once, a restart during an outage): it waits for them with an
exponential backoff, one log line per failed attempt, instead of exiting and leaving the
pipeline stopped until someone restarts it. Once running, a bus handler that meets an
outage is retried in place the same way (:func:`retrying`), so the message is neither
lost nor burnt through its delivery limit while the database restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_exponential,
    wait_random,
)

from services.outage import describe, is_outage
from shared.config import ServiceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """How a service retries an unreachable server: the first wait, the longest wait,
    and how long it keeps trying at start (``None``: until the server is back)."""

    initial: float = 0.5
    longest: float = 5.0
    give_up_after: float | None = None

    @classmethod
    def of(cls, settings: ServiceSettings) -> Backoff:
        return cls(
            initial=settings.retry_initial_seconds,
            longest=settings.retry_max_seconds,
            give_up_after=settings.startup_timeout,
        )


def retrying(what: str, backoff: Backoff, *, forever: bool = False) -> AsyncRetrying:
    """Retry outages of ``what`` (e.g. "the database at mongodb://db:27017/hpo") with
    ``backoff``; other errors propagate at once. ``forever`` ignores ``give_up_after``."""

    def log_attempt(state: RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        pause = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "waiting for %s: attempt %d failed (%s); next try in %.1f s",
            what,
            state.attempt_number,
            describe(exc) if exc is not None else "no result",
            pause,
        )

    give_up = None if forever else backoff.give_up_after
    return AsyncRetrying(
        retry=retry_if_exception(is_outage),
        wait=wait_exponential(multiplier=backoff.initial, max=backoff.longest)
        + wait_random(0, backoff.initial),
        stop=stop_never if give_up is None else stop_after_delay(give_up),
        before_sleep=log_attempt,
        reraise=True,
    )


async def wait_for(what: str, connect: Callable[[], Awaitable[None]], backoff: Backoff) -> None:
    """Call ``connect`` until it succeeds, retrying outages as :func:`retrying` says."""
    attempts = 0
    async for attempt in retrying(what, backoff):
        with attempt:
            attempts += 1
            await connect()
    if attempts > 1:
        log.info("%s is reachable (after %d attempts)", what, attempts)
