"""The jobs a scan finds ended are reported in one request, their artifacts uploaded
first (one request for the upload URLs, one for the confirms), ``reported.json``
written per job once its reply is in; against an api without the batched calls the
harvester sends them one by one. Edge api test double, real node agents through the
local batch system."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.config import SiteConfig
from edge.documents import ReportRecord
from edge.fsproto import JobPaths
from edge.harvester.daemon import Harvester
from shared.edge_api import JobSpec
from tests.waiting import until

SpecFactory = Callable[..., JobSpec]
HarvesterFactory = Callable[[], Harvester]
QUICK = 'echo "log of $PWD"; echo \'{"status": 0, "loss": 0.5}\' > output.json'


async def stage_and_let_end(harvester: Harvester, specs: list[JobSpec]) -> None:
    """Lease and start ``specs``, then wait until every payload has ended (its node
    agent wrote a terminal status), so that one scan finds them all ended."""
    while len(harvester.jobs) < len(specs):
        await harvester.run_once(lease_wait=0.5)

    async def all_ended() -> bool:
        statuses = [job.read_status() for job in harvester.jobs.values()]
        return all(s is not None and s.terminal for s in statuses)

    await until(all_ended)


def reported(config: SiteConfig, spec: JobSpec) -> ReportRecord | None:
    path = JobPaths.under(config.root, spec.job_id).reported
    return ReportRecord.model_validate_json(path.read_text()) if path.exists() else None


async def test_the_jobs_a_scan_finds_ended_are_reported_in_one_request(
    fake_api: Any, make_harvester: HarvesterFactory, make_spec: SpecFactory, site_config: SiteConfig
) -> None:
    site_config.slots = 4
    specs = [make_spec(QUICK) for _ in range(4)]
    for spec in specs:
        fake_api.offer(spec)
    harvester = make_harvester()
    await stage_and_let_end(harvester, specs)
    before = len(fake_api.requests)
    await harvester.scan()
    assert fake_api.report_batches == [4], "one request for the scan's four reports"
    sent = fake_api.requests[before:]
    assert sorted(sent) == sorted(
        [
            *["PUT /upload/alice/task-1/" + s.job_id + "/log" for s in specs],
            "POST /edge/v1/sites/test-site/artifacts",
            "POST /edge/v1/sites/test-site/artifacts/confirm",
            "POST /edge/v1/sites/test-site/reports",
        ]
    ), "one request per scan for each step, besides the uploads themselves"
    for spec in specs:
        record = reported(site_config, spec)
        assert record is not None and (record.kind, record.accepted) == ("finished", True)
        (finished,) = fake_api.events_of(spec.job_id, "finished")
        assert [r.loss for r in finished.results] == [0.5]
        assert f"alice/task-1/{spec.job_id}/log" in fake_api.uploads, "uploaded before"
    assert sorted(fake_api.counted) == sorted(s.job_id for s in specs)
    assert harvester.jobs == {}
    await harvester.aclose()


async def test_an_api_without_batched_reports_gets_them_one_by_one(
    fake_api: Any, make_harvester: HarvesterFactory, make_spec: SpecFactory, site_config: SiteConfig
) -> None:
    fake_api.batch_reports = False
    fake_api.batch_artifacts = False
    site_config.slots = 2
    harvester = make_harvester()
    for _ in range(2):  # twice: the batched call is not tried again after its 404
        specs = [make_spec(QUICK) for _ in range(2)]
        for spec in specs:
            fake_api.offer(spec)
        await stage_and_let_end(harvester, specs)
        await harvester.scan()
        for spec in specs:
            record = reported(site_config, spec)
            assert record is not None and record.accepted
            assert len(fake_api.events_of(spec.job_id, "finished")) == 1
    assert len(fake_api.requests_to("/reports")) == 1
    assert len(fake_api.requests_to("/sites/test-site/artifacts")) == 1
    assert fake_api.requests_to("/sites/test-site/artifacts/confirm") == []
    assert len(fake_api.confirms) == 4, "each job's log confirmed on its own"
    assert fake_api.report_batches == []
    assert len(fake_api.counted) == 4
    await harvester.aclose()


class Crash(BaseException):
    """The harvester killed where it is raised (nothing after it runs)."""


async def test_a_crash_between_the_batch_reply_and_reported_json_costs_nothing(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
    monkeypatch: Any,
) -> None:
    site_config.slots = 3
    specs = [make_spec(QUICK) for _ in range(3)]
    for spec in specs:
        fake_api.offer(spec)
    first = make_harvester()
    await stage_and_let_end(first, specs)
    import edge.harvester.report as report

    def crash(*args: object) -> None:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(report, "write_json_atomic", crash)
        try:
            await first.scan()
        except Crash:
            pass
        else:
            raise AssertionError("reported.json was not written")
    await first.aclose()
    assert fake_api.report_batches == [3], "the api has recorded all three"
    assert all(reported(site_config, s) is None for s in specs)

    restarted = make_harvester()
    restarted.load()
    assert sorted(restarted.jobs) == sorted(s.job_id for s in specs)
    await restarted.scan()
    assert fake_api.report_batches == [3, 3], "sent again, in one request"
    for spec in specs:
        record = reported(site_config, spec)
        assert record is not None and (record.accepted, record.detail) == (
            True,
            "already recorded",
        )
    assert sorted(fake_api.counted) == sorted(s.job_id for s in specs), "none counted twice"
    puts = [r for r in fake_api.requests if r.startswith("PUT ")]
    assert len(puts) == len(fake_api.confirms) == 3, "what was stored is not uploaded again"
    assert restarted.jobs == {}
    await restarted.aclose()
