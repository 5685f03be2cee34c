"""Tokens in memory (see :mod:`shared.store.tokens`); the hash is a unique key."""

from __future__ import annotations

from shared.domain.models import Token
from shared.store.documents import to_doc
from shared.store.memory.base import MemoryRepository
from shared.store.memory.table import Table, Unique


class MemoryTokenRepository(MemoryRepository[Token]):
    model = Token

    def __init__(self) -> None:
        super().__init__(Table("tokens", (Unique("hash_1", lambda d: d["hash"]),)))

    async def insert(self, token: Token) -> None:
        self.table.insert(to_doc(token))

    async def find_by_hash(self, digest: str) -> Token | None:
        return self._first(lambda d: d["hash"] == digest)

    async def revoke(self, token_id: str) -> bool:
        if self.table.get(token_id) is None:
            return False
        self.table.update(token_id, lambda d: d.update(revoked=True))
        return True

    async def list_for_owner(self, owner: str) -> list[Token]:
        return self._find(lambda d: d["owner"] == owner, sort=lambda d: d["created"])
