"""Token lookups are cached per api process, and a revocation reaches every process
on the bus at once (services/api/tokencache.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from services.api.app import create_app
from services.api.auth import issue_token, revoke_token
from services.cli import app as cli
from services.context import open_context
from shared.config import ApiSettings, load
from tests.integration.central import Central, central, file_artifacts

pytestmark = [pytest.mark.mongo]

LONG = 3600.0  # a cached token outlives every test: only the bus can end it


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
def bus_url(request: pytest.FixtureRequest, amqp_prefix_cleanup: list[str]) -> str:
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("amqp_url")
    amqp_prefix_cleanup.append(url)
    return url


@pytest.fixture
async def system(
    bus_url: str, mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> AsyncIterator[Central]:
    async with central(
        mongo_url=mongo_db_url,
        bus_url=bus_url,
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
        token_cache_seconds=LONG,
    ) as running:
        yield running


async def whoami(http: httpx.AsyncClient, secret: str) -> int:
    reply = await http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    return reply.status_code


async def refused(http: httpx.AsyncClient, secret: str) -> None:
    while await whoami(http, secret) != 401:
        await asyncio.sleep(0.05)


async def test_a_token_is_read_once_for_many_requests(system: Central) -> None:
    assert system.assembly is not None
    api = next(app for name, app, _ in system.assembly.web if name == "api")
    secret = await system.token("alice", ["user"])
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        before = api.state.tokens.reads
        assert [await whoami(http, secret) for _ in range(5)] == [200] * 5
        assert await whoami(http, "hpo_not-a-token") == 401
        assert await whoami(http, "hpo_not-a-token") == 401
    assert api.state.tokens.reads - before == 3  # one for the token, one per unknown guess


async def test_a_revocation_reaches_another_api_process_on_the_bus(
    system: Central, bus_url: str, mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    settings = load(
        ApiSettings,
        bus_url=bus_url,
        bus_prefix=bus_prefix,
        mongo_url=mongo_db_url,
        artifacts_url=file_artifacts(tmp_path),
        dev_mode=True,
        token_cache_seconds=LONG,
    )
    other_ctx = await open_context(settings)
    other = create_app(other_ctx, settings)
    try:
        token, secret = await issue_token(system.ctx.store, "alice", ["user"])
        transport = httpx.ASGITransport(app=other)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://other") as second,
            httpx.AsyncClient(base_url=system.api_url, timeout=30) as first,
        ):
            assert await whoami(second, secret) == 200  # cached there, watching revocations
            assert await whoami(first, secret) == 200
            assert await revoke_token(system.ctx.store, system.ctx.bus, token.id)
            await refused(second, secret)
            await refused(first, secret)
    finally:
        await other.state.tokens.stop()
        await other_ctx.close()


@pytest.mark.rabbitmq
async def test_the_admin_command_revokes_a_cached_token_at_once(
    amqp_url: str,
    amqp_prefix_cleanup: list[str],
    mongo_db_url: str,
    bus_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    amqp_prefix_cleanup.append(amqp_url)
    async with (
        central(
            mongo_url=mongo_db_url,
            bus_url=amqp_url,
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path,
            token_cache_seconds=LONG,
        ) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=30) as http,
    ):
        token, secret = await issue_token(system.ctx.store, "alice", ["user"])
        assert await whoami(http, secret) == 200
        for name, value in (
            ("HPO_BUS_URL", amqp_url),
            ("HPO_BUS_PREFIX", bus_prefix),
            ("HPO_MONGO_URL", mongo_db_url),
            ("HPO_DEV_MODE", "1"),
        ):
            monkeypatch.setenv(name, value)
        # The command runs its own event loop, as it would in its own process.
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["admin", "revoke-token", token.id]
        )
        assert result.exit_code == 0, result.output
        assert "not told" not in result.output
        await refused(http, secret)
