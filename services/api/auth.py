"""Bearer tokens: random, shown once, stored as a SHA-256 hash, with expiry and revocation.

A token secret carries 256 random bits, so a fast hash is enough (no password
stretching needed): guessing is hopeless and a stolen database reveals no secret.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from shared.bus import Bus
from shared.clock import new_id, utcnow
from shared.domain.models import Token
from shared.messages import TokenRevoked
from shared.store import Store

PREFIX = "hpo_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # as the edge's site config allows


def valid_scope(scope: str) -> bool:
    if scope in ("user", "admin"):
        return True
    return scope.startswith("edge:") and bool(_SITE_NAME.match(scope.removeprefix("edge:")))


async def issue_token(
    store: Store, owner: str, scopes: list[str], *, ttl: timedelta | None = None
) -> tuple[Token, str]:
    """Create a token; the secret is returned here and never again."""
    bad = [s for s in scopes if not valid_scope(s)]
    if bad or not scopes:
        raise ValueError(f"invalid scopes {bad or scopes}: use user, admin or edge:<site>")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = Token(
        id=new_id("tok_"),
        owner=owner,
        scopes=scopes,
        hash=hash_secret(secret),
        expires=None if ttl is None else utcnow() + ttl,
    )
    await store.tokens.insert(token)
    return token, secret


async def revoke_token(store: Store, bus: Bus, token_id: str) -> bool:
    """Revoke in the database, then tell the api processes on the bus to drop their
    cached copies (services/api/tokencache.py). False for an unknown token. The
    revocation holds once written; a failed publish raises after it, and the processes
    then refuse the token when their cached copy expires."""
    if not await store.tokens.revoke(token_id):
        return False
    await bus.publish(TokenRevoked(token_id=token_id))
    return True


def usable(token: Token) -> bool:
    """Neither revoked nor expired."""
    return not token.revoked and (token.expires is None or token.expires > utcnow())
