"""FastAPI dependencies: the shared context and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api.offload import Offloader
from services.api.tokencache import TokenCache
from services.api.wakeups import SiteWakeups
from services.context import Context
from shared.config import ApiSettings
from shared.domain.models import Token

_bearer = HTTPBearer(auto_error=False)


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_offloader(request: Request) -> Offloader:
    offloader: Offloader = request.app.state.offloader
    return offloader


def get_wakeups(request: Request) -> SiteWakeups:
    wakeups: SiteWakeups = request.app.state.wakeups
    return wakeups


def get_tokens(request: Request) -> TokenCache:
    tokens: TokenCache = request.app.state.tokens
    return tokens


Ctx = Annotated[Context, Depends(get_context)]
Settings = Annotated[ApiSettings, Depends(get_settings)]
Offload = Annotated[Offloader, Depends(get_offloader)]
Wakeups = Annotated[SiteWakeups, Depends(get_wakeups)]
Tokens = Annotated[TokenCache, Depends(get_tokens)]


async def get_token(
    tokens: Tokens, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Token:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = await tokens.authenticate(credentials.credentials)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid, expired or revoked token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


async def get_user(token: Annotated[Token, Depends(get_token)]) -> Token:
    if "user" not in token.scopes and "admin" not in token.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token is not a user token")
    return token


async def get_edge(token: Annotated[Token, Depends(get_token)]) -> Token:
    if token.site_scope() is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token is not an edge token")
    return token


CurrentUser = Annotated[Token, Depends(get_user)]
EdgeToken = Annotated[Token, Depends(get_edge)]
