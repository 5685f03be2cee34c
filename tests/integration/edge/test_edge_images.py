"""Images pulled on the login node: the harvester resolves a job's container for its
site's arch, pulls it into the SIF cache with the tool's ``pull --arch``, and the job
runs the cached SIF through the real node agent and the local batch system.

The tool is the recording stand-in of ``tests/sif_tool.py`` (Apptainer is not
installable here): its ``pull`` writes a fake SIF and its ``exec`` refuses anything but
such a file, then runs the payload natively.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edge.batch import LocalBatchConfig, open_batch
from edge.config import SiteConfig
from edge.documents import JobDocument
from edge.fsproto import JobPaths
from edge.harvester.api import EdgeApiClient
from edge.harvester.daemon import Harvester
from edge.harvester.sifcache import SifCacheConfig
from shared.edge_api import JobSpec
from shared.runtime import ApptainerRuntimeConfig
from tests import sif_tool
from tests.integration.edge.conftest import SITE
from tests.integration.edge.test_edge_harvester import running, until

SpecFactory = Callable[..., JobSpec]
AMD64 = "docker://registry.example.org/eval@sha256:" + "a1" * 32
PPC64LE = "docker://registry.example.org/eval@sha256:" + "b2" * 32
IMAGES = {"amd64": AMD64, "ppc64le": PPC64LE}
PAYLOAD = 'printf \'{"status": 0, "loss": 0.5}\' > output.json'


@pytest.fixture
def tool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in ``apptainer``, first on the PATH of the harvester and its agents."""
    directory = tmp_path / "bin"
    sif_tool.install(directory, "apptainer")
    monkeypatch.setenv("PATH", sif_tool.on_path(directory))
    return directory


@pytest.fixture
async def harvester(
    site_config: SiteConfig, tool_dir: Path, tmp_path: Path
) -> AsyncIterator[Harvester]:
    config = site_config.model_copy(
        update={
            "runtime": ApptainerRuntimeConfig(),
            "images": SifCacheConfig(dir=tmp_path / "sif-cache", max_size=10**6),
        }
    )
    api = EdgeApiClient(config.base_url, SITE, config.api_token, attempts=3, backoff=0.05)
    try:
        yield Harvester(config, api, open_batch(LocalBatchConfig()))
    finally:
        await api.aclose()


def image_of(harvester: Harvester, job_id: str) -> str | None:
    paths = JobPaths.under(harvester.config.root, job_id)
    return JobDocument.model_validate_json(paths.job_json.read_text()).node.image


async def test_jobs_with_a_per_arch_image_map_run_the_sif_pulled_once_for_the_site_arch(
    fake_api: Any, harvester: Harvester, make_spec: SpecFactory, tool_dir: Path, tmp_path: Path
) -> None:
    specs = [make_spec(PAYLOAD, container=IMAGES) for _ in range(2)]
    for spec in specs:
        fake_api.offer(spec)
    async with running(harvester):
        for spec in specs:
            await until(lambda s=spec: fake_api.events_of(s.job_id, "finished"))

    sif = tmp_path / "sif-cache" / f"sha256-{'a1' * 32}.amd64.sif"
    [pull] = sif_tool.calls(tool_dir, "pull")
    assert pull["argv"][1:4] == ["pull", "--arch", "amd64"]
    assert pull["argv"][-1] == AMD64
    assert json.loads(sif.read_text())["reference"] == AMD64
    execs = sif_tool.calls(tool_dir, "exec")
    assert len(execs) == 2
    for call in execs:
        assert call["argv"][call["argv"].index("/bin/sh") - 1] == str(sif)
    for spec in specs:
        assert image_of(harvester, spec.job_id) == str(sif)
        [finished] = fake_api.events_of(spec.job_id, "finished")
        assert [r.loss for r in finished.results] == [0.5]


async def test_a_failed_pull_fails_the_job_with_the_tools_message(
    fake_api: Any, harvester: Harvester, make_spec: SpecFactory, tool_dir: Path
) -> None:
    spec = make_spec(PAYLOAD, container={"amd64": "docker://registry.example.org/missing:1"})
    fake_api.offer(spec)
    async with running(harvester):
        await until(lambda: fake_api.events_of(spec.job_id, "failed"))
    [failed] = fake_api.events_of(spec.job_id, "failed")
    assert failed.reason.startswith("the site could not stage the job: apptainer pull of ")
    assert "manifest unknown: docker://registry.example.org/missing:1" in failed.reason
    assert "Traceback" not in failed.reason
    assert not JobPaths.under(harvester.config.root, spec.job_id).dir.exists()
    assert sif_tool.calls(tool_dir, "exec") == []


async def test_a_map_without_the_site_arch_fails_the_job_naming_the_arches_it_has(
    fake_api: Any, harvester: Harvester, make_spec: SpecFactory, tool_dir: Path
) -> None:
    spec = make_spec(PAYLOAD, container={"ppc64le": PPC64LE, "arm64": PPC64LE})
    fake_api.offer(spec)
    async with running(harvester):
        await until(lambda: fake_api.events_of(spec.job_id, "failed"))
    reason = fake_api.events_of(spec.job_id, "failed")[0].reason
    assert "no image for amd64 (it has: arm64, ppc64le)" in reason
    assert sif_tool.calls(tool_dir) == []


async def test_a_long_pull_blocks_neither_scans_nor_heartbeats_and_keeps_the_lease(
    fake_api: Any,
    harvester: Harvester,
    make_spec: SpecFactory,
    tool_dir: Path,
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    running_job = make_spec(
        f"while [ ! -e {release} ]; do sleep 0.05; done; {PAYLOAD}", container=AMD64
    )
    waiting = make_spec(PAYLOAD, container=PPC64LE.replace("b2", "c3"))
    fake_api.offer(running_job)
    async with running(harvester):
        await until(lambda: fake_api.events_of(running_job.job_id, "started"))
        (tool_dir / "hold").touch()  # the next pull waits until the test lets it go
        fake_api.offer(waiting)
        await until(lambda: len(sif_tool.calls(tool_dir, "pull")) == 2)
        beats_before = len(fake_api.events_of(running_job.job_id, "heartbeat"))
        sites_before = len(fake_api.heartbeats)
        # While the pull hangs: the waiting job's lease is kept alive, the running job's
        # heartbeats are relayed and the site heartbeats go on.
        await until(lambda: len(fake_api.events_of(waiting.job_id, "heartbeat")) >= 2)
        await until(
            lambda: len(fake_api.events_of(running_job.job_id, "heartbeat")) > beats_before + 1
        )
        await until(lambda: len(fake_api.heartbeats) > sites_before + 1)
        assert not fake_api.events_of(waiting.job_id, "started")
        assert not JobPaths.under(harvester.config.root, waiting.job_id).dir.exists()
        release.touch()
        await until(lambda: fake_api.events_of(running_job.job_id, "finished"))
        (tool_dir / "hold").unlink()
        await until(lambda: fake_api.events_of(waiting.job_id, "finished"))
    kinds = [e.kind for e in fake_api.events_of(waiting.job_id)]
    assert kinds.index("started") > kinds.index("heartbeat")


async def test_a_job_taken_back_during_its_pull_is_dropped_and_the_pull_stopped(
    fake_api: Any, harvester: Harvester, make_spec: SpecFactory, tool_dir: Path
) -> None:
    spec = make_spec(PAYLOAD, container=AMD64)
    (tool_dir / "hold").touch()
    fake_api.offer(spec)
    async with running(harvester):
        await until(lambda: sif_tool.calls(tool_dir, "pull"))
        fake_api.kill.add(spec.job_id)
        await until(lambda: not harvester.images.reserved)
    (tool_dir / "hold").unlink()
    await asyncio.sleep(0.3)  # a pull that survived would now write its image
    assert harvester.images.cache is not None
    assert harvester.images.cache.images() == []
    assert not fake_api.events_of(spec.job_id, "started")
    assert not fake_api.events_of(spec.job_id, "failed")
    assert not JobPaths.under(harvester.config.root, spec.job_id).dir.exists()
