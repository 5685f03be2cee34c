"""The embedded default: the whole system in one process, no server to install.

All six services on the memory bus, a private SecantusDB under ``$HPO_HOME`` (default
``~/.local/share/hpo-relay``), the file artifact store, and a local edge site (local
batch, process runtime) on a temporary shared directory. ``hpo demo`` and
``hpo-services run all --embedded`` use it. One operations listener serves the whole
process: the central services' metrics and the harvester's share its registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from edge.metrics import EdgeMetrics
from services.api.auth import issue_token
from services.assembly import SERVICE_NAMES, assemble, run_assembly
from services.context import Context, open_context
from services.http import bind
from shared.config import (
    ApiSettings,
    BrokerSettings,
    LogSettings,
    MonitorSettings,
    SteeringSettings,
    StorageSettings,
    default_home,
    load,
)
from shared.logs import ensure_logging
from shared.store.server import MongoServer, start_secantus

log = logging.getLogger(__name__)

EDGE_SITE = "local"


@dataclass
class EmbeddedSystem:
    api_url: str
    monitor_url: str
    ctx: Context
    home: Path
    ops_url: str | None = None
    """The operations listener (/healthz, /readyz, /metrics), when one was asked for."""

    async def user_token(self, owner: str) -> str:
        _token, secret = await issue_token(self.ctx.store, owner, ["user"], ttl=timedelta(days=30))
        return secret


def resolve_home(home: Path | None) -> Path:
    chosen = home or Path(os.environ.get("HPO_HOME") or default_home())
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


def _kill_stale_server(pid_file: Path) -> None:
    """A demo killed with -9 leaves its database server running; stop it first."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"secantus" in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _start_database(home: Path) -> MongoServer:
    pid_file = home / "secantus.pid"
    _kill_stale_server(pid_file)
    server = start_secantus(home / "db", log_file=home / "secantus.log")
    pid_file.write_text(str(server.pid))
    return server


@contextlib.asynccontextmanager
async def embedded(
    home: Path | None = None,
    *,
    slots: int = 2,
    reconcile_interval: float = 0.5,
    api_port: int = 0,
    monitor_port: int = 0,
    ops_port: int | None = 0,
) -> AsyncIterator[EmbeddedSystem]:
    quiet = {} if "HPO_LOG_LEVEL" in os.environ else {"level": "WARNING"}  # a demo's default
    ensure_logging(load(LogSettings, **quiet))
    home = resolve_home(home)
    server = await asyncio.to_thread(_start_database, home)
    edge_root = Path(tempfile.mkdtemp(prefix="hpo-edge-"))
    stop = asyncio.Event()
    try:
        api_sock = bind("127.0.0.1", api_port)
        monitor_sock = bind("127.0.0.1", monitor_port)
        ops_sock = None if ops_port is None else bind("127.0.0.1", ops_port, setting="HPO_OPS_PORT")
        api_url = f"http://127.0.0.1:{api_sock.getsockname()[1]}"
        overrides: dict[str, object] = {
            "bus_url": "memory://",
            "mongo_url": f"{server.url}/hpo",
            "artifacts_url": f"file://{home / 'artifacts'}",
            "public_url": api_url,
            "signing_key": secrets.token_hex(32),
            "dev_mode": True,
            "reconcile_interval": reconcile_interval,
            "home": home,
        }
        api = load(ApiSettings, **overrides)
        ctx = await open_context(api)
        assembly = assemble(
            list(SERVICE_NAMES),
            ctx,
            api=api,
            monitor=load(MonitorSettings, **overrides),
            broker=load(BrokerSettings, **overrides, site_alive_seconds=15),
            storage=load(StorageSettings, **overrides),
            steering=load(SteeringSettings, **overrides),
            api_socket=api_sock,
            monitor_socket=monitor_sock,
            ops_socket=ops_sock,
        )
        _site_token, site_secret = await issue_token(ctx.store, "local-site", [f"edge:{EDGE_SITE}"])
        site = SiteConfig.model_validate(
            {
                "site": EDGE_SITE,
                "api_url": api_url,
                "token": site_secret,
                "root": edge_root,
                "slots": slots,
                "poll_interval": 0.25,
                "heartbeat_interval": 2.0,
                "lease_wait_seconds": 2.0,
                "kill_grace_seconds": 5.0,
            }
        )
        harvester = Harvester(site, metrics=EdgeMetrics(EDGE_SITE, ctx.metrics.registry))
        async with asyncio.TaskGroup() as group:
            group.create_task(run_assembly(assembly, reconcile_interval, stop))
            group.create_task(harvester.run(stop))
            try:
                yield EmbeddedSystem(
                    api_url=api_url,
                    monitor_url=assembly.url_of("monitor"),
                    ctx=ctx,
                    home=home,
                    ops_url=assembly.url_of("ops") if ops_sock is not None else None,
                )
            finally:
                stop.set()
        await ctx.close()
    finally:
        stop.set()
        await asyncio.to_thread(server.stop)
        shutil.rmtree(edge_root, ignore_errors=True)


async def run_embedded_forever(ops_port: int | None = 0) -> None:
    """``hpo-services run all --embedded``: serve until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with embedded(ops_port=ops_port) as system:
        token = await system.user_token(os.environ.get("USER", "user"))
        print(f"api {system.api_url}\ndashboard {system.monitor_url}/#token={token}")
        if system.ops_url:
            print(f"operations {system.ops_url}/metrics")
        print(f"export HPO_URL={system.api_url} HPO_TOKEN={token}", flush=True)
        await stop.wait()
