"""Tokens: only hashes are stored; the secret is shown once at creation."""

from __future__ import annotations

import pymongo.errors
from pymongo import ASCENDING

from shared.domain.models import Token
from shared.store.base import Repository, from_doc, to_doc
from shared.store.errors import DuplicateKeyError


class TokenRepository(Repository[Token]):
    model = Token

    async def create_indexes(self) -> None:
        await self.col.create_index([("hash", ASCENDING)], unique=True)
        await self.col.create_index([("owner", ASCENDING)])

    async def insert(self, token: Token) -> None:
        """Raises :class:`~shared.store.errors.DuplicateKeyError` if the id or the hash
        is taken."""
        try:
            await self.col.insert_one(to_doc(token))
        except pymongo.errors.DuplicateKeyError as exc:
            raise DuplicateKeyError(f"token {token.id} exists") from exc

    async def find_by_hash(self, digest: str) -> Token | None:
        doc = await self.col.find_one({"hash": digest})
        return None if doc is None else from_doc(Token, doc)

    async def revoke(self, token_id: str) -> bool:
        result = await self.col.update_one({"_id": token_id}, {"$set": {"revoked": True}})
        return result.matched_count == 1

    async def list_for_owner(self, owner: str) -> list[Token]:
        return await self._find({"owner": owner}, sort=[("created", ASCENDING)])
