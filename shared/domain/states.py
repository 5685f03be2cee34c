"""Explicit state machines: which status may follow which.

Repositories turn a transition into a conditional update on the expected current
status, so a late or duplicated event can never move a record backwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Generic, TypeVar

S = TypeVar("S", bound=StrEnum)


class InvalidTransitionError(ValueError):
    def __init__(self, kind: str, old: str, new: str) -> None:
        super().__init__(f"{kind}: {old} -> {new} is not allowed")
        self.kind, self.old, self.new = kind, old, new


class StateMachine(Generic[S]):
    """The allowed transitions of one aggregate's status."""

    def __init__(self, kind: str, transitions: Mapping[S, frozenset[S]]) -> None:
        self.kind = kind
        self._next = dict(transitions)

    def allowed(self, old: S, new: S) -> bool:
        return new in self._next.get(old, frozenset())

    def check(self, old: S, new: S) -> None:
        if not self.allowed(old, new):
            raise InvalidTransitionError(self.kind, old.value, new.value)

    def sources(self, new: S) -> list[S]:
        """Every status from which ``new`` may be reached (the update's filter)."""
        return [old for old, nxt in self._next.items() if new in nxt]

    def terminal(self, status: S) -> bool:
        return not self._next.get(status)
