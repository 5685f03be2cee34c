"""The runtime registry and the typed ``[runtime]`` union of site configs and job.json."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.config import SiteConfigError, load_site_config
from edge.documents import JobDocument, NodeSettings
from shared.runtime import (
    ApptainerRuntimeConfig,
    BwrapRuntimeConfig,
    CharliecloudRuntimeConfig,
    ProcessRuntimeConfig,
    SingularityRuntimeConfig,
    image_runtime_kinds,
    open_runtime,
    parse_runtime_config,
    runtime_kinds,
)
from tests.unit.runtime.jobs import stage

SITE = """\
site = "hpc-a"
api_url = "https://hpo.example.org"
token = "t"
root = "/r"
"""


def test_charliecloud_runs_images_but_is_not_offered_for_registry_references() -> None:
    """A steering host probes image_runtime_kinds() for a runtime that can pull
    steeringContainer references; ch-run on its PATH must not be taken for one."""
    assert open_runtime("charliecloud").runs_images
    assert "charliecloud" not in image_runtime_kinds()


def test_every_kind_is_registered() -> None:
    assert runtime_kinds() == ["apptainer", "bwrap", "charliecloud", "process", "singularity"]
    for kind in runtime_kinds():
        assert open_runtime(kind).kind == kind


@pytest.mark.parametrize(
    ("table", "model"),
    [
        ({}, ProcessRuntimeConfig),  # a table without kind stays the process runtime
        ({"pass_env": ["X"]}, ProcessRuntimeConfig),
        ({"kind": "bwrap", "hide": ["/gpfs/edge"]}, BwrapRuntimeConfig),
        ({"kind": "apptainer", "binds": ["/data"]}, ApptainerRuntimeConfig),
        ({"kind": "singularity", "no_eval": False}, SingularityRuntimeConfig),
        ({"kind": "charliecloud", "default_image": "/gpfs/img"}, CharliecloudRuntimeConfig),
    ],
)
def test_tables_validate_to_their_kind(table: dict[str, object], model: type) -> None:
    assert isinstance(parse_runtime_config(table), model)


def test_unknown_kinds_and_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown runtime 'docker'"):
        open_runtime("docker")
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        parse_runtime_config({"kind": "docker"})
    with pytest.raises(ValidationError, match="ignore_image"):
        open_runtime("apptainer", {"ignore_image": True})
    with pytest.raises(ValueError, match="is for 'bwrap', not 'process'"):
        open_runtime("process", BwrapRuntimeConfig())


def test_site_config_reads_a_container_runtime(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        SITE
        + '[runtime]\nkind = "apptainer"\nexecutable = "/usr/bin/apptainer"\n'
        + 'binds = ["/gpfs/datasets:/datasets", {source = "/cvmfs"}]\n'
    )
    config = load_site_config(path, environ={})
    assert isinstance(config.runtime, ApptainerRuntimeConfig)
    assert [b.spec() for b in config.runtime.binds] == [
        "/gpfs/datasets:/datasets:ro",
        "/cvmfs:/cvmfs:ro",
    ]


def test_site_config_names_a_bad_runtime_key(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SITE + '[runtime]\nkind = "bwrap"\nhide = ["/tmp"]\n')
    with pytest.raises(SiteConfigError, match="hide"):
        load_site_config(path, environ={})


def test_job_json_round_trips_the_runtime(tmp_path: Path) -> None:
    runtime = BwrapRuntimeConfig(hide=["/gpfs/edge"], ignore_image=True)
    paths = stage(tmp_path, runtime, None)
    doc = JobDocument.model_validate_json(paths.job_json.read_text())
    assert doc.node.runtime == runtime
    assert NodeSettings().runtime == ProcessRuntimeConfig()
