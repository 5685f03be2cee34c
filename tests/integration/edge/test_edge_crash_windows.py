"""The two moments a harvester can die with a job half taken, against the edge api's
test double and real node agents: neither may cost the point an attempt.

- A lease answered to a request whose harvester died (the long poll outlived its
  process): the api holds the job for this site, no directory exists. The harvester
  that runs now asks which leases it holds again and again, not only at its start,
  since the dead request may be answered after the new process asked.
- A job staged onto the filesystem but never handed to the batch system: the restarted
  harvester submits it rather than waiting for it to be declared lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from edge.harvester.staging import stage_job
from shared.edge_api import JobSpec
from tests.integration.edge.test_edge_harvester import running, until

SpecFactory = Callable[..., JobSpec]


async def test_a_lease_answered_to_a_dead_request_after_start_is_staged(
    fake_api: Any, site_config: SiteConfig, make_spec: SpecFactory
) -> None:
    config = site_config.model_copy(update={"lease_recover_interval": 0.3})
    async with running(Harvester(config)):
        # The harvester is up and has asked for leases: its start-up recovery is over.
        await until(lambda: len(fake_api.heartbeats) >= 2)
        spec = make_spec('echo \'{"status": 0, "loss": 0.5}\' > output.json')
        # ...and only now is the old process's lease request answered, to nobody.
        fake_api.generations[spec.job_id] = spec.generation
        fake_api.held[spec.job_id] = spec
        await until(lambda: fake_api.events_of(spec.job_id, "finished"))
    finished = fake_api.events_of(spec.job_id, "finished")
    assert [(e.generation, [r.loss for r in e.results]) for e in finished] == [(1, [0.5])]
    assert not fake_api.events_of(spec.job_id, "failed")


async def test_a_job_staged_but_not_submitted_before_a_crash_is_submitted_at_restart(
    fake_api: Any, site_config: SiteConfig, make_spec: SpecFactory
) -> None:
    spec = make_spec('echo \'{"status": 0, "loss": 0.25}\' > output.json')
    fake_api.generations[spec.job_id] = spec.generation
    fake_api.held[spec.job_id] = spec
    harvester = Harvester(site_config)
    # What a harvester killed right after staging leaves: the job's directory, complete,
    # and no record of a submission.
    paths, new = stage_job(site_config.root, spec, harvester.node_settings(spec, None))
    assert new and not paths.harvester.exists()

    async with running(harvester):
        await until(lambda: fake_api.events_of(spec.job_id, "finished"))
    finished = fake_api.events_of(spec.job_id, "finished")
    assert [(e.generation, [r.loss for r in e.results]) for e in finished] == [(1, [0.25])]
    assert not fake_api.events_of(spec.job_id, "failed")
