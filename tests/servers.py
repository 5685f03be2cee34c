"""Servers a test owns and may crash: a private SecantusDB and a private RabbitMQ node.

The shared test servers (tests/conftest.py) must never be killed; a fault test kills
these instead. Both come back at the same address on the same data after ``kill()``,
as a restarted server would.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

from shared.netutil import free_port
from shared.store.server import MongoServer, start_secantus

REPO = Path(__file__).resolve().parents[1]


class PrivateMongo:
    """SecantusDB on a port and a directory of its own; may be down (not started yet,
    or killed) while the code under test runs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.server: MongoServer | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.server is None or not self.server.running:
            self.server = start_secantus(self.directory / "data", port=self.port)

    def kill(self) -> None:
        """kill -9, as a crash of the database would."""
        if self.server is not None:
            self.server.kill()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def rabbitnode() -> ModuleType:
    """deploy/dev/rabbitnode.py (the private RabbitMQ node of the dev tools)."""
    tools = str(REPO / "deploy" / "dev")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import rabbitnode as module

    return module
