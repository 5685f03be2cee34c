"""``hpo demo``: a real HPO task end to end on the embedded default.

Tunes an SVM's C and gamma on scikit-learn's bundled digits (no download): the task is
submitted over the real REST api, points come from Optuna TPE, the local edge site runs
each evaluation as a separate process through the file protocol, and the metrics
tarballs land in the artifact store.
"""

from __future__ import annotations

import asyncio
import getpass
import shlex
import sys
import threading
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

from rich.console import Console

from client.http import ApiClient, ApiError
from client.watch import watch


class _Background:
    """The embedded system on its own event loop thread, while the CLI stays synchronous."""

    def __init__(self, home: Path | None, slots: int) -> None:
        self.home, self.slots = home, slots
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.api_url = self.monitor_url = self.token = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="hpo-embedded", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.ready.wait()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the CLI thread
            self.error = exc
        finally:
            self.ready.set()

    async def _serve(self) -> None:
        from services.embedded import embedded

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with embedded(self.home, slots=self.slots) as system:
            self.token = await system.user_token(getpass.getuser())
            self.api_url, self.monitor_url = system.api_url, system.monitor_url
            self.ready.set()
            await self._stop.wait()


def demo_submission(points: int, parallel: int) -> dict[str, Any]:
    payload = files("client.demo_payload")
    script = payload.joinpath("train_digits.py").read_text(encoding="utf-8")
    space = payload.joinpath("search_space.json").read_text(encoding="utf-8")
    return {
        "name": "demo: SVM on digits",
        "config": {
            "evaluationExec": f"{shlex.quote(sys.executable)} train_digits.py",
            "evaluationMetrics": "metrics.tgz",
            "searchSpaceFile": "search_space.json",
            "maxPoints": points,
            "nParallelEvaluation": parallel,
            "nPointsPerIteration": parallel * 2,
            "minUnevaluatedPoints": parallel,
            "steering": {"algorithm": "tpe", "seed": 7},
        },
        "files": {"train_digits.py": script, "search_space.json": space},
    }


def _serve_until_interrupted(console: Console) -> None:
    console.print("serving the dashboard and the api until Ctrl-C", soft_wrap=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping")


def run_demo(
    console: Console, *, points: int, parallel: int, home: Path | None, serve: bool = False
) -> int:
    """Submit the demo task, follow it, print where to look; with ``serve`` keep
    everything up after the task ends until Ctrl-C."""
    console.print("[bold]hpo-relay demo[/]: starting the embedded system…")
    system = _Background(home, slots=parallel)
    try:
        system.start()
    except Exception as exc:
        console.print(f"[red]could not start the embedded system[/]: {exc}")
        return 1
    try:
        console.print(f"api {system.api_url}")
        with ApiClient(system.api_url, system.token) as client:
            task = client.submit(demo_submission(points, parallel))
            console.print(
                f"submitted task [bold]{task['id']}[/] ({points} points, {parallel} at once)"
            )
            page = f"{system.monitor_url}/#/task/{task['id']}"
            console.print(f"dashboard {system.monitor_url}/#token={system.token}", soft_wrap=True)
            console.print(f"this task's page {page} (live while the task runs)", soft_wrap=True)
            final = watch(client, task["id"], console, interval=0.5)
            artifacts = client.artifacts(task["id"])
        ok = final["status"] == "done" and bool(final.get("best"))
        if ok:
            best = final["best"]
            console.print(f"best loss [bold green]{best['loss']:.5f}[/] at {best['params']}")
            console.print(f"{len(artifacts)} artifacts stored (metrics tarballs and logs)")
        else:
            console.print(f"[red]task ended {final['status']}[/] {final['reason']}")
        if serve:
            _serve_until_interrupted(console)
        else:
            console.print("(the dashboard stops with the demo; `hpo demo --serve` keeps it up)")
        return 0 if ok else 1
    except ApiError as exc:
        console.print(f"[red]error[/] {exc}")
        return 1
    finally:
        system.stop()
