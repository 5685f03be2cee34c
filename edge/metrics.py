"""The harvester's Prometheus metrics and readiness checks.

Counted: how long each scan takes (``hpo_edge_scan_seconds``: the pass over every
active job, which bounds how soon a result is reported) and the failures of the
daemon's loops. Read at each scrape from the running harvester: the jobs it tracks and
its free slots. Every series carries the site's name, so one Prometheus can scrape the
harvesters of several sites.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from edge.config import SiteConfig, tls_verify
from shared.ops.listener import Check, ops_app

_SCAN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class EdgeMetrics:
    def __init__(self, site: str, registry: CollectorRegistry | None = None) -> None:
        self.site = site
        self.registry = registry or CollectorRegistry()
        self.scan_seconds = Histogram(
            "hpo_edge_scan_seconds",
            "Duration of one scan over the site's active jobs",
            ["site"],
            buckets=_SCAN_BUCKETS,
            registry=self.registry,
        ).labels(site)
        self._loop_errors = Counter(
            "hpo_edge_loop_errors",
            "Steps of the harvester's loops (scan, site heartbeat, lease) that failed",
            ["site", "loop"],
            registry=self.registry,
        )

    def loop_error(self, loop: str) -> None:
        self._loop_errors.labels(self.site, loop).inc()

    def watch(self, jobs: Callable[[], int], free: Callable[[], int], slots: int) -> None:
        """Report the running harvester's jobs and free slots at each scrape."""
        self.registry.register(_SlotCollector(self.site, jobs, free, slots))


class _SlotCollector(Collector):
    def __init__(
        self, site: str, jobs: Callable[[], int], free: Callable[[], int], slots: int
    ) -> None:
        self.site, self.jobs, self.free, self.slots = site, jobs, free, slots

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, doc, value in (
            ("hpo_edge_jobs", "Jobs the harvester tracks (staged, queued or running)", self.jobs()),
            ("hpo_edge_free_slots", "Slots the harvester would lease jobs for now", self.free()),
            ("hpo_edge_slots", "Slots the site declares", self.slots),
        ):
            family = GaugeMetricFamily(name, doc, labels=["site"])
            family.add_metric([self.site], value)
            yield family


def edge_checks(api_url: str, root: Path, *, verify: object, timeout: float) -> dict[str, Check]:
    """Ready when the central api answers and the shared filesystem root is writable:
    without either the harvester can lease nothing or run nothing."""

    async def api() -> None:
        async with httpx.AsyncClient(verify=verify, timeout=timeout) as client:  # type: ignore[arg-type]
            reply = await client.get(f"{api_url.rstrip('/')}/healthz")
            reply.raise_for_status()

    async def shared_root() -> None:
        if not await asyncio.to_thread(os.access, root, os.W_OK | os.X_OK):
            raise PermissionError(f"{root} is not a writable directory")

    return {"api": api, "shared_root": shared_root}


def edge_ops_app(config: SiteConfig, metrics: EdgeMetrics) -> FastAPI:
    """The harvester's operations listener (``ops_port`` in site.toml)."""
    timeout = min(config.request_timeout, 5.0)
    checks = edge_checks(config.base_url, config.root, verify=tls_verify(config), timeout=timeout)
    return ops_app("edge", metrics.registry, checks, timeout=timeout)
