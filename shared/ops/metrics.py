"""The Prometheus metrics of hpo-relay: what the processes count, and what is read from
the database when scraped.

Every process builds one registry in its entry point and passes it down (there is no
module-level metric), so that tests running several systems in one interpreter never
mix their counts. Counters count what happened in this process since it started
(Prometheus sums them over processes with ``sum(rate(...))``); the state gauges
(:class:`StateGauges`: tasks and jobs by state, site slots) are read from the database
at each scrape by the process that runs the monitor, so that they are exported once per
deployment however many replicas the other services have.

Label values come from short fixed sets (states, stages, command names, route
templates), never from ids or paths: a Hopaas path carries a token, and a task id per
label would make a new series for every task.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pymongo import monitoring

from shared.clock import utcnow
from shared.domain.models import Job, Site

JOB_STAGES = ("queued", "dispatch", "startup", "run", "total")
"""queued: defined until assigned to a site; dispatch: assigned until the site leased
it; startup: leased until the payload started; run: started until the job ended;
total: defined until ended."""

_LATENCY_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
    1800, 3600, 7200, 14400, 43200, 86400,
)  # fmt: skip
_PASS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def job_stage_seconds(job: Job) -> Iterator[tuple[str, float]]:
    """The stages a terminal job went through and how long each took, from the times
    the store stamped on it at each status change (stages it skipped are left out)."""
    stamps = job.stamps
    end = next(
        (
            stamps[s]
            for s in ("finished", "failed", "lost", "preempted", "cancelled")
            if s in stamps
        ),
        None,
    )
    marks: list[tuple[str, datetime | None, datetime | None]] = [
        ("queued", job.created, stamps.get("assigned")),
        ("dispatch", stamps.get("assigned"), stamps.get("leased")),
        ("startup", stamps.get("leased"), stamps.get("running")),
        ("run", stamps.get("running"), end),
        ("total", job.created, end),
    ]
    for stage, start, stop in marks:
        if start is not None and stop is not None and stop >= start:
            yield stage, (stop - start).total_seconds()


class CentralMetrics:
    """What the central services count. One instance per process, in its context."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.points_evaluated = Counter(
            "hpo_points_evaluated", "Points that got their result (batch and online)", registry=r
        )
        self.points_failed = Counter(
            "hpo_points_failed", "Points given up after their last attempt failed", registry=r
        )
        self.points_pruned = Counter(
            "hpo_points_pruned",
            "Points stopped by the pruner (they count as evaluated, not in"
            " hpo_points_evaluated_total)",
            registry=r,
        )
        self.point_retries = Counter(
            "hpo_point_retries", "Failed or lost attempts that were retried", registry=r
        )
        self.jobs_ended = Counter(
            "hpo_jobs_ended", "Jobs applied in a terminal state", ["state"], registry=r
        )
        self.job_stage_seconds = Histogram(
            "hpo_job_stage_seconds",
            "Time jobs spent in each stage (see JOB_STAGES), observed when they end",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lease_expiries = Counter(
            "hpo_lease_expiries", "Job leases that expired without a heartbeat", registry=r
        )
        self.bus_errors = Counter(
            "hpo_bus_errors", "Bus calls or handlers that raised", ["operation"], registry=r
        )
        self.database_errors = Counter(
            "hpo_database_errors",
            "Database commands that failed, and failed server heartbeats",
            ["command"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "hpo_reconcile_seconds",
            "Duration of each service's reconcile pass",
            ["service"],
            buckets=_PASS_BUCKETS,
            registry=r,
        )
        self.reconcile_failures = Counter(
            "hpo_reconcile_failures", "Reconcile passes that raised", ["service"], registry=r
        )
        self.http_requests = Counter(
            "hpo_http_requests",
            "HTTP requests answered, by route template",
            ["app", "method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "hpo_http_request_seconds",
            "HTTP request duration, by route template",
            ["app", "route"],
            buckets=_PASS_BUCKETS,
            registry=r,
        )

    def observe_job_end(self, job: Job) -> None:
        self.jobs_ended.labels(job.status.value).inc()
        for stage, seconds in job_stage_seconds(job):
            self.job_stage_seconds.labels(stage).observe(seconds)

    def database_listeners(self) -> list[monitoring._EventListener]:
        """PyMongo listeners that count failed commands and heartbeats, for the client."""
        return [_CommandErrors(self.database_errors), _HeartbeatErrors(self.database_errors)]


class StateGauges:
    """Tasks and jobs by state and the sites' slots, as the database has them now.

    Refreshed by the scrape itself (``/metrics`` awaits :meth:`refresh`), so a value is
    never older than the scrape that reports it.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tasks = Gauge("hpo_tasks", "Tasks by state", ["state"], registry=registry)
        self.jobs = Gauge("hpo_jobs", "Jobs by state", ["state"], registry=registry)
        self.site_free = Gauge(
            "hpo_site_free_slots", "Free slots a site declared", ["site"], registry=registry
        )
        self.site_total = Gauge(
            "hpo_site_slots", "Slots a site declared in all", ["site"], registry=registry
        )
        self.site_age = Gauge(
            "hpo_site_heartbeat_age_seconds",
            "Seconds since the site's last heartbeat",
            ["site"],
            registry=registry,
        )

    def update(
        self, tasks: dict[str, int], jobs: dict[str, int], sites: list[Site], now: datetime
    ) -> None:
        """Replace every value at once (no await in between, so no scrape sees a half)."""
        for gauge, counts in ((self.tasks, tasks), (self.jobs, jobs)):
            gauge.clear()
            for state, n in counts.items():
                gauge.labels(state).set(n)
        for gauge in (self.site_free, self.site_total, self.site_age):
            gauge.clear()
        for site in sites:
            self.site_free.labels(site.id).set(site.free_slots)
            self.site_total.labels(site.id).set(site.total_slots)
            self.site_age.labels(site.id).set((now - site.last_heartbeat).total_seconds())

    @staticmethod
    def now() -> datetime:
        return utcnow()


class _CommandErrors(monitoring.CommandListener):
    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        return None

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.counter.labels(event.command_name).inc()


class _HeartbeatErrors(monitoring.ServerHeartbeatListener):
    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        return None

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        self.counter.labels("heartbeat").inc()
