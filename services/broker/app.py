"""The broker: job assignment to sites and lease expiry.

Sites announce themselves through heartbeats, which the api records in the site
registry (the database, so none is lost) and announces as ``site.heartbeat``.
Defined jobs are assigned to a live eligible site with room: one the task allows, of
the right architecture, that declared in its heartbeat it can run the job's image, and
to one of its compute classes that satisfies the task's ``resources``; among those, a
class the task's jobs never finished on first, then the one that finished them fastest
(the mean run time the api records per task, site and class). A
task whose jobs no live site can run keeps them defined (no attempt is spent) and
shows why (``Task.waiting``), until a site that can run them heartbeats. A job whose
lease expires without a heartbeat is marked lost (the job builder then retries its
point), and jobs assigned to a site that stopped heartbeating go back to be assigned
elsewhere.

A site's room is its free slots less the jobs assigned to it and not yet leased, which
the store keeps on the site (``Site.assigned_jobs``) with each job's move: no job is
counted on the way. The periodic pass puts that set right from the jobs themselves.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from services.broker.logic import choose, places, waiting_reason
from services.consumer import BusConsumer
from services.context import Context
from services.repair import RepairClock
from shared.clock import utcnow
from shared.config import BrokerSettings
from shared.domain.models import JobStatus, Site
from shared.messages import JobAssigned, JobLost, Message

log = logging.getLogger(__name__)

ROUTING_KEYS = ("job.defined", "site.heartbeat")


class BrokerService(BusConsumer):
    name = "broker"
    routing_keys = ROUTING_KEYS

    def __init__(self, ctx: Context, settings: BrokerSettings) -> None:
        super().__init__(ctx)
        self.settings = settings
        self._repair = RepairClock(ctx.settings.repair_interval)
        self._waiting_written: dict[str, str] = {}
        """Per task, the waiting reason this process last wrote: not written again."""

    async def on_message(self, message: Message) -> None:
        await self.assign()

    async def reconcile(self) -> None:
        self._waiting_written.clear()  # the periodic pass writes what it finds, always
        await self.expire_leases()
        alive = await self._alive()  # read before the jobs: see shared.store.jobs
        await self.release_dead_sites(alive)
        if self._repair.due():
            await self.repair_assigned(alive)
        await self.assign()

    async def _alive(self) -> list[Site]:
        since = utcnow() - timedelta(seconds=self.settings.site_alive_seconds)
        return await self.ctx.store.sites.list_alive(since)

    async def assign(self) -> None:
        store = self.ctx.store
        defined = await store.jobs.list_by_status(JobStatus.DEFINED, limit=500)
        if not defined:
            return
        sites = await self._alive()
        assigned = {s.id: len(s.assigned_jobs) for s in sites}
        configs = {}
        for task_id in dict.fromkeys(j.task_id for j in defined):
            task = await self.ctx.constants.task(task_id)
            if task is not None:
                configs[task_id] = task.config
        # run times only rank places: read them for the tasks that have more than one
        contested = sorted(t for t, config in configs.items() if places(config, sites) > 1)
        run_times = await store.runtimes.means(contested) if contested else {}
        waiting: dict[str, str] = {}
        for job in defined:
            config = configs.get(job.task_id)
            if config is None:
                continue
            choice = choose(config, sites, assigned, run_times.get(job.task_id))
            if choice is None:
                if job.task_id not in waiting:
                    waiting[job.task_id] = waiting_reason(config, sites)
                continue
            waiting[job.task_id] = ""
            site, compute_class = choice
            if await store.jobs.assign(job.id, site.id, compute_class):
                assigned[site.id] = assigned.get(site.id, 0) + 1
                await self.ctx.bus.publish(
                    JobAssigned(task_id=job.task_id, job_id=job.id, site=site.id)
                )
        for task_id, reason in waiting.items():
            if self._waiting_written.get(task_id) == reason:
                continue
            if await store.tasks.set_waiting(task_id, reason) and reason:
                log.info("task %s waits: %s", task_id, reason)
            self._waiting_written[task_id] = reason

    async def expire_leases(self) -> None:
        for job in await self.ctx.store.jobs.expired_leases(utcnow()):
            reason = "lease expired: no heartbeat from the site in time"
            if await self.ctx.store.jobs.mark_lost(job.id, job.generation, reason):
                self.ctx.metrics.lease_expiries.inc()
                log.info("job %s lost (generation %d)", job.id, job.generation)
                await self.ctx.bus.publish(JobLost(task_id=job.task_id, job_id=job.id))

    async def repair_assigned(self, alive: list[Site]) -> None:
        """Put each live site's assigned jobs right from the jobs (a process killed
        between a job's move and the site's count left an id too many); ``alive``: the
        live sites, read before this reads the jobs."""
        store = self.ctx.store
        for site in alive:
            actual = set(await store.jobs.assigned_ids(site.id))
            kept = set(site.assigned_jobs)
            if actual != kept:
                add, drop = sorted(actual - kept), sorted(kept - actual)
                await store.sites.repair_assigned(site.id, add, drop)
                log.info("site %s: assigned jobs put right (+%s, -%s)", site.id, add, drop)

    async def release_dead_sites(self, alive: list[Site]) -> None:
        live = {s.id for s in alive}
        for job in await self.ctx.store.jobs.list_by_status(JobStatus.ASSIGNED, limit=500):
            if job.site not in live and await self.ctx.store.jobs.unassign(job.id):
                log.info("job %s taken back from silent site %s", job.id, job.site)
