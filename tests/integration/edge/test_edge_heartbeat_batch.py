"""A scan's job heartbeats travel in one request, and the replies' kills are acted on;
against an api without the batched call the harvester sends them one by one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edge.config import SiteConfig
from edge.fsproto import JobPaths
from edge.harvester.daemon import Harvester
from shared.edge_api import JobSpec
from tests.integration.edge.test_edge_harvester import running, until

SpecFactory = Callable[..., JobSpec]
HarvesterFactory = Callable[[], Harvester]
LONG = 'i=0; while [ ! -e ../kill ] && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i+1)); done'


async def test_heartbeats_of_a_scan_go_in_one_request_and_a_kill_reply_stops_its_job(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    site_config.slots = 3
    specs = [make_spec(LONG) for _ in range(3)]
    for spec in specs:
        fake_api.offer(spec)
    harvester = make_harvester()
    await harvester.run_once(lease_wait=0.5)
    assert sorted(harvester.jobs) == sorted(s.job_id for s in specs)

    async def all_due() -> None:
        last = max(j.last_beat for j in harvester.jobs.values())
        await until(lambda: time.monotonic() - last >= site_config.heartbeat_interval)

    await all_due()
    await harvester.scan()
    assert fake_api.batches == [3], "one request for the scan's three heartbeats"
    fake_api.kill.add(specs[0].job_id)
    await all_due()
    await harvester.scan()
    assert fake_api.batches == [3, 3]
    assert JobPaths.under(site_config.root, specs[0].job_id).kill.exists()
    assert not JobPaths.under(site_config.root, specs[1].job_id).kill.exists()

    fake_api.kill.update(s.job_id for s in specs)
    async with running(harvester):
        await until(lambda: all(fake_api.events_of(s.job_id, "failed") for s in specs))
    for spec in specs:
        assert fake_api.events_of(spec.job_id, "heartbeat")


async def test_an_api_without_batched_heartbeats_gets_them_one_by_one(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    fake_api.batch_heartbeats = False
    spec = make_spec(LONG)
    fake_api.offer(spec)
    async with running(make_harvester()):
        await until(lambda: len(fake_api.events_of(spec.job_id, "heartbeat")) >= 2)
        fake_api.kill.add(spec.job_id)
        await until(lambda: fake_api.events_of(spec.job_id, "failed"))
    assert fake_api.batches == []
