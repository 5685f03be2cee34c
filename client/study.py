"""Online ask-and-tell from Python: a worker asks the service for trials of a study and
tells their losses (the native ``/api/v1/studies`` API).

    with Study(url, token, "mlp", {"lr": "optuna#loguniform(1e-4, 1e-1)", "epochs": 10}) as s:
        for _ in range(20):
            with s.trial() as trial:
                for epoch in range(trial.params["epochs"]):
                    if trial.report(epoch, validation_loss()):
                        break
                trial.tell(final_loss())

A trial left without a tell (an exception, or a forgotten tell) is marked failed when
its ``with`` block ends, so the study never keeps it open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from client.http import ApiClient


class Trial:
    """One trial: its number and its parameters (the study's properties, filled in)."""

    def __init__(self, study: Study, number: int, params: dict[str, Any]) -> None:
        self.study = study
        self.number = number
        self.params = params
        self.closed = False

    def report(self, step: int, value: float) -> bool:
        """Record an intermediate value; True when the study's pruner says stop."""
        return self.study.report(self.number, step, value)

    def tell(self, loss: float) -> None:
        self.study.tell(self.number, loss)
        self.closed = True

    def fail(self, error: str = "") -> None:
        self.study.fail(self.number, error)
        self.closed = True


class Study:
    """A study of the token's owner, opened (or found again) on first use."""

    def __init__(
        self,
        url: str,
        token: str,
        title: str,
        properties: dict[str, Any],
        *,
        direction: str = "minimize",
        sampler: dict[str, Any] | None = None,
        pruner: dict[str, Any] | None = None,
        idle_timeout: float | None = None,
        initial_points: list[dict[str, Any]] | None = None,
        timeout: float = 60.0,
    ) -> None:
        """``initial_points``: values of the sampled properties asked first, in order,
        when the study is opened (a study found again keeps its own)."""
        self._api = ApiClient(url, token, timeout=timeout)
        self._definition: dict[str, Any] = {
            "title": title,
            "properties": properties,
            "direction": direction,
            "sampler": sampler or {"name": "TPESampler"},
            "pruner": pruner or {"name": "NopPruner"},
        }
        if idle_timeout is not None:
            self._definition["idle_timeout"] = idle_timeout
        if initial_points:
            self._definition["initial_points"] = initial_points
        self._id: str | None = None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._api.call(method, path, **kwargs)

    @property
    def id(self) -> str:
        if self._id is None:
            self._id = str(self._call("POST", "/api/v1/studies", json=self._definition)["id"])
        return self._id

    def ask(self) -> Trial:
        reply = self._call("POST", f"/api/v1/studies/{self.id}/ask")
        return Trial(self, int(reply["trial"]), dict(reply["params"]))

    def tell(self, trial: int, loss: float) -> bool:
        """False when the trial was closed already (the tell changed nothing)."""
        body = {"trial": trial, "loss": loss}
        return bool(self._call("POST", f"/api/v1/studies/{self.id}/tell", json=body)["recorded"])

    def fail(self, trial: int, error: str = "") -> bool:
        body = {"trial": trial, "error": error}
        return bool(self._call("POST", f"/api/v1/studies/{self.id}/fail", json=body)["recorded"])

    def report(self, trial: int, step: int, value: float) -> bool:
        body = {"trial": trial, "step": step, "value": value}
        return bool(self._call("POST", f"/api/v1/studies/{self.id}/report", json=body)["prune"])

    def best(self) -> dict[str, Any]:
        """``{"study_id", "trial", "loss"}`` of the best told trial."""
        result: dict[str, Any] = self._call("GET", f"/api/v1/studies/{self.id}/best")
        return result

    @contextlib.contextmanager
    def trial(self) -> Iterator[Trial]:
        """Ask for a trial; on leaving, a trial not told is marked failed."""
        trial = self.ask()
        try:
            yield trial
        except BaseException as exc:
            if not trial.closed:
                trial.fail(f"{type(exc).__name__}: {exc}")
            raise
        if not trial.closed:
            trial.fail("the worker ended the trial without telling a loss")

    def end(self) -> dict[str, Any]:
        """Close the study on the server: no more asks. Its view (status, reason)."""
        result: dict[str, Any] = self._call("POST", f"/api/v1/studies/{self.id}/close")
        return result

    def close(self) -> None:
        """Close the HTTP connection (the study stays open; see :meth:`end`)."""
        self._api.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
