"""The scale targets of issue 12 that pipeline.py alone does not measure.

Four measurements, each a function that ``tests/bench/peers.py`` calls in the same run as
Optuna's figures (so the ratios compare figures taken minutes apart), and each a mode of
this script's own command line:

* ``growth``: central ms per new point (batch, parallelism 1) when the task already
  holds N points. The N points and their finished jobs are written straight into the
  database through the store port (``insert_many``), as the services would have left
  them: evaluated points, finished and applied jobs, the task's job count and best loss,
  the segment's point summary. Then the services start, a few warm-up points go through
  (the steering rebuilds its optimiser from the N stored points once, which is a
  restart's cost, not a point's), and ``--points`` more are timed one after the other,
  as in pipeline.py. One line per size, then the ratio of the cost at 10,000 (or the
  largest size below it) to the cost at 100 (target <= 1.2).
* ``p8``: one task at nParallelEvaluation 8 (16 points per round, a round when fewer
  than 8 are open) on a site of 8 slots, driven as a harvester drives it (one lease
  request at a time for as many jobs as there are free slots; each job reported
  started and finished at once): points/s and DB commands per point (target <= 8).
* ``tasks``: ``--tasks`` tasks at parallelism 1 at once on one such site with a slot
  per task: points/s in all (target >= 50) and, per task, the time from a result to
  the lease of its next job (the site always has a lease request waiting while a slot
  is free; target p99 <= 250 ms).
* ``online``: ``--studies`` studies with ``--clients`` clients each asking and telling
  through the native API at once (one warm-up pair per study first, untimed): pairs/s
  in all (target >= 200) and the pair's p50/p99. An ask that steering does not answer
  in time is refused with 503 and Retry-After; the client waits and asks again, as
  hpo's client does, and the line counts those refusals.

Every line says its machine and load average. The batch modes run on the embedded
default's memory bus and SecantusDB (a fresh database each), at the product defaults.
Run: python tests/bench/scale.py [--modes growth p8 tasks online] [--sizes 100 1000 10000]
[--points 30] [--p8-points 200] [--tasks 50] [--task-points 6] [--studies 50]
[--clients 50] [--pairs-per-client 2]
(HPO_TEST_MONGO_URL when set, otherwise it starts a SecantusDB).
``tests/integration/test_bench_scale.py`` runs each mode at a tiny size.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


from services.api.schemas import TaskSubmission
from services.api.submission import build_task
from shared.clock import utcnow
from shared.domain.models import Job, JobStatus, Point, PointOutcome, PointStatus, TaskStatus
from shared.netutil import retry_after
from shared.searchspace.points import canonical_key
from shared.store import Store, attempt_job_id, open_store
from tests.bench.pipeline import COMMANDS, MACHINE, PRODUCT, SPACE, heartbeating, percentile
from tests.integration.central import Central, FakeSite, central
from tests.waiting import until

SEED_BATCH = 5000
RETRIES = 3
"""Times an online client repeats an ask refused with 503 before it gives up."""
WARMUP = 3
"""Points through the pipeline before a pre-seeded task's clock starts."""


def say(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


@asynccontextmanager
async def database(server: str, prefix: str) -> AsyncIterator[str]:
    """A fresh database's URL on ``server`` (a ``mongodb://`` server, or ``memory://``
    for a store of the process's own), dropped afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    if server.startswith("memory:"):
        from shared.store.memory import MemoryStore

        try:
            yield f"memory://{name}"
        finally:
            MemoryStore.forget(f"memory://{name}")
        return
    try:
        yield f"{server.rstrip('/')}/{name}"
    finally:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(server)
        try:
            await client.drop_database(name)
        finally:
            await client.close()


@asynccontextmanager
async def services(store_url: str, bus_url: str = "memory://") -> AsyncIterator[Central]:
    with tempfile.TemporaryDirectory() as tmp:
        async with central(
            mongo_url=store_url,
            bus_url=bus_url,
            bus_prefix=f"scale{uuid.uuid4().hex[:8]}.",
            artifacts_url=f"file://{tmp}/artifacts",
            **PRODUCT,
        ) as system:
            yield system


def batch_config(points: int, parallel: int) -> dict[str, Any]:
    """A no-op task; at parallelism p a round of 2p points whenever fewer than p are
    open, so the slots never wait for a whole round."""
    config: dict[str, Any] = {
        "evaluationExec": "true",
        "maxPoints": points,
        "nParallelEvaluation": parallel,
        "nPointsPerIteration": 1 if parallel == 1 else 2 * parallel,
        "steering": {"algorithm": "random", "seed": 1},
    }
    if parallel > 1:
        config["minUnevaluatedPoints"] = parallel
    return config


# --- a site of k slots --------------------------------------------------------------


@dataclass
class Done:
    task_id: str
    leased: float
    finished: float


@dataclass
class Slots:
    """A fake site of ``k`` slots driven as a harvester drives its site: one lease
    request at a time for as many jobs as it has free slots (long-polling), each job
    leased reported started and finished at once, concurrently, freeing its slot,
    until ``total`` jobs are finished."""

    site: FakeSite
    total: int
    done: list[Done] = field(default_factory=list)

    async def run(self, k: int, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        running: set[asyncio.Task[None]] = set()

        async def report(job: dict[str, Any], leased: float) -> None:
            await self.site.event(job, "started")
            await self.site.finish(job, float(job["points"][0]["params"]["x"]))
            self.done.append(Done(job["task_id"], leased, time.perf_counter()))

        try:
            while len(self.done) < self.total:
                remaining = deadline - time.perf_counter()
                assert remaining > 0, f"{len(self.done)} of {self.total} jobs in {timeout} s"
                for finished in [t for t in running if t.done()]:
                    running.discard(finished)
                    finished.result()  # a failed report fails the run
                room = k - len(running)
                if room == 0:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                jobs = await self.site.lease(room, wait=min(1.0, remaining))
                leased = time.perf_counter()
                running.update(asyncio.create_task(report(job, leased)) for job in jobs)
            await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()

    def most_at_once(self) -> int:
        """The most jobs held by the slots at one time."""
        edges = sorted([(d.leased, 1) for d in self.done] + [(d.finished, -1) for d in self.done])
        held = most = 0
        for _, step in edges:
            held += step
            most = max(most, held)
        return most

    def waits(self) -> list[float]:
        """Per task, from each result to the lease of the task's next job (tasks at
        parallelism 1: the next job exists only after the result)."""
        by_task: dict[str, list[Done]] = {}
        for d in self.done:
            by_task.setdefault(d.task_id, []).append(d)
        waits = []
        for jobs in by_task.values():
            jobs.sort(key=lambda d: d.leased)
            waits += [b.leased - a.finished for a, b in itertools.pairwise(jobs)]
        return waits


@dataclass
class Spent:
    """Database commands by kind, and their milliseconds by kind."""

    commands: Counter[str]
    ms: Counter[str]

    @classmethod
    def now(cls) -> Spent:
        micros = COMMANDS.micros_by_kind
        return cls(Counter(COMMANDS.all_by_kind), Counter({k: v / 1e3 for k, v in micros.items()}))

    def since(self) -> Spent:
        """What was spent from this snapshot until now."""
        now = Spent.now()
        return Spent(now.commands - self.commands, now.ms - self.ms)

    def per(self, n: int, prefix: str, top: int = 10) -> dict[str, Any]:
        """Per point (or pair), the most frequent kinds and the slowest in all."""
        return {
            f"db_commands_per_{prefix}_by_kind": {
                k: round(v / n, 2) for k, v in self.commands.most_common(top)
            },
            f"db_ms_per_{prefix}_by_kind": {
                k: round(v / n, 1) for k, v in self.ms.most_common(top)
            },
        }


async def submit(http: httpx.AsyncClient, user: str, config: dict[str, Any]) -> str:
    reply = await http.post(
        "/api/v1/tasks",
        json={"config": config, "searchSpace": SPACE},
        headers={"Authorization": f"Bearer {user}"},
    )
    reply.raise_for_status()
    task_id: str = reply.json()["id"]
    return task_id


async def all_done(system: Central, task_ids: list[str], timeout: float = 120) -> None:
    """Every task ended done (its points all counted, none lost or failed)."""

    async def ended() -> bool | None:
        for task_id in task_ids:
            task = await system.ctx.store.tasks.get(task_id)
            assert task is not None
            assert task.status is not TaskStatus.FAILED, task.reason
            if task.status is not TaskStatus.DONE:
                return None
        return True

    await asyncio.wait_for(until(ended, every=0.05), timeout)


async def run_slots(
    server: str, tasks: int, points_each: int, parallel: int, slots: int, timeout: float
) -> tuple[Slots, float, int, Spent]:
    """Submit the tasks, run the slots until every point is finished; the slots, the
    seconds from their start to the last result, and the commands sent meanwhile (in
    all and by kind)."""
    async with (
        database(server, "slots") as store_url,
        services(store_url) as system,
        httpx.AsyncClient(
            base_url=system.api_url,
            timeout=120,
            limits=httpx.Limits(max_connections=slots + 20, max_keepalive_connections=slots + 20),
        ) as http,
    ):
        user = await system.token("bench", ["user"])
        site = FakeSite(http, "bench", await system.token("ops", ["edge:bench"]))
        ids = [await submit(http, user, batch_config(points_each, parallel)) for _ in range(tasks)]
        driver = Slots(site, tasks * points_each)
        alive = PRODUCT["site_alive_seconds"]
        async with heartbeating(site, alive / 4, free=slots):
            commands, kinds = COMMANDS.count, Spent.now()
            started = time.perf_counter()
            await driver.run(slots, timeout)
            elapsed = max(d.finished for d in driver.done) - started
            commands, kinds = COMMANDS.count - commands, kinds.since()
        await all_done(system, ids)
    return driver, elapsed, commands, kinds


async def p8(mongo: str, points: int, parallel: int = 8) -> dict[str, Any]:
    say(f"hpo-relay batch p{parallel}: {points} points, a site of {parallel} slots")
    driver, elapsed, commands, kinds = await run_slots(
        mongo, 1, points, parallel, parallel, timeout=600
    )
    return {
        "bench": "pipeline_parallel",
        "backend": "embedded (memory bus)",
        "nParallelEvaluation": parallel,
        "slots": parallel,
        "points": points,
        "points_per_s": round(points / elapsed, 1),
        "most_jobs_at_once": driver.most_at_once(),
        "db_commands_per_point": round(commands / points, 1),
        "db_commands_per_point_target": "<= 8",
        **kinds.per(points, "point"),
        "machine": MACHINE,
        "load_average_1m": load(),
    }


async def many_tasks(mongo: str, tasks: int, points_each: int) -> dict[str, Any]:
    say(f"hpo-relay: {tasks} tasks at p1 at once, {points_each} points each")
    driver, elapsed, commands, kinds = await run_slots(
        mongo, tasks, points_each, 1, tasks, timeout=1800
    )
    total = tasks * points_each
    waits = driver.waits()
    return {
        "bench": "concurrent_tasks",
        "backend": "embedded (memory bus)",
        "tasks": tasks,
        "points_per_task": points_each,
        "points_per_s": round(total / elapsed, 1),
        "points_per_s_target": ">= 50",
        "result_to_leasable_p50_ms": round(statistics.median(waits) * 1e3, 1),
        "result_to_leasable_p99_ms": round(percentile(waits, 0.99) * 1e3, 1),
        "result_to_leasable_p99_target": "<= 250 ms",
        "result_to_leasable_samples": len(waits),
        "db_commands_per_point": round(commands / total, 1),
        **kinds.per(total, "point"),
        "machine": MACHINE,
        "load_average_1m": load(),
    }


# --- growth: a task that already holds N points -------------------------------------


async def seed_history(store: Store, owner: str, held: int, more: int) -> str:
    """A running task of ``held + more`` points of which the first ``held`` are
    evaluated, each with its finished, applied job, written through the store port."""
    submission = TaskSubmission.model_validate(
        {"config": batch_config(held + more, 1), "searchSpace": SPACE}
    )
    task, segments = build_task(submission, owner, max_files_bytes=1_000_000)
    rng = random.Random(1)
    start = utcnow() - timedelta(seconds=held)
    best: tuple[float, str] | None = None
    points: list[Point] = []
    jobs: list[Job] = []

    async def flush() -> None:
        await store.points.insert_many(points)
        await store.jobs.insert_many(jobs)
        points.clear()
        jobs.clear()

    for index in range(held):
        params = {"x": rng.random()}
        point_id = f"{task.id}.main.{index}"
        job_id = attempt_job_id(point_id, 1)
        loss = float(params["x"])
        created = start + timedelta(seconds=index)
        finished = created + timedelta(seconds=0.8)
        points.append(
            Point(
                id=point_id,
                task_id=task.id,
                segment="main",
                index=index,
                params=params,
                key=canonical_key(params),
                status=PointStatus.EVALUATED,
                loss=loss,
                attempts=1,
                job_id=job_id,
                counted_job_id=job_id,
                created=created,
                evaluated=finished,
            )
        )
        jobs.append(
            Job(
                id=job_id,
                task_id=task.id,
                owner=owner,
                segment="main",
                point_ids=[point_id],
                attempt=1,
                status=JobStatus.FINISHED,
                site="bench",
                generation=1,
                results=[PointOutcome(point_id=point_id, loss=loss)],
                applied=True,
                created=created,
                updated=finished,
                stamps=dict.fromkeys(("defined", "assigned", "leased", "running"), created)
                | {"finished": finished},
            )
        )
        if best is None or loss < best[0]:
            best = (loss, point_id)
        if len(points) >= SEED_BATCH:
            await flush()
    await flush()
    await store.segments.insert_many(segments)
    task.status = TaskStatus.RUNNING
    task.jobs_counted = held
    if best is not None:
        task.best_loss, task.best_point_id = best
    await store.tasks.insert(task)
    await store.summaries.counts(task.id, "main")  # as the job builder keeps it
    return task.id


async def growth_one(mongo: str, held: int, points: int) -> dict[str, Any]:
    async with database(mongo, "growth") as url:
        return await growth_in(url, held, points)


async def growth_in(url: str, held: int, points: int) -> dict[str, Any]:
    say(f"growth: seeding {held} points and their jobs")
    seeding = time.perf_counter()
    store = open_store(url)
    await store.start()
    try:
        task_id = await seed_history(store, "bench", held, WARMUP + points)
    finally:
        await store.close()
    seed_s = time.perf_counter() - seeding
    say(f"growth: {held} points seeded in {seed_s:.0f} s; {WARMUP} warm-up and {points} timed")
    async with (
        services(url) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=120) as http,
    ):
        site = FakeSite(http, "bench", await system.token("ops", ["edge:bench"]))
        async with heartbeating(site, PRODUCT["site_alive_seconds"] / 4):
            warm_started = time.perf_counter()
            figures = await serial(site, WARMUP, points)
            warm_s = round(figures.pop("warmup_s") - warm_started, 1)
        await all_done(system, [task_id])
    return {
        "bench": "growth",
        "backend": "embedded (memory bus)",
        "points_held": held,
        "points": points,
        **figures,
        "warmup_points": WARMUP,
        "warmup_s": warm_s,
        "seed_s": round(seed_s, 1),
        "settings": PRODUCT,
        "machine": MACHINE,
        "load_average_1m": load(),
    }


async def serial(site: FakeSite, warmup: int, points: int) -> dict[str, Any]:
    """``warmup`` then ``points`` jobs one after the other; the figures of the last
    ``points`` (and when the warm-up ended, as ``warmup_s``)."""
    latencies: list[float] = []
    started = commands = 0.0
    kinds = Spent.now()
    for n in range(warmup + points):
        sent = time.perf_counter()
        deadline = sent + (900 if n == 0 else 60)
        jobs: list[dict[str, Any]] = []
        while not jobs:  # the first lease waits for the optimiser's rebuild
            assert time.perf_counter() < deadline, f"no job leasable for point {n}"
            jobs = await site.lease(wait=30)
        if n >= warmup:
            latencies.append(time.perf_counter() - sent)
        job = jobs[0]
        await site.event(job, "started")
        await site.finish(job, float(job["points"][0]["params"]["x"]))
        if n + 1 == warmup:
            started, commands, kinds = (
                time.perf_counter(),
                COMMANDS.count,
                Spent.now(),
            )
    total = time.perf_counter() - started
    spent, kinds = COMMANDS.count - commands, kinds.since()
    return {
        "ms_per_new_point": round(total / points * 1e3, 1),
        "result_to_leasable_p50_ms": round(statistics.median(latencies) * 1e3, 1),
        "result_to_leasable_p99_ms": round(percentile(latencies, 0.99) * 1e3, 1),
        "db_commands_per_point": round(spent / points, 1),
        **kinds.per(points, "point"),
        "warmup_s": started,
    }


async def growth(mongo: str, sizes: list[int], points: int) -> list[dict[str, Any]]:
    lines = []
    for held in sizes:
        line = await growth_one(mongo, held, points)
        print(json.dumps(line), flush=True)
        lines.append(line)
    return lines


def growth_ratio(lines: list[dict[str, Any]]) -> dict[str, Any] | None:
    """cost at 10,000 (or the largest size up to it) / cost at the smallest size."""
    small = min(lines, key=lambda line: line["points_held"])
    below = [line for line in lines if line["points_held"] <= 10_000] or lines
    big = max(below, key=lambda line: line["points_held"])
    if big is small:
        return None
    return {
        "bench": "peers_ratio",
        "what": f"growth: ms per new point with {big['points_held']} points held / "
        f"with {small['points_held']}",
        "ratio": round(big["ms_per_new_point"] / small["ms_per_new_point"], 2),
        "target": "<= 1.2",
    }


# --- online: many studies, many clients ---------------------------------------------


async def online(
    mongo: str,
    studies: int,
    clients: int,
    pairs_per_client: int,
    connections: int = 100,
    timeout: float = 300,
) -> dict[str, Any]:
    """ask+tell pairs/s of ``clients`` concurrent clients on each of ``studies``
    studies, through the native API (embedded default), over at most ``connections``
    HTTP connections at once (the clients beyond wait for one). A pair that fails is
    counted by its error and the client goes on; the clock stops at ``timeout``, the
    pairs unfinished then counted as failed."""
    from tests.integration.test_online import steering_serves

    say(f"hpo-relay online: {studies} studies x {clients} clients, {pairs_per_client} pairs each")
    everyone = studies * clients
    async with database(mongo, "online") as url, services(url) as system:
        await steering_serves(system)
        token = await system.token("bench", ["user"])
        async with httpx.AsyncClient(
            base_url=system.api_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=600,
            limits=httpx.Limits(
                max_connections=min(everyone, connections),
                max_keepalive_connections=min(everyone, connections),
            ),
        ) as http:
            refused = 0

            async def pair(study: str) -> float:
                """One ask and its tell; an ask refused with 503 and Retry-After (steering
                did not answer in time) is repeated after that pause, as hpo's client
                does, and counted."""
                nonlocal refused
                started = time.perf_counter()
                for _ in range(RETRIES):
                    reply = await http.post(f"/api/v1/studies/{study}/ask")
                    pause = retry_after(reply.headers.get("Retry-After"))
                    if reply.status_code != 503 or pause is None:
                        break
                    refused += 1
                    await asyncio.sleep(pause)
                reply.raise_for_status()
                trial = reply.json()
                told = await http.post(
                    f"/api/v1/studies/{study}/tell",
                    json={"trial": trial["trial"], "loss": trial["params"]["x"]},
                )
                told.raise_for_status()
                return time.perf_counter() - started

            ids = []
            for n in range(studies):
                reply = await http.post(
                    "/api/v1/studies",
                    json={
                        "title": f"scale-{n}",
                        "properties": {"x": "optuna#uniform(0, 1)"},
                        "sampler": {"name": "RandomSampler", "args": {"seed": n}},
                    },
                )
                reply.raise_for_status()
                ids.append(reply.json()["id"])
            await asyncio.gather(*(pair(s) for s in ids))  # each study's optimiser built

            times: list[float] = []
            failures: Counter[str] = Counter()

            async def client(study: str) -> None:
                for _ in range(pairs_per_client):
                    try:
                        times.append(await pair(study))
                    except httpx.HTTPError as exc:  # counted, and the client goes on
                        failures[type(exc).__name__] += 1

            commands, kinds = COMMANDS.count, Spent.now()
            started = time.perf_counter()
            everyone_asks = asyncio.gather(*(client(s) for s in ids for _ in range(clients)))
            try:
                await asyncio.wait_for(everyone_asks, timeout)
            except TimeoutError:
                failures["unfinished at the time limit"] = studies * clients * pairs_per_client - (
                    len(times) + sum(failures.values())
                )
            elapsed = time.perf_counter() - started
            commands, kinds = COMMANDS.count - commands, kinds.since()
    answered = max(1, len(times))
    return {
        "bench": "online_many",
        "backend": "embedded (memory bus)",
        "studies": studies,
        "clients_per_study": clients,
        "pairs": len(times),
        "pairs_failed": dict(failures),
        "http_connections": min(everyone, connections),
        "pairs_per_s": round(len(times) / elapsed, 1),
        "pairs_per_s_target": ">= 200",
        "pair_p50_ms": round(statistics.median(times) * 1e3, 1) if times else None,
        "pair_p99_ms": round(percentile(times, 0.99) * 1e3, 1) if times else None,
        "asks_refused_503": refused,
        "db_commands_per_pair": round(commands / answered, 1),
        **kinds.per(answered, "pair"),
        "machine": MACHINE,
        "load_average_1m": load(),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--growth-points", type=int, default=30)
    parser.add_argument("--p8-points", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--task-points", type=int, default=6)
    parser.add_argument("--studies", type=int, default=50)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--pairs-per-client", type=int, default=2)
    parser.add_argument(
        "--connections",
        type=int,
        default=100,
        help="most HTTP connections the online clients share (a client waits for one)",
    )


async def run_modes(args: argparse.Namespace, mongo: str, modes: list[str]) -> dict[str, Any]:
    """Each mode's lines printed as they come; returned by mode for the ratios."""
    out: dict[str, Any] = {}
    if "growth" in modes:
        out["growth"] = await growth(mongo, args.sizes, args.growth_points)
        ratio = growth_ratio(out["growth"])
        if ratio is not None:
            print(json.dumps(ratio), flush=True)
    if "p8" in modes:
        out["p8"] = await p8(mongo, args.p8_points)
        print(json.dumps(out["p8"]), flush=True)
    if "tasks" in modes:
        out["tasks"] = await many_tasks(mongo, args.tasks, args.task_points)
        print(json.dumps(out["tasks"]), flush=True)
    if "online" in modes:
        out["online"] = await online(
            mongo, args.studies, args.clients, args.pairs_per_client, args.connections
        )
        print(json.dumps(out["online"]), flush=True)
    return out


MODES = ["growth", "p8", "tasks", "online"]


async def main() -> None:
    from shared.store.server import start_secantus

    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    add_arguments(parser)
    args = parser.parse_args()
    mongo = os.environ.get("HPO_TEST_MONGO_URL")
    server = None
    if not mongo:
        server = start_secantus(Path(tempfile.mkdtemp(prefix="scale-db-")))
        mongo = server.url
    try:
        await run_modes(args, mongo, args.modes)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
