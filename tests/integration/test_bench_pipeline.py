"""The pipeline benchmark (tests/bench/pipeline.py) in a tiny form, so that it cannot rot:
a few points on SecantusDB and the memory bus, at the product's reconcile interval.

With a site forgotten after 1 s instead of 60 s, the run waits mid-task until the site
would have been forgotten without further heartbeats: the next job is leasable only
because the fake site heartbeats periodically (it used to heartbeat once, so
``--points 300`` failed "no job became leasable within 30 s")."""

from __future__ import annotations

import pytest

from tests.bench.pipeline import PRODUCT, measure

pytestmark = [pytest.mark.mongo]


async def test_the_pipeline_bench_runs_at_product_defaults_and_keeps_its_site(
    mongo_db_url: str,
) -> None:
    figures = await measure(
        "embedded (memory bus)",
        "memory://",
        mongo_db_url,
        4,
        site_alive_seconds=1.0,
        hold_past_site_expiry=True,
    )
    assert figures["points"] == 4
    settings = figures["settings"]
    assert isinstance(settings, dict)
    assert settings["reconcile_interval"] == PRODUCT["reconcile_interval"] == 2.0
    assert settings["heartbeat_every_s"] == 0.25
    assert figures["settings_differing_from_product"] == ["site_alive_seconds"]
    for key in ("overhead_per_point_ms", "result_to_leasable_p50_ms", "db_commands_per_point"):
        value = figures[key]
        assert isinstance(value, float) and value > 0, (key, figures)


async def test_the_bench_says_which_settings_differ() -> None:
    figures = await measure(
        "embedded (memory bus)", "memory://", "memory://", 2, reconcile_interval=0.3
    )
    assert figures["settings_differing_from_product"] == ["reconcile_interval"]
    assert figures["db_commands_per_point"] == 0.0  # the memory store sends none
