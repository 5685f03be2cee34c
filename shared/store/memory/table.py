"""One collection of the memory adapter: documents by id, with unique keys.

Documents are stored as the MongoDB adapter stores them (:mod:`shared.store.documents`)
and copied in and out, so a caller can never change a stored record by keeping a
reference. Times are kept to the millisecond and as UTC, as a MongoDB server keeps
them, so the two adapters return the same values. Every repository method runs
without awaiting between its read and its write, so each is atomic on the event loop:
the compare-and-set of a transition is a plain check then assignment.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from shared.store.documents import Doc
from shared.store.errors import DuplicateKeyError

Key = Callable[[Doc], Hashable | None]
"""A unique key of a document; None: the document is outside this key (a partial index)."""


def stored(value: Any) -> Any:
    """A deep copy of ``value`` as a MongoDB server would hand it back."""
    if isinstance(value, datetime):
        aware = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.replace(microsecond=aware.microsecond // 1000 * 1000)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): stored(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [stored(v) for v in value]
    return value


@dataclass(frozen=True)
class Unique:
    name: str
    key: Key


class Table:
    def __init__(self, name: str, unique: tuple[Unique, ...] = ()) -> None:
        self.name = name
        self.unique = unique
        self._docs: dict[str, Doc] = {}
        self._keys: list[dict[Hashable, str]] = [{} for _ in unique]

    def __len__(self) -> int:
        return len(self._docs)

    def get(self, id_: str) -> Doc | None:
        doc = self._docs.get(id_)
        return None if doc is None else stored(doc)

    def scan(self) -> Iterator[Doc]:
        """The stored documents themselves (for reading only), in insertion order."""
        return iter(list(self._docs.values()))

    def find(
        self,
        match: Callable[[Doc], bool],
        *,
        sort: Callable[[Doc], Any] | None = None,
        reverse: bool = False,
        limit: int = 0,
    ) -> list[Doc]:
        found = [d for d in self._docs.values() if match(d)]
        if sort is not None:
            found.sort(key=sort, reverse=reverse)
        if limit:
            found = found[:limit]
        return [stored(d) for d in found]

    def insert(self, doc: Doc) -> None:
        """Raises DuplicateKeyError when the id or a unique key is taken."""
        new = stored(doc)
        if new["_id"] in self._docs:
            raise DuplicateKeyError(f"{self.name}: _id {new['_id']!r} exists")
        self._store(new)

    def replace(self, doc: Doc) -> None:
        """Store ``doc`` over the one with its id (or as a new one)."""
        self._store(stored(doc))

    def update(self, id_: str, change: Callable[[Doc], None]) -> None:
        """Apply ``change`` to a copy of the stored document and keep the copy (as a
        server would hand it back: what ``change`` set is normalised too)."""
        doc = stored(self._docs[id_])
        change(doc)
        self._store(stored(doc))

    def delete(self, id_: str) -> bool:
        old = self._docs.pop(id_, None)
        if old is None:
            return False
        self._drop_keys(old)
        return True

    def _store(self, new: Doc) -> None:
        id_ = new["_id"]
        keys = [index.key(new) for index in self.unique]
        for index, taken, key in zip(self.unique, self._keys, keys, strict=True):
            if key is not None and taken.get(key, id_) != id_:
                raise DuplicateKeyError(f"{self.name}: {index.name} {key!r} exists")
        old = self._docs.get(id_)
        if old is not None:
            self._drop_keys(old)
        for taken, key in zip(self._keys, keys, strict=True):
            if key is not None:
                taken[key] = id_
        self._docs[id_] = new

    def _drop_keys(self, doc: Doc) -> None:
        for index, taken in zip(self.unique, self._keys, strict=True):
            key = index.key(doc)
            if key is not None and taken.get(key) == doc["_id"]:
                del taken[key]


def field(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path``; None when any part is missing (MongoDB's
    ``null`` matches a missing field too)."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def set_field(doc: Doc, path: str, value: Any) -> None:
    parts = path.split(".")
    target = doc
    for part in parts[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            target[part] = nxt
        target = nxt
    target[parts[-1]] = stored(value)


def has_field(doc: Mapping[str, Any], path: str) -> bool:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return True


def add_to_set(table: Table, id_: str, name: str, values: list[Any]) -> None:
    """``$addToSet`` with ``$each`` on a top-level array field (no-op without the doc)."""
    if table.get(id_) is None:
        return

    def change(d: Doc) -> None:
        have = list(d.get(name) or [])
        d[name] = have + [v for v in dict.fromkeys(values) if v not in have]

    table.update(id_, change)


def pull(table: Table, id_: str, name: str, values: list[Any]) -> None:
    """``$pull`` with ``$in`` on a top-level array field (no-op without the doc)."""
    if table.get(id_) is None:
        return
    table.update(id_, lambda d: d.update({name: [v for v in d.get(name) or [] if v not in values]}))
