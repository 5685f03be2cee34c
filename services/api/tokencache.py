"""Token lookups cached per api process, dropped at once when a token is revoked.

Every request carries a bearer token, and looking its hash up in the database on each
one was a database command per request. A found token is kept here for ``ttl``
seconds; expiry and the revoked flag are checked on every use, so a cached token
expires on time. A revocation (``hpo-admin revoke-token``) writes the database first,
then publishes ``token.revoked``; every api process watches for it and drops its copy,
so the token stops working everywhere as soon as the message arrives. A watch may miss
a message (the bus was away), which is what the ``ttl`` bounds: a revoked token is
refused by every process at the latest ``ttl`` seconds after the revocation.

Unknown secrets are not cached: guesses would only fill the cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from services.api.auth import PREFIX, hash_secret, usable
from shared.bus import Bus, Subscription
from shared.domain.models import Token
from shared.messages import Message, TokenRevoked
from shared.store import Store

log = logging.getLogger(__name__)

_WATCH_RETRY_SECONDS = 30.0


class TokenCache:
    def __init__(self, store: Store, bus: Bus, *, ttl: float, max_entries: int = 10_000) -> None:
        self._store = store
        self._bus = bus
        self._ttl = ttl
        self._max = max_entries
        self._by_hash: OrderedDict[str, tuple[Token, float]] = OrderedDict()
        self._subscription: Subscription | None = None
        self._next_watch_attempt = 0.0
        self._lock = asyncio.Lock()
        self.reads = 0
        """Database lookups made (for tests and metrics)."""

    async def start(self) -> bool:
        """Watch for revocations (once); False when the bus cannot be watched now (then
        retried on a later lookup, and cached tokens only live ``ttl`` seconds)."""
        async with self._lock:
            if self._subscription is None:
                self._next_watch_attempt = time.monotonic() + _WATCH_RETRY_SECONDS
                try:
                    self._subscription = await self._bus.watch(
                        [TokenRevoked.routing_key], self._on_message
                    )
                except Exception as exc:
                    log.warning("token revocations not watched (cache entries expire): %s", exc)
                    return False
        return True

    async def stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.cancel()

    async def authenticate(self, secret: str) -> Token | None:
        """The live token for ``secret``, or None (unknown, expired or revoked)."""
        if not secret.startswith(PREFIX):
            return None
        digest = hash_secret(secret)
        cached = self._by_hash.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            token = cached[0]
        else:
            if (
                self._ttl > 0
                and self._subscription is None
                and time.monotonic() >= self._next_watch_attempt
            ):
                await self.start()
            self.reads += 1
            found = await self._store.tokens.find_by_hash(digest)
            if found is None:
                self._by_hash.pop(digest, None)
                return None
            token = found
            self._remember(digest, token)
        return token if usable(token) else None

    def drop(self, token_id: str) -> None:
        for digest, (token, _) in list(self._by_hash.items()):
            if token.id == token_id:
                del self._by_hash[digest]

    def _remember(self, digest: str, token: Token) -> None:
        if self._ttl <= 0:
            return
        self._by_hash[digest] = (token, time.monotonic() + self._ttl)
        self._by_hash.move_to_end(digest)
        while len(self._by_hash) > self._max:
            self._by_hash.popitem(last=False)

    async def _on_message(self, message: Message) -> None:
        if isinstance(message, TokenRevoked):
            self.drop(message.token_id)
