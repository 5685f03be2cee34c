#!/usr/bin/env python3
"""Chaos harness: the whole system as separate processes, killed with ``kill -9`` in rounds.

Starts a private RabbitMQ node (deploy/dev/infra.py; never the machine's shared broker),
a private SecantusDB, moto's S3 server, the six services (``hpo-services run NAME``) and
one harvester (local batch, process runtime). Submits one task (by default 200 points,
nParallelEvaluation 6, a payload of 0.5-2 s that fails once for about 10 % of points),
then, while it runs, kills and restarts one kind of process per round: api, steering,
jobbuilder, broker, storage, monitor, harvester, a node agent, a payload, SecantusDB,
RabbitMQ (every kind in turn, in a shuffled order, until ``--rounds`` kills are done).
After each kill it waits for that kind's own sign of life: the restarted process alive
and the work only it does moving again (new points for steering, new jobs for the job
builder, assignments for the broker, leases for the api and the harvester, verified
artifacts for storage, the monitor answering, the killed job's point evaluated for a
node agent or a payload, evaluated points for the servers). Then it waits for the task
to end and prints one JSON line:

    points_lost                    points of the task not evaluated at the end
    results_counted_twice          points with more than one accepted result
    points_over_3_attempts         points attempted more than three times
    payload_runs_beyond_one_per_attempt   extra payload starts for one job (attempt)
    services_not_back              processes that exited, or did not recover in time
    recovery_seconds               per kind: p50 and max from the kill to the sign of life

    .venv/bin/python tests/chaos/chaos.py                       # the full run
    .venv/bin/python tests/chaos/chaos.py --points 20 --parallel 3 \\
        --kinds jobbuilder,node-agent,secantusdb,rabbitmq --rounds 4
    .venv/bin/python tests/chaos/chaos.py --replicas 2          # two of every service

With ``--replicas N`` every service runs as N processes against the same RabbitMQ and
database (the extra api and monitor on their own ports: the harvester talks to the
first api, the user to the last); kills hit the first process of a kind while the
others go on, and the line adds what each process did (``work_per_process``).

A payload killed with ``kill -9`` is a failed attempt (retried), as on a real site; a
killed node agent leaves its payload running unless the node agent's payload dies with it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient
from pymongo.errors import PyMongoError

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "deploy" / "dev"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import infra  # noqa: E402 - deploy/dev/infra.py

from shared.netutil import free_port  # noqa: E402
from shared.store.server import MongoServer, start_secantus  # noqa: E402

SERVICES = ("api", "steering", "jobbuilder", "broker", "storage", "monitor")
KINDS = (*SERVICES, "harvester", "node-agent", "payload", "secantusdb", "rabbitmq")
SPACE = {"x": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}}}
DB = "chaos"
ACTIVE_JOB_STATUSES = ("defined", "assigned", "leased", "running")


def log(message: str) -> None:
    print(f"chaos {time.strftime('%H:%M:%S')}: {message}", file=sys.stderr, flush=True)


class Proc:
    """One of our processes, restartable with the same command and environment."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.argv, self.env, self.logs = name, argv, env, logs
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.logs / f"{self.name}.log").open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.popen is not None:
            self.popen.kill()
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill9()


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def pids_matching(*needles: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            text = cmdline(int(entry.name))
            if text and all(n in text for n in needles):
                found.append(int(entry.name))
    return found


def percentile50(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else 0.0


class Chaos:
    def __init__(
        self, workdir: Path, points: int, parallel: int, seed: int, replicas: int = 1
    ) -> None:
        self.work = workdir
        self.replicas = replicas
        self.max_active_jobs = 0
        """The most jobs of the task seen active at once (nParallelEvaluation bounds it)."""
        self.ops_ports: dict[str, int] = {}
        """Each service process's operations listener (its /metrics)."""
        self.points = points
        self.parallel = parallel
        self.random = random.Random(seed)
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.markers = workdir / "markers"
        self.markers.mkdir()
        self.edge_root = workdir / "edge-root"
        self.procs: dict[str, Proc] = {}
        self.not_back: list[str] = []
        self.orphans: list[tuple[str, int]] = []
        """(job, pid) of the payloads running when their node agent was killed."""
        self.recovery: dict[str, list[float]] = {}
        self.rabbit: Any = None
        self.mongo: MongoServer | None = None
        self.mongo_port = free_port()
        self.s3: Proc | None = None
        self.s3_url = ""
        self.task_id = ""
        self.db: MongoClient[dict[str, Any]] | None = None

    # --- set-up -----------------------------------------------------------------------

    def start(self) -> None:
        self.rabbit = infra.start_private_rabbitmq(self.work / "rabbit")
        self.start_mongo()
        self.start_moto()
        api_port, monitor_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{api_port}"
        self.monitor = f"http://127.0.0.1:{monitor_port}"
        self.env = {
            **os.environ,
            "HPO_BUS_URL": self.rabbit.url,
            "HPO_MONGO_URL": f"mongodb://127.0.0.1:{self.mongo_port}/{DB}",
            "HPO_ARTIFACTS_URL": f"{self.s3_url}/chaos?secure=false&region=us-east-1",
            "HPO_PUBLIC_URL": self.api,
            "HPO_API_PORT": str(api_port),
            "HPO_MONITOR_PORT": str(monitor_port),
            "HPO_RECONCILE_INTERVAL": "1",
            "HPO_REPAIR_INTERVAL": "5",  # the product's 30 s, shortened as the pass is
            "HPO_HOME": str(self.work / "home"),
            "HPO_LEASE_SECONDS": "60",
            "HPO_SITE_ALIVE_SECONDS": "30",
            "HPO_RETRY_MAX_SECONDS": "2",
        }
        python = sys.executable
        self.apis = [self.api]
        for name in SERVICES:
            for replica in range(1, self.replicas + 1):
                key = name if replica == 1 else f"{name}-{replica}"
                env = {**self.env, "HPO_OPS_PORT": str(free_port())}
                if replica > 1 and name in ("api", "monitor"):
                    port = free_port()
                    env[f"HPO_{name.upper()}_PORT"] = str(port)
                    if name == "api":
                        self.apis.append(f"http://127.0.0.1:{port}")
                self.ops_ports[key] = int(env["HPO_OPS_PORT"])
                self.procs[key] = Proc(key, [python, "-m", "services", "run", name], env, self.logs)
                self.procs[key].start()
        for api in self.apis:
            self.wait(lambda api=api: self.http_ok(f"{api}/healthz"), "the api to answer", 300)
        site_token = self.token("ops", "edge:chaos")
        self.user_token = self.token("alice", "user")
        (self.work / "site.toml").write_text(
            f'site = "chaos"\napi_url = "{self.api}"\ntoken = "{site_token}"\n'
            f'root = "{self.edge_root}"\nslots = {self.parallel}\npoll_interval = 0.5\n'
            "heartbeat_interval = 1\nlost_after_intervals = 5\nlease_wait_seconds = 2\n"
            "kill_grace_seconds = 2\n"
        )
        harvester = [python, "-m", "edge", "harvester", "--config", str(self.work / "site.toml")]
        self.procs["harvester"] = Proc("harvester", harvester, self.env, self.logs)
        self.procs["harvester"].start()
        self.db = MongoClient(
            f"mongodb://127.0.0.1:{self.mongo_port}", serverSelectionTimeoutMS=2000
        )

    def start_moto(self) -> None:
        port = free_port()
        self.s3_url = f"s3://{infra.S3_CREDENTIALS}@127.0.0.1:{port}"
        self.s3 = Proc(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            dict(os.environ),
            self.logs,
        )
        self.s3.start()
        self.wait(lambda: self.http_ok(f"http://127.0.0.1:{port}/"), "moto's S3 server", 120)

    def start_mongo(self) -> None:
        self.mongo = start_secantus(self.work / "mongo", port=self.mongo_port, ready_timeout=120)

    def token(self, owner: str, scope: str) -> str:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "services",
                "admin",
                "create-token",
                "--owner",
                owner,
                "--scope",
                scope,
            ],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def submit(self) -> None:
        payload = (Path(__file__).parent / "payload.py").read_text()
        body = {
            "name": "chaos",
            "config": {
                "evaluationExec": f"{sys.executable} payload.py {self.markers}",
                "maxPoints": self.points,
                "nParallelEvaluation": self.parallel,
                "nPointsPerIteration": 2 * self.parallel,
                "minUnevaluatedPoints": self.parallel,
                "steering": {"algorithm": "random", "seed": 11},
            },
            "searchSpace": SPACE,
            "files": {"payload.py": payload},
        }
        reply = httpx.post(
            f"{self.apis[-1]}/api/v1/tasks",
            json=body,
            headers={"Authorization": f"Bearer {self.user_token}"},
            timeout=60,
        )
        if reply.status_code != 201:
            raise RuntimeError(f"the task was refused: {reply.status_code} {reply.text}")
        self.task_id = reply.json()["id"]
        log(f"task {self.task_id}: {self.points} points, {self.parallel} in parallel")

    # --- observation ------------------------------------------------------------------

    @staticmethod
    def http_ok(url: str) -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def counters(self) -> dict[str, int] | None:
        """What only one kind of process moves forward; None while the database is away."""
        assert self.db is not None
        db = self.db[DB]
        query = {"task_id": self.task_id}
        try:
            jobs = list(db["jobs"].find(query, {"status": 1, "generation": 1, "site": 1}))
            task = db["tasks"].find_one({"_id": self.task_id}, {"status": 1}) or {}
            active = sum(1 for j in jobs if j.get("status") in ACTIVE_JOB_STATUSES)
            self.max_active_jobs = max(self.max_active_jobs, active)
            return {
                "points": db["points"].count_documents(query),
                "evaluated": db["points"].count_documents({**query, "status": "evaluated"}),
                "jobs": len(jobs),
                "assigned": sum(1 for j in jobs if j.get("site")),
                "leases": sum(int(j.get("generation") or 0) for j in jobs),
                "verified": db["artifacts"].count_documents({**query, "verified": {"$ne": None}}),
                "over": int(task.get("status") in ("done", "failed", "cancelled")),
            }
        except PyMongoError:
            return None

    def point_evaluated(self, point_id: str) -> bool:
        assert self.db is not None
        try:
            doc = self.db[DB]["points"].find_one({"_id": point_id}, {"status": 1})
        except PyMongoError:
            return False
        return doc is not None and doc["status"] == "evaluated"

    def wait(self, ready: Callable[[], bool], what: str, limit: float) -> float | None:
        """Seconds until ``ready()``, or None after ``limit`` (a benchmark, not a test)."""
        start = time.monotonic()
        while not ready():
            self.check_processes()
            if time.monotonic() - start > limit:
                log(f"gave up waiting for {what} after {limit:.0f} s")
                return None
            time.sleep(0.2)
        return time.monotonic() - start

    def check_processes(self) -> None:
        for name, proc in self.procs.items():
            if proc.popen is not None and not proc.alive():
                code = proc.popen.returncode
                log(f"{name} exited ({code}); it did not come back by itself: restarting it")
                self.not_back.append(f"{name} (exited {code})")
                proc.start()

    # --- kills ------------------------------------------------------------------------

    def kill(self, kind: str) -> Callable[[], bool] | None:
        """Kill one ``kind`` and restart it; the sign of life to wait for (None: no
        victim of that kind right now)."""
        base: dict[str, int] = self.counters() or {}

        def moved(key: str) -> Callable[[], bool]:
            def check() -> bool:
                now = self.counters()
                return now is not None and (now[key] > base.get(key, 0) or bool(now["over"]))

            return check

        if kind in self.procs:
            self.procs[kind].kill9()
            # Counted from the kill: what the old process did before it does not count.
            base.update(self.counters() or {})
            self.procs[kind].start()
            proc = self.procs[kind]
            sign = {
                "api": lambda: self.http_ok(f"{self.api}/healthz") and moved("leases")(),
                "steering": lambda: moved("points")() or self.all_generated(),
                "jobbuilder": lambda: moved("jobs")() or moved("evaluated")(),
                "broker": moved("assigned"),
                "storage": moved("verified"),
                "monitor": lambda: self.http_ok(f"{self.monitor}/"),
                "harvester": moved("leases"),
            }[kind]
            return lambda: proc.alive() and sign()
        if kind == "secantusdb":
            assert self.mongo is not None
            self.mongo.kill()
            self.start_mongo()
            return moved("evaluated")
        if kind == "rabbitmq":
            self.rabbit.kill()
            base.update(self.counters() or {})
            self.rabbit.start()
            return moved("evaluated")
        needles = (
            ("edge.node", "run-job", str(self.edge_root))
            if kind == "node-agent"
            else ("payload.py", str(self.markers))
        )
        victims = pids_matching(*needles)
        if not victims:
            return None
        pid = self.random.choice(victims)
        job = self.job_of(pid, kind)
        if kind == "node-agent":  # its payloads should die with it
            work = str(self.edge_root / "jobs" / job)
            self.orphans += [
                (job, p)
                for p in pids_matching("payload.py", str(self.markers))
                if self.cwd_of(p).startswith(work)
            ]
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        point = job.rsplit(".a", 1)[0]
        log(f"killed the {kind} of job {job} (pid {pid})")
        return lambda: self.point_evaluated(point)

    def job_of(self, pid: int, kind: str) -> str:
        if kind == "node-agent":
            return Path(cmdline(pid).split("run-job", 1)[1].split()[0]).name
        return Path(self.cwd_of(pid)).parent.name

    @staticmethod
    def cwd_of(pid: int) -> str:
        try:
            return os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return ""

    def all_generated(self) -> bool:
        now = self.counters()
        return now is not None and now["points"] >= self.points

    def rounds(self, kinds: list[str], count: int, limit: float) -> int:
        """Kill ``count`` processes, cycling through ``kinds`` shuffled; returns the
        number of kills made before the task ended."""
        order: list[str] = []
        done = 0
        while done < count:
            if not order:
                order = list(kinds)
                self.random.shuffle(order)
            now = self.counters()
            if now is not None and now["over"]:
                log(f"the task ended after {done} kills")
                break
            kind = order.pop()
            log(f"round {done + 1}: kill -9 {kind}")
            start = time.monotonic()
            sign = self.kill(kind)
            if sign is None:
                log(f"no {kind} running right now; next round")
                order.insert(0, kind)
                time.sleep(0.5)
                continue
            waited = self.wait(sign, f"{kind} to recover", limit)
            if waited is None:
                self.not_back.append(f"{kind} (no sign of life within {limit:.0f} s)")
            else:
                elapsed = time.monotonic() - start
                self.recovery.setdefault(kind, []).append(elapsed)
                log(f"{kind} back after {elapsed:.1f} s")
            done += 1
        return done

    # --- the verdict ------------------------------------------------------------------

    def report(self, kills: int, elapsed: float) -> dict[str, Any]:
        assert self.db is not None
        db = self.db[DB]
        query = {"task_id": self.task_id}
        points = list(db["points"].find(query))
        task = db["tasks"].find_one({"_id": self.task_id}) or {}
        accepted: Counter[str] = Counter()
        for job in db["jobs"].find({**query, "status": "finished"}):
            for result in job.get("results") or []:
                if result.get("status", 0) == 0 and result.get("loss") is not None:
                    accepted[result["point_id"]] += 1
        starts = [e.name for e in (self.markers / "runs").iterdir() if not e.name.endswith(".end")]
        runs: Counter[str] = Counter(name.split("~", 1)[0] for name in starts)
        left_running = pids_matching("payload.py", str(self.markers))
        # A payload that went on after its node agent was killed ran beyond its attempt
        # (the point was retried meanwhile): it ended later, or it still runs.
        outlived = sum(
            1
            for job, pid in self.orphans
            if (self.markers / "runs" / f"{job}~{pid}.end").exists() or pid in left_running
        )
        return {
            "bench": "chaos",
            "points": self.points,
            "parallel": self.parallel,
            "replicas": self.replicas,
            "kills": kills,
            "task_status": task.get("status"),
            "points_lost": self.points - sum(p["status"] == "evaluated" for p in points),
            "results_counted_twice": sum(1 for n in accepted.values() if n > 1),
            "points_over_3_attempts": sum(1 for p in points if (p.get("attempts") or 0) > 3),
            "payload_runs_beyond_one_per_attempt": sum(n - 1 for n in runs.values() if n > 1)
            + outlived,
            "payloads_outliving_their_agent": outlived,
            "payloads_left_running": len(left_running),
            "max_active_jobs": self.max_active_jobs,
            "services_not_back": self.not_back,
            "recovery_seconds": {
                kind: {"p50": percentile50(times), "max": round(max(times), 1), "n": len(times)}
                for kind, times in sorted(self.recovery.items())
            },
            "work_per_process": self.work_per_process() if self.replicas > 1 else {},
            "elapsed_s": round(elapsed, 1),
            "machine": f"{os.uname().machine}, {os.cpu_count()} cores, Python "
            f"{sys.version.split()[0]}",
        }

    def work_per_process(self) -> dict[str, dict[str, float]]:
        """Per service process, what it did: points it applied, requests it answered."""
        done: dict[str, dict[str, float]] = {}
        for key, port in sorted(self.ops_ports.items()):
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
            counts = {"points_evaluated": 0.0, "http_requests": 0.0}
            for line in text.splitlines():
                if line.startswith("hpo_points_evaluated_total"):
                    counts["points_evaluated"] += float(line.rsplit(" ", 1)[1])
                elif line.startswith("hpo_http_requests_total{"):
                    counts["http_requests"] += float(line.rsplit(" ", 1)[1])
            done[key] = counts
        return done

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        for pid in pids_matching("payload.py", str(self.markers)) + pids_matching(
            "edge.node", str(self.edge_root)
        ):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.db is not None:
            self.db.close()
        if self.mongo is not None:
            self.mongo.stop()
        if self.s3 is not None:
            self.s3.stop()
        if self.rabbit is not None:
            self.rabbit.stop()


def run(
    workdir: Path,
    *,
    points: int,
    parallel: int,
    kinds: list[str],
    kills: int,
    seed: int = 1,
    replicas: int = 1,
    recovery_limit: float = 300.0,
    task_limit: float = 3600.0,
) -> dict[str, Any]:
    """Set up (``replicas`` processes of every service), run the task through ``kills``
    kills, wait for its end, tear down."""
    chaos = Chaos(workdir, points, parallel, seed, replicas)
    started = time.monotonic()
    try:
        chaos.start()
        chaos.submit()
        chaos.wait(
            lambda: (chaos.counters() or {}).get("evaluated", 0) >= min(3, points),
            "the first results",
            task_limit,
        )
        made = chaos.rounds(kinds, kills, recovery_limit)
        chaos.wait(lambda: bool((chaos.counters() or {}).get("over")), "the task's end", task_limit)
        # the last results' artifacts are verified, and any orphan payload finishes
        return chaos.report(made, time.monotonic() - started)
    finally:
        chaos.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=22, help="kills in all (default 22)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="what to kill, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--replicas", type=int, default=1, help="processes of every service (default 1)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    workdir = Path(tempfile.mkdtemp(prefix="hpo-chaos-"))
    try:
        result = run(
            workdir,
            points=args.points,
            parallel=args.parallel,
            kinds=kinds,
            kills=args.rounds,
            seed=args.seed,
            replicas=args.replicas,
        )
    finally:
        if args.keep:
            log(f"logs kept in {workdir / 'logs'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
