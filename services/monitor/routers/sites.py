"""``/monitor/api/sites``: every site's slots, heartbeat, jobs in flight and occupancy.

Sites are shared infrastructure, so every user sees them all; the jobs in flight are
given in total and for the caller's own tasks.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from services.api.deps import CurrentUser
from services.monitor import reads
from services.monitor.deps import Monitor
from services.monitor.schemas import SiteRow
from shared.clock import utcnow

router = APIRouter(prefix="/monitor/api", tags=["monitor"])

ALIVE = timedelta(seconds=60)
KNOWN = {"_id", "arch", "free_slots", "total_slots", "version", "last_heartbeat", "layouts"}


@router.get("/sites")
async def sites(mon: Monitor, user: CurrentUser) -> list[SiteRow]:
    found = await reads.sites(mon.store)
    in_flight = await reads.live_jobs_by_site(mon.store)
    yours = await reads.live_jobs_by_site(mon.store, owner=user.owner)
    now = utcnow()
    rows = []
    for site, doc in found:
        layouts = doc.get("layouts") or doc.get("layout") or []
        rows.append(
            SiteRow(
                id=site.id,
                arch=site.arch,
                version=site.version,
                free_slots=site.free_slots,
                busy_slots=max(0, site.total_slots - site.free_slots),
                total_slots=site.total_slots,
                last_heartbeat=site.last_heartbeat,
                alive=now - site.last_heartbeat < ALIVE,
                jobs_in_flight=in_flight.get(site.id, 0),
                your_jobs_in_flight=yours.get(site.id, 0),
                layouts=[str(x) for x in layouts] if isinstance(layouts, list) else [str(layouts)],
                extra={k: v for k, v in doc.items() if k not in KNOWN},
                occupancy=mon.occupancy.of(site.id),
            )
        )
    return rows
