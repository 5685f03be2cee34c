"""``/healthz`` and ``/readyz`` of the central process and of the harvester, against real
servers, with a stalled connection standing for a hung database or broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from edge.metrics import edge_ops_app
from shared.netutil import free_port
from shared.web import bind, serve
from tests.integration.central import central, file_artifacts
from tests.integration.tcp_proxy import stalling_proxy

pytestmark = [pytest.mark.mongo]


async def ready(http: httpx.AsyncClient, url: str) -> tuple[int, dict[str, Any]]:
    reply = await http.get(f"{url}/readyz")
    body: dict[str, Any] = reply.json()
    return reply.status_code, body


async def ready_again(http: httpx.AsyncClient, url: str) -> None:
    while (await ready(http, url))[0] != 200:
        await asyncio.sleep(0.2)


async def test_central_is_ready_on_its_servers_and_alive(
    mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    async with (
        central(
            mongo_url=mongo_db_url,
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path,
        ) as system,
        httpx.AsyncClient(timeout=30) as http,
    ):
        status, body = await ready(http, system.ops_url)
        assert (status, body["status"]) == (200, "ready")
        assert body["checks"] == {"database": "ok", "bus": "ok"}
        assert body["process"] == "all"
        alive = await http.get(f"{system.ops_url}/healthz")
        assert alive.status_code == 200


async def test_a_stalled_database_makes_central_unready_then_ready_again(
    mongo_url: str, unique: str, bus_prefix: str, tmp_path: Path
) -> None:
    parts = urlsplit(mongo_url)
    async with (
        stalling_proxy(parts.hostname or "127.0.0.1", parts.port or 27017) as proxy,
        central(
            mongo_url=f"mongodb://127.0.0.1:{proxy.port}/{unique}?directConnection=true",
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path,
            reconcile_interval=5,
        ) as system,
        httpx.AsyncClient(timeout=60) as http,
    ):
        assert (await ready(http, system.ops_url))[0] == 200
        proxy.stall()
        status, body = await ready(http, system.ops_url)
        assert (status, body["status"]) == (503, "not ready")
        assert body["checks"]["database"].startswith("no answer within")
        assert body["checks"]["bus"] == "ok"
        assert (await http.get(f"{system.ops_url}/healthz")).status_code == 200
        proxy.resume()
        await ready_again(http, system.ops_url)


@pytest.mark.rabbitmq
async def test_a_stalled_broker_makes_central_unready_then_ready_again(
    mongo_db_url: str,
    amqp_url: str,
    bus_prefix: str,
    amqp_prefix_cleanup: list[str],
    tmp_path: Path,
) -> None:
    amqp_prefix_cleanup.append(amqp_url)
    parts = urlsplit(amqp_url)
    async with stalling_proxy(parts.hostname or "127.0.0.1", parts.port or 5672) as proxy:
        proxied = amqp_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
        async with (
            central(
                mongo_url=mongo_db_url,
                bus_url=proxied,
                bus_prefix=bus_prefix,
                artifacts_url=file_artifacts(tmp_path),
                home=tmp_path,
                reconcile_interval=5,
            ) as system,
            httpx.AsyncClient(timeout=60) as http,
        ):
            assert (await ready(http, system.ops_url))[0] == 200
            proxy.stall()
            status, body = await ready(http, system.ops_url)
            assert status == 503
            assert body["checks"]["bus"].startswith("no answer within")
            assert body["checks"]["database"] == "ok"
            proxy.resume()
            await ready_again(http, system.ops_url)


async def test_harvester_is_ready_only_while_the_api_answers(
    mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    async with (
        central(
            mongo_url=mongo_db_url,
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path,
        ) as system,
        httpx.AsyncClient(timeout=30) as http,
    ):
        token = await system.token("ops", ["edge:s1"])
        for api_url, expected in ((system.api_url, 200), (f"http://127.0.0.1:{free_port()}", 503)):
            site = SiteConfig.model_validate(
                {"site": "s1", "api_url": api_url, "token": token, "root": tmp_path / "edge"}
            )
            (tmp_path / "edge").mkdir(exist_ok=True)
            harvester = Harvester(site)
            sock = bind("127.0.0.1", 0)
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            stop = asyncio.Event()
            listener = asyncio.create_task(serve(edge_ops_app(site, harvester.metrics), sock, stop))
            try:
                status, body = await ready(http, url)
                assert status == expected, body
                assert body["checks"]["shared_root"] == "ok"
                assert (body["checks"]["api"] == "ok") is (expected == 200)
            finally:
                stop.set()
                await listener
                await harvester.aclose()
