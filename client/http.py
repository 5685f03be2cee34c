"""A small synchronous client of the user api (``/api/v1``).

A 503 (the api's answer while its bus or database is away; always safe to repeat) is
retried after the pause its ``Retry-After`` asks for, a few times, before it becomes
an :class:`ApiError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

from shared.netutil import retry_after


class ApiError(RuntimeError):
    """The server refused a request; ``detail`` is what it said, made readable."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


def _readable(detail: Any) -> str:
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                lines.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg")))
            else:
                lines.append(str(item))
        return "\n".join(lines)
    return str(detail)


class ApiClient:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._retries = retries
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; the decoded JSON reply, or ApiError with a readable detail."""
        reply = self._send(method, path, **kwargs)
        if reply.status_code == 204:
            return None
        return reply.json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, retried while the server says 503 with Retry-After; ApiError
        with a readable detail for any other error."""
        for attempt in range(self._retries + 1):
            try:
                reply = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise ApiError(0, f"cannot reach {self._http.base_url}: {exc}") from None
            pause = retry_after(reply.headers.get("Retry-After"))
            if reply.status_code != 503 or pause is None or attempt == self._retries:
                break
            self._sleep(pause)
        if reply.is_error:
            try:
                detail = reply.json().get("detail", reply.text)
            except ValueError:
                detail = reply.text
            raise ApiError(reply.status_code, _readable(detail))
        return reply

    def whoami(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/api/v1/whoami")
        return result

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", "/api/v1/tasks", json=body)
        return result

    def task(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/api/v1/tasks/{task_id}")
        return result

    def tasks(self, *, out_ds: str | None = None) -> list[dict[str, Any]]:
        params = {"outDS": out_ds} if out_ds else None
        result: list[dict[str, Any]] = self.call("GET", "/api/v1/tasks", params=params)
        return result

    def points(self, task_id: str, **filters: str | int | bool) -> Iterator[dict[str, Any]]:
        """Every point of the task (``order``, ``status``, ``segment``, ``descending``
        as the api takes them), fetched a page at a time as the caller goes."""
        return self.pages(f"/api/v1/tasks/{task_id}/points", filters)

    def jobs(self, task_id: str, **filters: str | int | bool) -> Iterator[dict[str, Any]]:
        """Every job of the task (``status``, ``site``, ``descending``), a page at a time."""
        return self.pages(f"/api/v1/tasks/{task_id}/jobs", filters)

    def page(
        self, path: str, params: Mapping[str, str | int | bool]
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a listing and the cursor of the next (None after the last)."""
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
        reply = self._send("GET", path, params=query)
        items: list[dict[str, Any]] = reply.json()
        return items, reply.headers.get("X-Next-Cursor")

    def pages(self, path: str, params: Mapping[str, str | int | bool]) -> Iterator[dict[str, Any]]:
        query = dict(params)
        while True:
            items, cursor = self.page(path, query)
            yield from items
            if cursor is None:
                return
            query["cursor"] = cursor

    def artifacts(self, task_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", f"/api/v1/tasks/{task_id}/artifacts")
        return result

    def cancel(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", f"/api/v1/tasks/{task_id}/cancel")
        return result

    def close_study(self, study_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", f"/api/v1/studies/{study_id}/close")
        return result

    def set_idle_timeout(self, study_id: str, seconds: float | None) -> dict[str, Any]:
        body = {"idle_timeout": seconds}
        result: dict[str, Any] = self.call("PATCH", f"/api/v1/studies/{study_id}", json=body)
        return result
