"""The harvester's image step: resolve for the site arch, pull only when the runtime
runs SIF images, and keep an image reserved until its job is staged."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.harvester.images import ImageStager, ImageStagingError, open_cache
from edge.harvester.sifcache import SifCache, SifCacheConfig
from shared.runtime import ApptainerRuntimeConfig, BwrapRuntimeConfig, SingularityRuntimeConfig
from tests import sif_tool
from tests.unit.edge.conftest import SpecFactory

FIRST = "docker://registry.example.org/a@sha256:" + "a1" * 32
SECOND = "docker://registry.example.org/b@sha256:" + "b2" * 32


async def alive() -> bool:
    return True


def test_only_sif_runtimes_get_a_cache_with_their_tool(tmp_path: Path) -> None:
    assert open_cache(SifCacheConfig(), BwrapRuntimeConfig(), tmp_path) is None
    cache = open_cache(
        SifCacheConfig(), SingularityRuntimeConfig(executable="/opt/sing/bin/singularity"), tmp_path
    )
    assert cache is not None
    assert (cache.tool, cache.directory) == ("/opt/sing/bin/singularity", tmp_path / "images")
    mine = SifCacheConfig(dir=tmp_path / "c", executable="apptainer-login", max_size="1KiB")
    cache = open_cache(mine, ApptainerRuntimeConfig(), tmp_path)
    assert cache is not None
    assert (cache.tool, cache.directory, cache.max_size) == (
        "apptainer-login",
        tmp_path / "c",
        1024,
    )


async def test_without_a_cache_the_resolved_reference_passes_unchanged(
    make_spec: SpecFactory,
) -> None:
    stager = ImageStager("ppc64le", None, in_use=set, keepalive_interval=1.0)
    spec = make_spec(container={"amd64": FIRST, "power9": SECOND})
    async with stager.reserve(spec, alive) as image:
        assert image == SECOND
    async with stager.reserve(make_spec(), alive) as image:
        assert image is None
    with pytest.raises(ImageStagingError, match="no image for ppc64le"):
        async with stager.reserve(make_spec(container={"arm64": FIRST}), alive):
            pass


async def test_a_local_sif_path_is_not_pulled(make_spec: SpecFactory, tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    sif_tool.install(tools)
    cache = SifCache(tmp_path / "cache", tool=str(tools / "apptainer"), max_size=10**6)
    stager = ImageStager("amd64", cache, in_use=set, keepalive_interval=1.0)
    async with stager.reserve(make_spec(container="/gpfs/images/x.sif"), alive) as image:
        assert image == "/gpfs/images/x.sif"
    assert sif_tool.calls(tools) == []


async def test_an_image_reserved_for_a_job_being_staged_survives_another_pull(
    make_spec: SpecFactory, tmp_path: Path
) -> None:
    tools = tmp_path / "bin"
    sif_tool.install(tools)
    cache = SifCache(tmp_path / "cache", tool=str(tools / "apptainer"), max_size=1)
    stager = ImageStager("amd64", cache, in_use=set, keepalive_interval=1.0)
    async with stager.reserve(make_spec(container=FIRST), alive) as first:
        assert first is not None
        async with stager.reserve(make_spec(container=SECOND, job_id="job-2"), alive) as second:
            assert second is not None
            assert Path(first).is_file() and Path(second).is_file()  # both over the cap
        assert stager.reserved == {Path(first)}
    assert stager.reserved == frozenset()
    # Once neither job holds it (and no tracked job uses it), the cap applies again.
    async with stager.reserve(make_spec(container=SECOND, job_id="job-3"), alive):
        pass
    assert [c.path.name for c in cache.images()] == [Path(second).name]
