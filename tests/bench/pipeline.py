"""Central pipeline benchmark: overhead per evaluated point and result-to-next-lease latency.

A no-op site leases each job and reports its result at once, so all measured time is
the central system's: api, steering (Optuna random sampler, to keep sampler cost out),
jobbuilder, broker, bus and database. With nParallelEvaluation 1 and one point per
iteration, every result must travel the whole chain (steering generates the next point,
the job builder defines its job, the broker assigns it) before the next lease.

Runs at the product defaults (reconcile every 2 s, lease long-poll every 50 ms, a site
forgotten after 60 s without a heartbeat); ``--reconcile`` changes the reconcile
interval, and every JSON line names its settings and which of them differ from the
product's. The site heartbeats every quarter of the broker's ``site_alive_seconds``,
as a harvester does, so a run longer than a minute keeps its site.

Database commands per point are given in all, split into the events' and the periodic
passes' (which run per interval, not per point, so their share per point grows when the
machine is slow), and the events' by command and collection (``find:tasks``).

Prints one JSON line per backend: the embedded default (memory bus) and RabbitMQ, both
on SecantusDB. Run: python tests/bench/pipeline.py [--points 60] [--reconcile 2]
(uses HPO_TEST_MONGO_URL / HPO_TEST_AMQP_URL when set; otherwise starts a SecantusDB and
expects RabbitMQ at 127.0.0.1:5672). ``tests/integration/test_bench_pipeline.py`` runs a
few points of it so that it cannot rot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import monitoring

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.runner import PERIODIC_PASS
from shared.clock import utcnow
from shared.config import ApiSettings, BrokerSettings, ServiceSettings
from shared.store.server import start_secantus
from tests.integration.central import Central, FakeSite, central
from tests.waiting import until

MACHINE = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
SPACE = {"x": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}}}


class CommandCounter(monitoring.CommandListener):
    """Counts database commands, in all and by kind (``find:points``: the command and
    its collection), and the time they took by kind (from the driver's sending to the
    reply, the server's queue included), to say where the central time goes."""

    def __init__(self, shapes: bool = False) -> None:
        self.count = 0
        self.periodic = 0
        """Of ``count``, the commands of the services' periodic passes."""
        self.by_kind: Counter[str] = Counter()
        """Per ``command:collection`` (``find:tasks``), the commands started outside
        the periodic passes (the events': what each point costs)."""
        self.shapes = shapes
        """Name each kind of :attr:`all_by_kind` and :attr:`micros_by_kind` by its
        filter's fields too (``find:jobs{applied,task_id}``)."""
        self.all_by_kind: Counter[str] = Counter()
        """Every command by kind, the periodic passes' included."""
        self.micros_by_kind: Counter[str] = Counter()
        """The microseconds of every command by kind, the periodic passes' included."""
        self._kinds: dict[tuple[object, int], str] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += 1
        named = kind(event.command_name, event.command)
        if PERIODIC_PASS.get():
            self.periodic += 1
        else:
            self.by_kind[named] += 1
        if self.shapes:
            named += filter_shape(event.command)
        self.all_by_kind[named] += 1
        self._kinds[(event.connection_id, event.request_id)] = named

    def _ended(
        self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent
    ) -> None:
        named = self._kinds.pop((event.connection_id, event.request_id), event.command_name)
        self.micros_by_kind[named] += event.duration_micros

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._ended(event)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._ended(event)


def kind(name: str, command: Any) -> str:
    """``command:collection``, or the command alone for one on no collection."""
    target = command.get("collection") if name == "getMore" else command.get(name)
    return f"{name}:{target}" if isinstance(target, str) else name


def filter_shape(command: Mapping[str, Any]) -> str:
    """The fields a command's filter names, as ``{a,b}`` ("" when it has none)."""
    found: Any = command.get("filter", command.get("query"))
    if found is None and command.get("updates"):
        found = command["updates"][0].get("q")
    if found is None and command.get("pipeline"):
        found = command["pipeline"][0].get("$match")
    if not isinstance(found, Mapping):
        return ""
    return "{" + ",".join(sorted(found)) + "}"


COMMANDS = CommandCounter(shapes=os.environ.get("HPO_BENCH_COMMAND_SHAPES") == "1")
"""Every command of the process; ``HPO_BENCH_COMMAND_SHAPES=1`` names each kind of
``all_by_kind`` and ``micros_by_kind`` by its filter's fields too."""
monitoring.register(COMMANDS)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def product_default(settings: type[ServiceSettings], name: str) -> float:
    value = settings.model_fields[name].default
    assert isinstance(value, int | float)
    return float(value)


PRODUCT = {
    "reconcile_interval": product_default(ServiceSettings, "reconcile_interval"),
    "repair_interval": product_default(ServiceSettings, "repair_interval"),
    "lease_poll_interval": product_default(ApiSettings, "lease_poll_interval"),
    "site_alive_seconds": product_default(BrokerSettings, "site_alive_seconds"),
}
"""The settings the figures depend on, at the product's defaults."""


@asynccontextmanager
async def heartbeating(site: FakeSite, every: float, free: int = 1) -> AsyncIterator[None]:
    """Heartbeat now and then every ``every`` seconds until the block ends."""
    await site.heartbeat(free=free)

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            await site.heartbeat(free=free)

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)


async def outlast_site_expiry(system: Central, site: str, alive: float) -> None:
    """Wait until the site's stored heartbeat is ``alive`` seconds newer than now: the
    run has then outlasted the window after which a silent site is forgotten, and only
    the periodic heartbeats kept the site."""
    start = utcnow()

    window = timedelta(seconds=alive)

    async def renewed() -> bool | None:
        record = await system.ctx.store.sites.get(site)
        assert record is not None, f"site {site} never heartbeat"
        silent = utcnow() - record.last_heartbeat
        assert silent <= window, f"site {site} silent for {silent}: the broker forgets it"
        return True if record.last_heartbeat > start + window else None

    await until(renewed, every=0.05)


async def measure(
    backend: str,
    bus_url: str,
    store_url: str,
    points: int,
    *,
    reconcile_interval: float | None = None,
    site_alive_seconds: float | None = None,
    hold_past_site_expiry: bool = False,
) -> dict[str, object]:
    """One backend's figures. ``hold_past_site_expiry`` (for the test) pauses once,
    mid-run, until the site would have been forgotten without further heartbeats."""
    settings = {
        **PRODUCT,
        **({} if reconcile_interval is None else {"reconcile_interval": reconcile_interval}),
        **({} if site_alive_seconds is None else {"site_alive_seconds": site_alive_seconds}),
    }
    heartbeat_every = settings["site_alive_seconds"] / 4
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            central(
                mongo_url=store_url,
                bus_url=bus_url,
                bus_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                artifacts_url=f"file://{tmp}/artifacts",
                **settings,
            ) as system,
            httpx.AsyncClient(base_url=system.api_url, timeout=60) as http,
        ):
            user = await system.token("bench", ["user"])
            site = FakeSite(http, "bench", await system.token("ops", ["edge:bench"]))
            async with heartbeating(site, heartbeat_every):
                hold = settings["site_alive_seconds"] if hold_past_site_expiry else None
                figures = await run_task(system, http, site, user, points, hold)
    differ = sorted(k for k, v in settings.items() if v != PRODUCT[k])
    return {
        "bench": "pipeline",
        "backend": backend,
        "points": points,
        **figures,
        "settings": {**settings, "heartbeat_every_s": heartbeat_every},
        "settings_differing_from_product": differ,
        "machine": MACHINE,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


async def run_task(
    system: Central,
    http: httpx.AsyncClient,
    site: FakeSite,
    user: str,
    points: int,
    hold: float | None,
) -> dict[str, Any]:
    config = {
        "evaluationExec": "true",
        "maxPoints": points,
        "nParallelEvaluation": 1,
        "nPointsPerIteration": 1,
        "steering": {"algorithm": "random", "seed": 1},
    }
    auth = {"Authorization": f"Bearer {user}"}
    reply = await http.post(
        "/api/v1/tasks", json={"config": config, "searchSpace": SPACE}, headers=auth
    )
    reply.raise_for_status()
    task_id = reply.json()["id"]
    latencies: list[float] = []
    commands_before = COMMANDS.count
    periodic_before = COMMANDS.periodic
    kinds_before = Counter(COMMANDS.by_kind)
    started = time.perf_counter()
    jobs = await site.lease(wait=30)
    for _ in range(points):
        assert jobs, "no job became leasable within 30 s"
        job = jobs[0]
        await site.event(job, "started")
        await site.finish(job, float(job["points"][0]["params"]["x"]))
        sent = time.perf_counter()
        if len(latencies) + 1 == points:
            break
        if hold is not None and not latencies:
            await outlast_site_expiry(system, site.name, hold)
            sent = time.perf_counter()
        jobs = await site.lease(wait=30)
        latencies.append(time.perf_counter() - sent)
    total = time.perf_counter() - started
    commands = COMMANDS.count - commands_before
    periodic = COMMANDS.periodic - periodic_before
    kinds = COMMANDS.by_kind - kinds_before

    async def done() -> bool | None:
        view = await http.get(f"/api/v1/tasks/{task_id}", headers=auth)
        return True if view.json()["status"] == "done" else None

    await until(done, every=0.05)
    return {
        "overhead_per_point_ms": round(total / points * 1e3, 1),
        "result_to_leasable_p50_ms": round(statistics.median(latencies) * 1e3, 1),
        "result_to_leasable_p99_ms": round(percentile(latencies, 0.99) * 1e3, 1),
        "db_commands_per_point": round(commands / points, 1),
        "db_commands_per_point_events": round((commands - periodic) / points, 1),
        "db_commands_per_point_periodic": round(periodic / points, 1),
        "db_commands_by_kind": {
            name: round(n / points, 2) for name, n in kinds.most_common() if n / points >= 0.05
        },
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=60)
    parser.add_argument(
        "--reconcile",
        type=float,
        default=None,
        help=f"reconcile interval in seconds (product default {PRODUCT['reconcile_interval']:g})",
    )
    args = parser.parse_args()
    amqp = os.environ.get("HPO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    mongo = os.environ.get("HPO_TEST_MONGO_URL")
    server = None
    if not mongo:
        server = start_secantus(Path(tempfile.mkdtemp(prefix="bench-db-")))
        mongo = server.url
    try:
        for backend, bus in (("embedded (memory bus)", "memory://"), ("rabbitmq", amqp)):
            store = f"{mongo.rstrip('/')}/bench{uuid.uuid4().hex[:8]}"
            figures = await measure(
                backend, bus, store, args.points, reconcile_interval=args.reconcile
            )
            print(json.dumps(figures), flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
