"""A payload can never stall a site: hostile files through the real harvester.

Each payload below runs as a real node agent under the local batch system and leaves
one hostile file where the harvester reads: ``output.json``, ``status.json``,
``intermediate.jsonl``, the metrics and meta files, a checkpoint snapshot. The job must
fail with a reason naming the file and what is wrong with it, the slot must be freed,
and the other jobs of the site must go on being reported.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edge.config import SiteConfig
from edge.documents import ReportRecord
from edge.fsproto import JobPaths
from edge.harvester.daemon import Harvester
from shared.edge_api import CheckpointConfig, JobEvent, JobSpec, OutputFiles

SpecFactory = Callable[..., JobSpec]
HarvesterFactory = Callable[[], Harvester]

GOOD = """printf '{"status": 0, "loss": 0.25}' > output.json"""
WRITE = f"{shlex.quote(sys.executable)} write.py"
"""Copies the task file ``content`` to the file named by its first argument."""
WRITER = """\
import sys
open(sys.argv[1], "w").write(open("content").read())
"""


async def until(predicate: Callable[[], Any]) -> None:
    """Wait for ``predicate``; the test's timeout bounds the wait."""
    while not predicate():
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(harvester: Harvester) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(harvester.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def failure_of(
    fake_api: Any, make_harvester: HarvesterFactory, spec: JobSpec, site_config: SiteConfig
) -> JobEvent:
    """Run ``spec`` to its end; its one ``failed`` event, the job reported and freed."""
    fake_api.offer(spec)
    harvester = make_harvester()
    async with running(harvester):
        await until(lambda: fake_api.events_of(spec.job_id, "failed"))
        await until(lambda: spec.job_id not in harvester.jobs)
    assert not fake_api.events_of(spec.job_id, "finished")
    failed: JobEvent
    [failed] = fake_api.events_of(spec.job_id, "failed")
    paths = JobPaths.under(site_config.root, spec.job_id)
    assert ReportRecord.model_validate_json(paths.reported.read_text()).kind == "failed"
    return failed


def writing(make_spec: SpecFactory, name: str, content: str, **fields: Any) -> JobSpec:
    return make_spec(
        f"{WRITE} {shlex.quote(name)}",
        task_files={"write.py": WRITER, "content": content},
        **fields,
    )


# -- output.json -----------------------------------------------------------------------


async def test_output_json_as_a_fifo_fails_its_job_and_another_job_is_still_reported(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    fifo = make_spec("mkfifo output.json")
    good = make_spec(f"sleep 1; {GOOD}")
    fake_api.offer(fifo)
    fake_api.offer(good)
    harvester = make_harvester()
    async with running(harvester):
        await until(lambda: fake_api.events_of(fifo.job_id, "failed"))
        await until(lambda: fake_api.events_of(good.job_id, "finished"))
        await until(lambda: not harvester.jobs)
    reason = fake_api.events_of(fifo.job_id, "failed")[0].reason
    assert "output.json is a FIFO; it must be a regular file" in reason
    [finished] = fake_api.events_of(good.job_id, "finished")
    assert [r.loss for r in finished.results] == [0.25]


@pytest.mark.parametrize(
    ("exec_", "words"),
    [
        ("mkdir output.json", "output.json is a directory; it must be a regular file"),
        (
            r"printf '{\"status\": 0, \"loss\": 0.5, \"message\": \"\377\"}' > output.json",
            "output.json is not UTF-8 text (byte 0xff at offset 46)",
        ),
        (
            "head -c 2000000 /dev/zero | tr '\\0' ' ' > output.json",
            "output.json is 2000000 bytes, over the site's limit of 1048576",
        ),
    ],
    ids=["directory", "non-utf8", "oversized"],
)
async def test_a_malformed_output_json_fails_its_job_with_the_reason(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
    exec_: str,
    words: str,
) -> None:
    failed = await failure_of(fake_api, make_harvester, make_spec(exec_), site_config)
    assert words in failed.reason
    assert [r.status for r in failed.results] == [1]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            '{"status": 0, "loss": 1' + "0" * 400 + "}",
            "holds an integer of 401 digits, out of range",
        ),
        ('{"status": 0, "loss": 1e400}', "holds the number 1e400, out of range"),
        ('{"status": 0, "loss": NaN}', "holds NaN; numbers must be finite"),
        ('{"status": 0, "loss": -Infinity}', "holds -Infinity; numbers must be finite"),
        ("[" * 10_000 + "]" * 10_000, "nests arrays or objects 10000 levels deep; the limit is 64"),
    ],
    ids=["int-10e400", "float-1e400", "nan", "infinity", "deep-array"],
)
async def test_an_output_json_with_unrepresentable_values_fails_its_job(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
    content: str,
    words: str,
) -> None:
    spec = writing(make_spec, "output.json", content)
    failed = await failure_of(fake_api, make_harvester, spec, site_config)
    assert f"output.json {words}" in failed.reason


async def test_an_output_json_symlinked_outside_the_work_directory_is_not_followed(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
    tmp_path: Path,
) -> None:
    outside = tmp_path / "someone-elses-result.json"
    outside.write_text('{"status": 0, "loss": 0.125, "message": "secret"}')
    spec = make_spec(f"ln -s {shlex.quote(str(outside))} output.json")
    failed = await failure_of(fake_api, make_harvester, spec, site_config)
    assert "output.json is a symbolic link" in failed.reason
    assert "secret" not in failed.reason


async def test_a_malformed_output_json_is_failed_again_after_a_restart_not_retried_forever(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    spec = writing(make_spec, "output.json", "[" * 10_000 + "]" * 10_000)
    fake_api.offer(spec)
    paths = JobPaths.under(site_config.root, spec.job_id)
    first = make_harvester()
    first.load()
    await first.lease_once(1.0)  # staged and started, then the harvester is gone
    await first.aclose()
    await until(lambda: paths.status.exists() and '"state": "finished"' in paths.status.read_text())
    second = make_harvester()
    await second.run_once()
    [failed] = fake_api.events_of(spec.job_id, "failed")
    assert "nests arrays or objects 10000 levels deep" in failed.reason
    assert not second.jobs
    assert paths.reported.exists()


# -- status.json (the payload may replace the agent's file) --------------------------------

PLANT_STATUS = (
    "cd .. && until grep -q '\"pid\": [0-9]' status.json; do sleep 0.05; done && {make}"
    " && rm -f status.json && mv .status.new status.json; sleep 30"
)
"""Once the agent wrote its status for the running point (it writes again at the end)."""


@pytest.mark.parametrize(
    ("make", "words"),
    [
        ("mkfifo .status.new", "status.json is a FIFO; it must be a regular file"),
        ("mkdir .status.new", "status.json is a directory; it must be a regular file"),
        ("ln -s /etc/hostname .status.new", "status.json is a symbolic link"),
        (
            f"{shlex.quote(sys.executable)} -c \"print('[' * 5000 + ']' * 5000)\" > .status.new",
            "status.json nests arrays or objects 5000 levels deep",
        ),
        ("printf '{\"pid\": NaN}' > .status.new", "status.json holds NaN"),
        (r"printf '{\"state\": \"\377\"}' > .status.new", "status.json is not UTF-8 text"),
    ],
    ids=["fifo", "directory", "symlink", "deep-array", "nan", "non-utf8"],
)
async def test_a_hostile_status_json_fails_its_job_and_does_not_stall_the_scan(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
    make: str,
    words: str,
) -> None:
    hostile = make_spec(PLANT_STATUS.format(make=make))
    good = make_spec(f"sleep 2; {GOOD}")
    fake_api.offer(hostile)
    fake_api.offer(good)
    harvester = make_harvester()
    async with running(harvester):
        await until(lambda: fake_api.events_of(hostile.job_id, "failed"))
        await until(lambda: fake_api.events_of(good.job_id, "finished"))
        await until(lambda: not harvester.jobs)
    assert words in fake_api.events_of(hostile.job_id, "failed")[0].reason
    assert [r.loss for r in fake_api.events_of(good.job_id, "finished")[0].results] == [0.25]


# -- intermediate.jsonl ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "words"),
    [
        ("mkfifo intermediate.jsonl", "intermediate.jsonl is a FIFO; it must be a regular file"),
        ("ln -s /etc/hostname intermediate.jsonl", "intermediate.jsonl is a symbolic link"),
        ("mkdir intermediate.jsonl", "intermediate.jsonl is a directory"),
    ],
    ids=["fifo", "symlink", "directory"],
)
async def test_a_hostile_intermediate_file_fails_its_job(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
    make: str,
    words: str,
) -> None:
    spec = make_spec(f"{make}; sleep 30")
    failed = await failure_of(fake_api, make_harvester, spec, site_config)
    assert words in failed.reason


async def test_unrepresentable_intermediate_lines_are_skipped_and_the_rest_relayed(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    lines = [
        '{"step": 1, "value": NaN}',
        '{"step": 2, "value": 1' + "0" * 400 + "}",
        "[" * 10_000 + "]" * 10_000,
        '{"step": 4, "value": 1e999}',
        '{"step": 5, "value": 0.5}',
    ]
    spec = make_spec(
        f"cp lines intermediate.jsonl; sleep 1; {GOOD}",
        task_files={"lines": "\n".join(lines) + "\n"},
    )
    fake_api.offer(spec)
    harvester = make_harvester()
    async with running(harvester):
        await until(lambda: fake_api.events_of(spec.job_id, "finished"))
    assert [(v.step, v.value) for v in fake_api.intermediate[spec.job_id]] == [(5, 0.5)]


# -- metrics and meta files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "words"),
    [
        ("mkfifo metrics.tgz", "metrics.tgz is a FIFO; it must be a regular file"),
        ("mkdir metrics.tgz", "metrics.tgz is a directory; it must be a regular file"),
        ("ln -s {outside} metrics.tgz", "metrics.tgz is a symbolic link"),
        ("ln -s {outside} meta.json", "meta.json is a symbolic link"),
        ("mkfifo meta.json", "meta.json is a FIFO; it must be a regular file"),
        (
            "head -c 2000000 /dev/zero > meta.json",
            "meta.json is 2000000 bytes, over the site's limit of 1048576",
        ),
    ],
    ids=["metrics-fifo", "metrics-dir", "metrics-symlink", "meta-symlink", "meta-fifo", "meta-big"],
)
async def test_a_hostile_metrics_or_meta_file_fails_its_job_and_is_not_uploaded(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
    tmp_path: Path,
    make: str,
    words: str,
) -> None:
    outside = tmp_path / "private.key"
    outside.write_text("not for the store")
    spec = make_spec(
        f"{make.format(outside=shlex.quote(str(outside)))}; {GOOD}",
        files=OutputFiles(metrics="metrics.tgz", meta="meta.json"),
    )
    failed = await failure_of(fake_api, make_harvester, spec, site_config)
    assert words in failed.reason
    assert all(b"not for the store" not in data for data in fake_api.uploads.values())
    assert {c.kind for c in fake_api.confirms} <= {"log"}


# -- checkpoint snapshots ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "words"),
    [
        ("mkfifo ckpt-000007.tar.gz", "ckpt-000007.tar.gz is a FIFO; it must be a regular file"),
        ("ln -s /etc/hostname ckpt-000007.tar.gz", "ckpt-000007.tar.gz is a symbolic link"),
    ],
    ids=["fifo", "symlink"],
)
async def test_a_hostile_checkpoint_snapshot_fails_its_job(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
    make: str,
    words: str,
) -> None:
    spec = make_spec(
        f"mkdir -p ../checkpoints && cd ../checkpoints && {make} && sleep 30",
        checkpoint_config=CheckpointConfig(save=["model.pt"], interval=1000),
    )
    failed = await failure_of(fake_api, make_harvester, spec, site_config)
    assert words in failed.reason
