"""hpo-relay beside Optuna's own storages, in one run on one machine.

The contenders run here, now, on the same cores, so every ratio in the output compares
figures taken minutes apart under the same load:

* Optuna ``RDBStorage`` on the PostgreSQL at ``--postgres`` (the machine's, when one
  answers; otherwise SQLite in a temporary file, and the line says so), and Optuna's
  ``JournalFileBackend``; each with a no-op objective and the random sampler, in one
  process (ms per trial) and in ``--processes`` processes sharing the study (trials/s);
* hpo-relay's central batch path at parallelism 1 (``tests/bench/pipeline.py``: a no-op
  site, every result through steering, job builder, broker and the edge protocol;
  embedded memory bus and RabbitMQ, SecantusDB);
* hpo-relay online: ``--processes`` concurrent clients asking and telling on one study
  through the native API (embedded default), pairs/s;
* the scale modes of ``tests/bench/scale.py`` (``--modes``): the cost per new point in
  a task already holding ``--sizes`` points (growth), the batch path at parallelism 8
  on a site of 8 slots (p8), ``--tasks`` tasks at once (tasks), and ``--studies``
  online studies with ``--clients`` clients each (online).

Prints one JSON line per contender, then one per ratio with the issue's target beside it.
Run: python tests/bench/peers.py [--trials 200] [--points 60] [--processes 8]
[--modes growth p8 tasks online] [the sizes of scale.py's options]
(HPO_TEST_MONGO_URL / HPO_TEST_AMQP_URL when set, as pipeline.py.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import scale

MACHINE = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def say(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def _objective(trial: Any) -> float:
    return float(trial.suggest_float("x", 0.0, 1.0))


def _storage(kind: str, where: str) -> Any:
    import optuna

    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(where))
    return optuna.storages.RDBStorage(where)


def _load(kind: str, where: str, study: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(
        study_name=study, storage=_storage(kind, where), sampler=optuna.samplers.RandomSampler()
    )


def _worker(kind: str, where: str, study: str, trials: int, ready: Any, go: Any) -> None:
    """One of the parallel processes: imported and connected before the clock starts."""
    loaded = _load(kind, where, study)
    ready.release()
    go.wait()
    loaded.optimize(_objective, n_trials=trials)


def optuna_run(kind: str, where: str, trials: int, processes: int) -> float:
    """Seconds for ``trials`` trials in ``processes`` processes on a fresh study (the
    processes' start-up, imports and connections not counted)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"peers-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=_storage(kind, where))
    if processes == 1:
        loaded = _load(kind, where, name)
        started = time.perf_counter()
        loaded.optimize(_objective, n_trials=trials)
        elapsed = time.perf_counter() - started
    else:
        context = multiprocessing.get_context("spawn")
        ready, go = context.Semaphore(0), context.Event()
        share = [trials // processes + (i < trials % processes) for i in range(processes)]
        workers = [
            context.Process(target=_worker, args=(kind, where, name, n, ready, go)) for n in share
        ]
        for w in workers:
            w.start()
        for _ in workers:
            ready.acquire()
        started = time.perf_counter()
        go.set()
        for w in workers:
            w.join()
            if w.exitcode != 0:
                raise RuntimeError(f"an optuna worker exited with {w.exitcode}")
        elapsed = time.perf_counter() - started
    done = len(optuna.load_study(study_name=name, storage=_storage(kind, where)).trials)
    assert done == trials, (done, trials)
    return elapsed


def postgres_answers(url: str) -> bool:
    host, _, port = url.split("@", 1)[1].split("/", 1)[0].partition(":")
    try:
        with socket.create_connection((host, int(port or 5432)), timeout=2):
            return True
    except OSError:
        return False


def optuna_lines(postgres: str, trials: int, processes: int) -> list[dict[str, Any]]:
    lines = []
    tmp = tempfile.mkdtemp(prefix="peers-")
    rdb = postgres if postgres_answers(postgres) else f"sqlite:///{tmp}/optuna.db"
    backends = [
        ("rdb-postgresql" if rdb == postgres else "rdb-sqlite", "rdb", rdb),
        ("journal-file", "journal", f"{tmp}/journal.log"),
    ]
    for name, kind, where in backends:
        say(f"optuna {name}: {trials} trials in 1 and in {processes} processes")
        one = optuna_run(kind, where, trials, 1)
        many = optuna_run(kind, where, trials, processes)
        lines.append(
            {
                "bench": "peers",
                "contender": f"optuna {name}",
                "trials": trials,
                "p1_ms_per_trial": round(one / trials * 1e3, 2),
                f"p{processes}_trials_per_s": round(trials / many, 1),
                "machine": MACHINE,
            }
        )
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--points", type=int, default=60)
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--modes", nargs="*", choices=scale.MODES, default=scale.MODES)
    scale.add_arguments(parser)
    args = parser.parse_args()

    from shared.store.server import start_secantus
    from tests.bench.pipeline import measure

    peers = optuna_lines(args.postgres, args.trials, args.processes)
    for line in peers:
        print(json.dumps(line), flush=True)
    amqp = os.environ.get("HPO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    mongo = os.environ.get("HPO_TEST_MONGO_URL")
    server = None
    if not mongo:
        server = start_secantus(Path(tempfile.mkdtemp(prefix="peers-db-")))
        mongo = server.url
    try:
        ours = []
        for backend, bus in (("embedded (memory bus)", "memory://"), ("rabbitmq", amqp)):
            say(f"hpo-relay batch p1, {backend}: {args.points} points")
            line = await measure(backend, bus, mongo, args.points)
            print(json.dumps(line), flush=True)
            ours.append(line)
        one_study = await scale.online(mongo, 1, args.processes, args.pairs // args.processes)
        online = one_study["pairs_per_s"]
        print(
            json.dumps(
                {
                    **{k: v for k, v in one_study.items() if k != "pairs_per_s_target"},
                    "bench": "peers",
                    "contender": f"hpo-relay online, {args.processes} clients, one study",
                }
            ),
            flush=True,
        )
        scaled = await scale.run_modes(args, mongo, args.modes)
    finally:
        if server is not None:
            server.stop()
    rdb = peers[0]
    many = f"p{args.processes}_trials_per_s"
    for line in ours:
        ratio = line["overhead_per_point_ms"] / rdb["p1_ms_per_trial"]
        print(
            json.dumps(
                {
                    "bench": "peers_ratio",
                    "what": f"batch p1 ms per point, {line['backend']} / {rdb['contender']}",
                    "ratio": round(ratio, 2),
                    "target": "<= 1.0",
                }
            )
        )
    print(
        json.dumps(
            {
                "bench": "peers_ratio",
                "what": f"online pairs/s, {args.processes} clients on one study / "
                f"{rdb['contender']} trials/s in {args.processes} processes",
                "ratio": round(online / rdb[many], 2),
                "target": ">= 1.5",
            }
        )
    )
    if "p8" in scaled:
        p8 = scaled["p8"]
        print(
            json.dumps(
                {
                    "bench": "peers_ratio",
                    "what": f"batch p8 points/s, a site of 8 slots / {rdb['contender']} "
                    f"trials/s in {args.processes} processes",
                    "ratio": round(p8["points_per_s"] / rdb[many], 2),
                    "target": ">= 2.0",
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
