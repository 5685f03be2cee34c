"""Requests shaped exactly as the public Hopaas Python client sends them.

That client posts every body as ``requests.post(url, data=json.dumps(body))`` (no
``Content-Type`` header), writes its suggestions with ``str()`` of small dataclasses
(lower-case booleans, choices joined by commas without quotes), names its sampler and
pruner by class name with every dataclass field as an argument, sends special
properties as ``_<name>``, and reads ``get_best_trial``'s reply as ``<study>:<trial>``
text. This module reproduces those shapes (it is not the client's code); it is
synchronous, like the client, so tests run it in a thread beside the services.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import requests


def int_(low: int, high: int, step: int = 1, log: bool = False) -> str:
    return f"optuna#int({low},{high},{step},{str(log).lower()})"


def uniform(low: float, high: float) -> str:
    return f"optuna#uniform({low},{high})"


def float_(low: float, high: float) -> str:
    return f"optuna#float({low},{high})"


def float_json(low: float, high: float, step: float | None = None, log: bool = False) -> str:
    """The later client version: JSON values, ``NaN`` for no step."""
    shown = json.dumps(step) if step is not None else "NaN"
    return f"optuna#float({json.dumps(low)},{json.dumps(high)},{shown},{json.dumps(log)})"


def discrete_uniform(low: float, high: float) -> str:
    return f"optuna#discrete_uniform({low},{high})"


def loguniform(low: float, high: float) -> str:
    return f"optuna#loguniform({low},{high})"


def categorical(choices: list[str]) -> str:
    return f"optuna#categorical({','.join(choices)})"


def plugin(name: str, **args: Any) -> dict[str, Any]:
    """A sampler or pruner as the client names it: every dataclass field an argument."""
    return {"name": name, "args": args}


TPE = plugin("TPESampler", n_startup_trials=10, n_ei_candidates=24, consider_magic_clip=True)
NOP = plugin("NopPruner")
MEDIAN = plugin(
    "MedianPruner", n_startup_trials=5, n_warmup_steps=0, interval_steps=1, n_min_trials=1
)
HYPERBAND = plugin("HyperbandPruner", min_resources=1, max_resources="auto", bootstrap_count=0)
THRESHOLD = plugin("ThresholdPruner", lower=None, upper=2, n_warmup_steps=0, interval_steps=1)


class HopaasServerError(Exception):
    """What the client raises on any answer it does not expect."""


@dataclass
class Client:
    server: str
    token: str

    def version(self) -> str:
        res = requests.get(f"{self.server}/api/version", timeout=60)
        if res.status_code != 200:
            raise HopaasServerError(res.status_code, res.text)
        return res.text

    def post(self, endpoint: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(
            f"{self.server}/api/{endpoint}/{self.token}", data=json.dumps(body), timeout=60
        )

    def ask(self, properties: dict[str, Any]) -> dict[str, Any]:
        res = self.post("ask", properties)
        if res.status_code != 200:
            raise HopaasServerError(res.status_code, res.text)
        answer: dict[str, Any] = json.loads(res.text)
        return answer

    def tell(self, study_id: str, trial_id: int, loss: float) -> None:
        res = self.post("tell", {"hopaas_trial": f"{study_id}:{trial_id}", "loss": loss})
        if res.status_code != 200:
            raise HopaasServerError(res.status_code, res.text)

    def mark_as_failed(self, study_id: str, trial_id: int, error: str) -> None:
        body = {"hopaas_trial": f"{study_id}:{trial_id}", "error": error}
        res = self.post("mark_as_failed", body)
        if res.status_code != 200:
            raise HopaasServerError(res.status_code, res.text)

    def should_prune(self, study_id: str, trial_id: int, loss: float, step: int) -> bool:
        body = {"hopaas_trial": f"{study_id}:{trial_id}", "loss": loss, "step": step}
        res = self.post("should_prune", body)
        if res.status_code != 200 or res.text.lower() not in ("true", "false"):
            raise HopaasServerError(res.status_code, res.text)
        return res.text.lower() == "true"

    def get_best_trial(self, study_id: str, trial_id: int) -> int:
        res = requests.get(
            f"{self.server}/api/get_best_trial/{self.token}?hopaas_trial={study_id}:{trial_id}",
            timeout=60,
        )
        if res.status_code != 200:
            raise HopaasServerError(res.status_code, res.text)
        best_study, best_trial = res.text.split(":")
        if best_study != study_id:
            raise HopaasServerError(res.text)
        return int(best_trial)


@dataclass
class Study:
    """A study as the client runs one: ask, report each step, tell or fail."""

    client: Client
    title: str
    properties: dict[str, Any]
    special: dict[str, Any] = field(default_factory=dict)
    direction: str = "minimize"
    sampler: dict[str, Any] = field(default_factory=lambda: dict(TPE))
    pruner: dict[str, Any] = field(default_factory=lambda: dict(NOP))
    study_id: str | None = None

    def ask(self) -> tuple[int, dict[str, Any]]:
        body = {k.removeprefix("_"): v for k, v in self.properties.items()}
        body["hopaas_config"] = {
            "title": self.title,
            "direction": self.direction,
            "sampler": self.sampler,
            "pruner": self.pruner,
        }
        body.update({f"_{k}": v for k, v in self.special.items()})
        answer = self.client.ask(body)
        self.study_id, trial = answer["hopaas_trial"].split(":")
        return int(trial), {k: v for k, v in answer.items() if k != "hopaas_trial"}

    def run_trial(self, losses: list[float]) -> tuple[int, dict[str, Any], bool]:
        """One trial reporting ``losses`` step by step; told unless pruned."""
        trial, params = self.ask()
        assert self.study_id is not None
        pruned = False
        for step, loss in enumerate(losses):
            if self.client.should_prune(self.study_id, trial, loss, step):
                pruned = True
                break
        if not pruned:
            self.client.tell(self.study_id, trial, float(losses[-1]))
        return trial, params, pruned
