"""What a running service holds: its settings, the bus, the store, the artifact store.

Built once per process by the entry point and passed down; in the embedded default
several services share one context (and so one memory bus). Opening it waits for each
server that is not up yet (:mod:`services.startup`), so the order in which servers and
services start does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from services.outage import location
from services.startup import Backoff, wait_for
from shared.artifacts import ArtifactStore, open_artifacts
from shared.bus import Bus, open_bus
from shared.config import ServiceSettings
from shared.ops.metered_bus import MeteredBus
from shared.ops.metrics import CentralMetrics
from shared.store import Store
from shared.store.constants import Constants


@dataclass
class Context:
    settings: ServiceSettings
    bus: Bus
    store: Store
    artifacts: ArtifactStore
    metrics: CentralMetrics = field(default_factory=CentralMetrics)

    @cached_property
    def constants(self) -> Constants:
        """This process's cache of what never changes in tasks and segments."""
        return Constants(self.store.tasks, self.store.segments)

    async def close(self) -> None:
        await self.bus.close()
        await self.store.close()


async def open_context(
    settings: ServiceSettings, *, bus: Bus | None = None, metrics: CentralMetrics | None = None
) -> Context:
    """Connect to everything the settings name, waiting for each while it is away;
    ``bus`` lets services share one. ``metrics`` (a fresh registry by default) counts the
    bus's and database's errors."""
    metrics = metrics or CentralMetrics()
    backoff = Backoff.of(settings)
    if bus is None:
        bus = open_bus(
            settings.bus_url,
            prefix=settings.bus_prefix,
            delivery_limit=settings.bus_delivery_limit,
            publish_timeout=settings.bus_publish_timeout,
        )
        await wait_for(f"the bus at {location(settings.bus_url)}", bus.connect, backoff)
    store = Store(settings.mongo_url, listeners=metrics.database_listeners())
    await wait_for(f"the database at {location(settings.mongo_url)}", store.start, backoff)
    artifacts = open_artifacts(
        settings.artifacts_url,
        public_url=settings.public_url,
        signing_key=settings.signing_key.get_secret_value().encode(),
    )
    await wait_for(
        f"the artifact store at {location(settings.artifacts_url)}", artifacts.ensure_ready, backoff
    )
    return Context(
        settings=settings,
        bus=MeteredBus(bus, metrics.bus_errors),
        store=store,
        artifacts=artifacts,
        metrics=metrics,
    )
