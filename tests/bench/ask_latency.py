"""Ask latency through the service against the bare sampler, at 1k and 10k evaluated points.

Through the service: a Hopaas-compatible ``POST /api/ask/{token}`` (api → bus
request/reply → the steering owner's kept optimiser → stored trial → reply) on the
embedded default's memory bus and a fresh SecantusDB, with the study's history inserted
directly into the database first. The first ask after that makes the steering rebuild
the optimiser from the 1k or 10k stored points (what a restart or a takeover costs):
it is timed on its own (``rebuild_s``; it may outlast the api's ask timeout, in which
case the bench asks again, for up to an hour, until the rebuilt optimiser answers).
Then ``--asks`` asks, each followed by a tell, give p50 and p99. In-process: the same
sampler with the same history, one ``ask`` then ``tell`` per measurement (NGOpt with the
budget a study's optimiser plans for, ``STUDY_BUDGET``). Four float dimensions.
Prints one JSON line per sampler and history size.

Two set-ups, side by side: ``embedded`` runs every service in the bench's own process
on the memory bus (the embedded default, and one GIL for client, api and steering);
``deployed`` runs the api and steering as their own processes
(``python -m services run api|steering``) on RabbitMQ, as a deployment does.

Run: python tests/bench/ask_latency.py [--sizes 1000 10000] [--asks 20]
[--modes embedded deployed] [--amqp-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import optuna
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.api.online import STUDY_BUDGET
from shared.domain.models import Point, PointStatus
from shared.netutil import free_port
from shared.searchspace import canonical_key
from shared.store.base import to_doc
from shared.store.mongo import database_name
from shared.store.server import start_secantus
from tests.conftest import delete_bus_objects
from tests.integration.central import central

REPO = Path(__file__).resolve().parents[2]
SAMPLERS: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {  # Hopaas name -> bare
    "TPESampler": lambda: optuna.samplers.TPESampler(seed=0, multivariate=True, constant_liar=True),
    "RandomSampler": lambda: optuna.samplers.RandomSampler(seed=0),
    "CmaEsSampler": lambda: optuna.samplers.CmaEsSampler(seed=0),
}
NGOPT = "nevergrad:NGOpt"
DIMS = 4
REBUILD_WAIT = 3600.0
"""How long the first ask may be retried while the steering rebuilds the optimiser."""


class AskFailedError(RuntimeError):
    """The service did not answer an ask (e.g. the draw outlasted the ask timeout)."""


def properties(title: str, sampler: str) -> dict[str, Any]:
    props: dict[str, Any] = {f"x{i}": "optuna#uniform(0, 1)" for i in range(DIMS)}
    props["hopaas_config"] = {
        "title": title,
        "direction": "minimize",
        "sampler": {"name": sampler, "args": {}},
    }
    return props


async def first_ask(http: httpx.AsyncClient, token: str, props: dict[str, Any]) -> dict[str, Any]:
    """The study's first trial, once steering serves (it starts after the api: an ask
    before that is refused with 503)."""
    deadline = time.monotonic() + 60
    while True:
        reply = await http.post(f"/api/ask/{token}", json=props)
        if reply.status_code == 200:
            trial: dict[str, Any] = reply.json()
            return trial
        if reply.status_code != 503 or time.monotonic() > deadline:
            raise AskFailedError(f"{reply.status_code}: {reply.text[:200]}")
        await asyncio.sleep(0.2)


def percentile(times: list[float], q: float) -> float:
    return float(np.percentile(np.array(times), q)) * 1e3


def bare_ngopt_ms(size: int, asks: int) -> tuple[float, float]:
    """NGOpt told ``size`` evaluations of its own asks, as the kept optimiser is, with
    the budget and workers the steering gives an online study's (so the same choice of
    algorithm: NGOpt chooses it from the budget)."""
    import nevergrad as ng

    space = ng.p.Dict(**{f"x{i}": ng.p.Scalar(lower=0, upper=1) for i in range(DIMS)})
    space.random_state = np.random.RandomState(0)
    opt = ng.optimizers.NGOpt(space, budget=STUDY_BUDGET, num_workers=2)
    for _ in range(size):
        candidate = opt.ask()
        opt.tell(candidate, sum(v * v for v in candidate.value.values()))
    times = []
    for _ in range(asks):
        started = time.perf_counter()
        candidate = opt.ask()
        times.append(time.perf_counter() - started)
        opt.tell(candidate, 1.0)
    return percentile(times, 50), percentile(times, 99)


def bare_ms(sampler: str, size: int, asks: int) -> tuple[float, float]:
    if sampler == NGOPT:
        return bare_ngopt_ms(size, asks)
    dists: dict[str, optuna.distributions.BaseDistribution] = {
        f"x{i}": optuna.distributions.FloatDistribution(0, 1) for i in range(DIMS)
    }
    rng = np.random.default_rng(0)
    study = optuna.create_study(sampler=SAMPLERS[sampler]())
    trials = []
    for _ in range(size):
        params = {k: float(rng.random()) for k in dists}
        trials.append(
            optuna.trial.create_trial(
                params=params, distributions=dists, value=sum(v * v for v in params.values())
            )
        )
    study.add_trials(trials)
    times = []
    for _ in range(asks):
        started = time.perf_counter()
        trial = study.ask(dists)
        times.append(time.perf_counter() - started)
        study.tell(trial, 1.0)
    return percentile(times, 50), percentile(times, 99)


async def measure(
    http: httpx.AsyncClient,
    token: str,
    points: AsyncCollection[dict[str, Any]],
    sampler: str,
    size: int,
    asks: int,
) -> tuple[float, float, float]:
    """p50 and p99 of an ask in ms, and the first ask's rebuild in seconds: a study is
    opened, ``size - 1`` evaluated points are written into ``points`` (the database's
    collection), then asked for."""
    props = properties(f"bench-{sampler}-{size}", sampler)
    first = await first_ask(http, token, props)
    study_id, _ = first["hopaas_trial"].split(":")
    await http.post(f"/api/tell/{token}", json={"hopaas_trial": first["hopaas_trial"], "loss": 1.0})
    rng = np.random.default_rng(0)
    docs = []
    for index in range(1, size):
        params = {f"x{i}": float(rng.random()) for i in range(DIMS)}
        point = Point(
            id=f"{study_id}.main.{index}",
            task_id=study_id,
            segment="main",
            index=index,
            params=params,
            key=canonical_key(params),
            status=PointStatus.EVALUATED,
            loss=sum(v * v for v in params.values()),
        )
        docs.append(to_doc(point))
    for start in range(0, len(docs), 1000):
        await points.insert_many(docs[start : start + 1000])
    started = time.perf_counter()
    while True:  # the rebuild may outlast the api's ask timeout: ask again
        reply = await http.post(f"/api/ask/{token}", json=props)
        if reply.status_code == 200:
            break
        if time.perf_counter() - started > REBUILD_WAIT:
            raise AskFailedError(f"{reply.status_code}: {reply.text[:200]}")
    rebuild = time.perf_counter() - started
    trial = reply.json()
    await http.post(f"/api/tell/{token}", json={"hopaas_trial": trial["hopaas_trial"], "loss": 0.5})
    times = []
    for _ in range(asks):
        started = time.perf_counter()
        reply = await http.post(f"/api/ask/{token}", json=props)
        if reply.status_code != 200:
            raise AskFailedError(f"{reply.status_code}: {reply.text[:200]}")
        trial = reply.json()
        times.append(time.perf_counter() - started)
        await http.post(
            f"/api/tell/{token}", json={"hopaas_trial": trial["hopaas_trial"], "loss": 0.5}
        )
    return percentile(times, 50), percentile(times, 99), rebuild


async def embedded_ms(mongo: str, sampler: str, size: int, asks: int) -> tuple[float, float, float]:
    """The embedded default: every service in this process, on the memory bus."""
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            central(
                mongo_url=f"{mongo}/ask{uuid.uuid4().hex[:8]}",
                bus_url="memory://",
                bus_prefix=f"ask{uuid.uuid4().hex[:8]}.",
                artifacts_url=f"file://{tmp}/artifacts",
                home=Path(tmp),
                reconcile_interval=2.0,
            ) as system,
            httpx.AsyncClient(base_url=system.api_url, timeout=600) as http,
        ):
            token = await system.token("bench", ["user"])
            points = system.ctx.store.points.col
            return await measure(http, token, points, sampler, size, asks)


async def deployed_ms(
    mongo: str, amqp: str, sampler: str, size: int, asks: int
) -> tuple[float, float, float]:
    """As deployed: the api and steering each in its own process
    (``python -m services run api|steering``), on RabbitMQ; the client is this process."""
    prefix = f"ask{uuid.uuid4().hex[:8]}."
    mongo_url = f"{mongo}/ask{uuid.uuid4().hex[:8]}"
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "HPO_BUS_URL": amqp,
            "HPO_BUS_PREFIX": prefix,
            "HPO_MONGO_URL": mongo_url,
            "HPO_ARTIFACTS_URL": f"file://{tmp}/artifacts",
            "HPO_DEV_MODE": "1",
            "HPO_PUBLIC_URL": api,
            "HPO_API_PORT": str(api_port),
            "HPO_MONITOR_PORT": str(free_port()),
            "HPO_OPS_PORT": "0",
            "HPO_HOME": tmp,
        }
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
        try:
            for name in ("api", "steering"):
                log = Path(tmp, f"{name}.log").open("ab")  # noqa: SIM115 - the process keeps it
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "services", "run", name],
                        cwd=REPO,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
                log.close()
            token = subprocess.run(
                [sys.executable, "-m", "services", "admin", "create-token", "--owner", "bench"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            async with httpx.AsyncClient(base_url=api, timeout=600) as http:
                await until_up(http, procs)
                points = client[database_name(mongo_url)]["points"]
                return await measure(http, token, points, sampler, size, asks)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
            await client.close()
            await delete_bus_objects(amqp, prefix)


async def until_up(http: httpx.AsyncClient, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if any(proc.poll() is not None for proc in procs):
            raise AskFailedError("a service exited at start")
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get("/healthz")).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise AskFailedError("the api did not come up in 60 s")
        await asyncio.sleep(0.3)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--asks", type=int, default=20)
    parser.add_argument("--samplers", nargs="+", default=[*SAMPLERS, NGOPT])
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["embedded", "deployed"],
        default=["embedded", "deployed"],
        help="embedded: all services in the bench's process on the memory bus;"
        " deployed: api and steering in their own processes on RabbitMQ",
    )
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument(
        "--ngopt-max",
        type=int,
        default=10_000,
        help="largest history for NGOpt (Nevergrad's tells cost some 5 ms each with a"
        " study's budget: 10k takes about a minute to set up, bare and rebuilt alike)",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    server = start_secantus(Path(tempfile.mkdtemp(prefix="bench-db-")))
    try:
        for sampler in args.samplers:
            for size in args.sizes:
                if sampler == NGOPT and size > args.ngopt_max:
                    skipped = {"bench": "ask_latency", "sampler": sampler, "evaluated": size}
                    print(json.dumps(skipped | {"skipped": "above --ngopt-max"}), flush=True)
                    continue
                bare, bare99 = bare_ms(sampler, size, args.asks)
                line: dict[str, Any] = {
                    "bench": "ask_latency",
                    "sampler": sampler,
                    "evaluated": size,
                    "bare_p50_ms": round(bare, 2),
                    "bare_p99_ms": round(bare99, 2),
                }
                for mode in args.modes:
                    try:
                        if mode == "embedded":
                            found = await embedded_ms(server.url, sampler, size, args.asks)
                        else:
                            found = await deployed_ms(
                                server.url, args.amqp_url, sampler, size, args.asks
                            )
                    except AskFailedError as exc:
                        line[f"{mode}_error"] = str(exc)
                        continue
                    p50, p99, rebuild = found
                    line |= {
                        f"{mode}_p50_ms": round(p50, 1),
                        f"{mode}_p99_ms": round(p99, 1),
                        f"{mode}_ratio_p50": round(p50 / bare, 2),
                        f"{mode}_rebuild_s": round(rebuild, 1),
                    }
                print(json.dumps(line), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
