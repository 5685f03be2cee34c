"""Refusing at submission a ``warmStartFrom`` that names a task the user does not own.

Only the owner's own earlier tasks may warm-start a task. A task id that does not exist
and one that belongs to someone else get the same 422 (naming the list entry), so the
answer tells no one whether another user's task exists.
"""

from __future__ import annotations

from typing import Any

from shared.domain.taskconfig import TaskConfig
from shared.store import Store


async def warm_start_refusals(store: Store, config: TaskConfig, owner: str) -> list[dict[str, Any]]:
    """FastAPI-style error items, one per id in ``warmStartFrom`` that is not the owner's."""
    errors: list[dict[str, Any]] = []
    for index, task_id in enumerate(config.warmStartFrom):
        if await store.tasks.get_for_owner(task_id, owner) is None:
            errors.append(
                {
                    "loc": ["body", "config", "warmStartFrom", index],
                    "msg": f"no task {task_id!r} of yours to warm-start from",
                    "type": "value_error",
                }
            )
    return errors


__all__ = ["warm_start_refusals"]
