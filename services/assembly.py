"""Which services a process runs, wired to one context, and the web servers among them."""

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
from services.runner import Service, run_services
from services.steering.app import SteeringService
from services.storage.app import StorageService
from shared.config import (
    ApiSettings,
    BrokerSettings,
    MonitorSettings,
    SteeringSettings,
    StorageSettings,
)

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
) -> Assembly:
    unknown = set(names) - set(SERVICE_NAMES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; known: {', '.join(SERVICE_NAMES)}")
    assembly = Assembly(services=[])
    for name in names:
        if name == "api":
            api_service = ApiService(ctx, api)
            sock = api_socket or bind(api.api_host, api.api_port)
            assembly.services.append(api_service)
            assembly.web.append(("api", api_service.app, sock))
        elif name == "monitor":
            monitor_service = MonitorService(ctx, monitor)
            sock = monitor_socket or bind(monitor.monitor_host, monitor.monitor_port)
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
    return assembly


async def run_assembly(assembly: Assembly, interval: float, stop: asyncio.Event) -> None:
    async with asyncio.TaskGroup() as group:
        for name, app, sock in assembly.web:
            log.info("%s listening on %s", name, sock.getsockname())
            group.create_task(serve(app, sock, stop))
        group.create_task(run_services(assembly.services, interval, stop))
