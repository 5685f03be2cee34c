"""The whole system as separate OS processes on real servers.

Six services (``hpo-services run NAME`` each) on RabbitMQ, SecantusDB and moto's S3,
one harvester (``hpo-edge harvester``) running payloads through the local batch system,
under ``unshare -n`` where the machine allows it, so the compute side provably works
without a network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.assembly import SERVICE_NAMES
from shared.netutil import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.rabbitmq,
    pytest.mark.mongo,
    pytest.mark.s3,
    pytest.mark.timeout(400),
]

REPO = Path(__file__).resolve().parents[2]
SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -1.0, "high": 1.0}},
    "n": {"method": "categorical", "dimension": {"categories": [0, 1]}},
}


def network_isolation_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.how: dict[str, tuple[list[str], dict[str, str]]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.how[name] = (args, env)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.procs.append((name, proc))

    def kill9_and_restart(self, name: str) -> None:
        """Crash a process the hard way and start it again with the same arguments."""
        for i, (proc_name, proc) in enumerate(self.procs):
            if proc_name == name:
                proc.kill()
                proc.wait()
                self.procs.pop(i)
                self.start(name, *self.how[name])
                return
        raise KeyError(name)

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text()[-3000:]
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for _name, proc in self.procs:
            proc.terminate()
        for _name, proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def system(
    amqp_url: str,
    bus_prefix: str,
    mongo_db_url: str,
    s3_bucket_url: str,
    tmp_path: Path,
    amqp_prefix_cleanup: list[str],
) -> Iterator[dict[str, Any]]:
    amqp_prefix_cleanup.append(amqp_url)
    api_port = free_port()
    env = {
        **os.environ,
        "HPO_BUS_URL": amqp_url,
        "HPO_BUS_PREFIX": bus_prefix,
        "HPO_MONGO_URL": mongo_db_url,
        "HPO_ARTIFACTS_URL": s3_bucket_url,
        "HPO_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "HPO_API_PORT": str(api_port),
        "HPO_MONITOR_PORT": str(free_port()),
        "HPO_OPS_PORT": "0",  # test runs share this machine: no fixed port
        "HPO_RECONCILE_INTERVAL": "1",
        "HPO_REPAIR_INTERVAL": "5",  # the product's 30 s, shortened as the pass is
        "HPO_HOME": str(tmp_path / "home"),
        "HPO_LEASE_SECONDS": "60",
        "HPO_SITE_ALIVE_SECONDS": "20",
    }
    procs = Processes(tmp_path)
    api = f"http://127.0.0.1:{api_port}"
    try:
        for name in SERVICE_NAMES:
            procs.start(name, ["-m", "services", "run", name], env)
        while True:
            procs.check_alive()
            try:
                if httpx.get(f"{api}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)

        def token(owner: str, scope: str) -> str:
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
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            return out.stdout.strip()

        site_token = token("ops", "edge:e2e")
        isolate = network_isolation_works()
        root = tmp_path / "edge-root"
        (tmp_path / "site.toml").write_text(
            f'site = "e2e"\napi_url = "{api}"\ntoken = "{site_token}"\nroot = "{root}"\n'
            f"slots = 3\npoll_interval = 0.5\nheartbeat_interval = 2\n"
            f"lease_wait_seconds = 2\nisolate_network = {'true' if isolate else 'false'}\n"
        )
        procs.start(
            "harvester", ["-m", "edge", "harvester", "--config", str(tmp_path / "site.toml")], env
        )
        yield {
            "api": api,
            "api_port": api_port,
            "procs": procs,
            "token": token,
            "isolated": isolate,
            "tmp": tmp_path,
        }
    finally:
        procs.stop()


def wait_done(client: httpx.Client, task_id: str, procs: Processes) -> dict[str, Any]:
    while True:
        procs.check_alive()
        task: dict[str, Any] = client.get(f"/api/v1/tasks/{task_id}").raise_for_status().json()
        if task["status"] in ("done", "failed", "cancelled"):
            return task
        time.sleep(1)


def test_tasks_complete_across_processes(system: dict[str, Any]) -> None:
    alice = system["token"]("alice", "user")
    bob = system["token"]("bob", "user")
    markers = system["tmp"] / "markers"
    markers.mkdir()
    payload = (REPO / "tests" / "e2e" / "payload.py").read_text()
    exec_line = f"{sys.executable} payload.py {markers} {system['api_port']}"
    with httpx.Client(
        base_url=system["api"], timeout=30, headers={"Authorization": f"Bearer {alice}"}
    ) as client:
        body = {
            "name": "e2e",
            "config": {
                "evaluationExec": exec_line,
                "evaluationMetrics": "metrics.tgz",
                "maxPoints": 12,
                "nParallelEvaluation": 3,
                "nPointsPerIteration": 6,
                "minUnevaluatedPoints": 3,
                "steering": {"algorithm": "tpe", "seed": 5},
            },
            "searchSpace": SPACE,
            "files": {"payload.py": payload},
        }
        task = client.post("/api/v1/tasks", json=body).raise_for_status().json()
        doomed = (
            client.post(
                "/api/v1/tasks",
                json={
                    "config": {
                        "evaluationExec": "exit 3",
                        "maxPoints": 1,
                        "nPointsPerIteration": 1,
                        "maxEvaluationJobs": 5,
                    },
                    "searchSpace": SPACE,
                },
            )
            .raise_for_status()
            .json()
        )

        other = httpx.get(
            f"{system['api']}/api/v1/tasks/{task['id']}", headers={"Authorization": f"Bearer {bob}"}
        )
        assert other.status_code == 404

        # Crash the pipeline mid-task, the site harvester too: nothing may be lost or
        # counted twice (docs/architecture.md, "Reliability").
        while client.get(f"/api/v1/tasks/{task['id']}").json()["progress"]["evaluated"] < 3:
            time.sleep(0.3)
        for name in ("steering", "jobbuilder", "broker", "harvester"):
            system["procs"].kill9_and_restart(name)

        final = wait_done(client, task["id"], system["procs"])
        assert final["status"] == "done", final
        assert final["progress"]["evaluated"] == 12
        points = client.get(f"/api/v1/tasks/{task['id']}/points").json()
        assert len(points) == 12
        for p in points:
            expected = (p["params"]["x"] - 0.5) ** 2 + p["params"]["n"]
            assert p["status"] == "evaluated" and abs(p["loss"] - expected) < 1e-9
            assert p["attempts"] == (2 if p["params"]["x"] < 0 else 1), p
        jobs = client.get(f"/api/v1/tasks/{task['id']}/jobs").json()
        retried = sum(p["params"]["x"] < 0 for p in points)
        assert len(jobs) == 12 + retried
        assert sum(j["status"] == "failed" for j in jobs) == retried
        assert final["best"]["loss"] == min(p["loss"] for p in points)
        # the storage service re-reads every upload and checks its size and sha256
        while True:
            artifacts = client.get(f"/api/v1/tasks/{task['id']}/artifacts").json()
            if all(a["verified"] is not None for a in artifacts):
                break
            time.sleep(0.5)
        assert all(a["verified"] for a in artifacts), artifacts
        metrics = [a for a in artifacts if a["kind"] == "metrics"]
        assert len(metrics) == 12
        assert all(a["key"].startswith(f"alice/{task['id']}/") for a in artifacts)
        tarball = httpx.get(metrics[0]["url"])
        assert tarball.status_code == 200 and tarball.content[:2] == b"\x1f\x8b"  # gzip

        if system["isolated"]:  # the payload could not reach the api: no network at all
            finished = [j for j in jobs if j["status"] == "finished"]
            assert [r["message"] for j in finished for r in j["results"]] == ["offline"] * 12

        doomed_final = wait_done(client, doomed["id"], system["procs"])
        assert doomed_final["status"] == "failed"
        assert doomed_final["reason"].startswith("every evaluation failed"), doomed_final
        doomed_points = client.get(f"/api/v1/tasks/{doomed['id']}/points").json()
        assert [(p["status"], p["attempts"], p["loss"]) for p in doomed_points] == [
            ("failed", 3, 1e10)
        ]
        assert len(client.get(f"/api/v1/tasks/{doomed['id']}/jobs").json()) == 3
