"""Which services a process runs, wired to one context, and the web servers among them:
the api, the monitor, and the process's operations listener (/healthz, /readyz,
/metrics), which serves every service of the process."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field

from fastapi import FastAPI

from services.api.app import ApiService
from services.broker.app import BrokerService
from services.context import Context
from services.http import bind, serve
from services.jobbuilder.app import JobBuilderService
from services.monitor.app import MonitorService
from services.ops import TimedService, central_ops_app, time_requests
from services.runner import Service, run_services
from services.steering.app import SteeringService
from services.storage.app import StorageService
from shared.config import (
    ApiSettings,
    BrokerSettings,
    MonitorSettings,
    ServiceSettings,
    SteeringSettings,
    StorageSettings,
)
from shared.ops.listener import Check
from shared.web import ListenError

log = logging.getLogger(__name__)

SERVICE_NAMES = ("api", "steering", "jobbuilder", "broker", "storage", "monitor")


@dataclass
class Assembly:
    services: list[Service]
    web: list[tuple[str, FastAPI, socket.socket]] = field(default_factory=list)

    def url_of(self, name: str) -> str:
        for web_name, _app, sock in self.web:
            if web_name == name:
                host, port = sock.getsockname()[:2]
                return f"http://{host}:{port}"
        raise KeyError(name)


def bind_listeners(
    names: list[str], api: ApiSettings, monitor: MonitorSettings, ops: ServiceSettings
) -> dict[str, socket.socket]:
    """Open the process's listening sockets from the settings, before anything connects
    to a server, so that a port in use is reported at once (a ``ListenError`` naming the
    setting) rather than after the database and the bus were waited for."""
    wanted: list[tuple[str, str, int, str]] = []
    if "api" in names:
        wanted.append(("api", api.api_host, api.api_port, "HPO_API_PORT"))
    if "monitor" in names:
        wanted.append(("monitor", monitor.monitor_host, monitor.monitor_port, "HPO_MONITOR_PORT"))
    ops_port = ops.ops_port_for(names[0] if len(names) == 1 else "all")
    if ops_port is not None:
        wanted.append(("ops", ops.ops_host, ops_port, "HPO_OPS_PORT"))
    sockets: dict[str, socket.socket] = {}
    try:
        for name, host, port, setting in wanted:
            sockets[name] = bind(host, port, setting=setting)
    except ListenError:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


def assemble(
    names: list[str],
    ctx: Context,
    *,
    api: ApiSettings,
    monitor: MonitorSettings,
    broker: BrokerSettings,
    storage: StorageSettings,
    steering: SteeringSettings,
    api_socket: socket.socket | None = None,
    monitor_socket: socket.socket | None = None,
    ops_socket: socket.socket | None = None,
    ops_checks: dict[str, Check] | None = None,
) -> Assembly:
    """The services ``names`` on ``ctx``; an operations listener only on ``ops_socket``
    (with ``ops_checks`` beside the database and bus checks)."""
    unknown = set(names) - set(SERVICE_NAMES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; known: {', '.join(SERVICE_NAMES)}")
    assembly = Assembly(services=[])
    metrics = ctx.metrics
    for name in names:
        if name == "api":
            api_service = ApiService(ctx, api)
            time_requests(api_service.app, "api", metrics)
            sock = api_socket or bind(api.api_host, api.api_port, setting="HPO_API_PORT")
            assembly.services.append(api_service)
            assembly.web.append(("api", api_service.app, sock))
        elif name == "monitor":
            monitor_service = MonitorService(ctx, monitor)
            time_requests(monitor_service.app, "monitor", metrics)
            sock = monitor_socket or bind(
                monitor.monitor_host, monitor.monitor_port, setting="HPO_MONITOR_PORT"
            )
            assembly.services.append(monitor_service)
            assembly.web.append(("monitor", monitor_service.app, sock))
        elif name == "steering":
            assembly.services.append(SteeringService(ctx, steering))
        elif name == "jobbuilder":
            assembly.services.append(JobBuilderService(ctx))
        elif name == "broker":
            assembly.services.append(BrokerService(ctx, broker))
        elif name == "storage":
            assembly.services.append(StorageService(ctx, storage))
    assembly.services = [TimedService(s, metrics) for s in assembly.services]
    if ops_socket is not None:
        ops = central_ops_app(ctx, names, extra_checks=ops_checks)
        assembly.web.append(("ops", ops, ops_socket))
    return assembly


async def run_assembly(assembly: Assembly, interval: float, stop: asyncio.Event) -> None:
    async with asyncio.TaskGroup() as group:
        for name, app, sock in assembly.web:
            log.info("%s listening on %s", name, sock.getsockname())
            group.create_task(serve(app, sock, stop))
        group.create_task(run_services(assembly.services, interval, stop))
