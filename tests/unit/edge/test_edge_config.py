"""The site config: typed, strict, paths relative to the file, the token kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import SiteConfigError, load_site_config

MINIMAL = """
site = "hpc-a"
api_url = "https://hpo.example.org/"
token_file = "secrets/site.token"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "site.token").write_text("tok-123\n")
    config = load_site_config(write(tmp_path, MINIMAL), environ={"HPO_EDGE_ROOT": "/gpfs/edge"})
    assert config.root == Path("/gpfs/edge")
    assert config.base_url == "https://hpo.example.org"
    assert config.api_token() == "tok-123"
    assert (config.slots, config.poll_interval, config.heartbeat_interval) == (1, 2.0, 10.0)
    assert config.lost_after_seconds == 60.0
    assert config.batch.kind == "local"
    assert config.runtime.kind == "process"
    assert config.isolate_network is False


def test_full_config(tmp_path: Path) -> None:
    text = """
site = "summit-like"
api_url = "https://hpo.example.org"
token = "s3cr3t-value"
root = "edge-root"
arch = "ppc64le"
slots = 6
isolate_network = true
verify_tls = false

[batch]
kind = "local"

[runtime]
kind = "process"
pass_env = ["LD_LIBRARY_PATH"]
"""
    config = load_site_config(write(tmp_path, text), environ={})
    assert config.root == tmp_path / "edge-root"
    assert config.arch == "ppc64le"
    assert config.runtime.pass_env == ["LD_LIBRARY_PATH"]
    assert "s3cr3t-value" not in repr(config)


def test_the_image_cache_defaults_under_the_root_and_takes_sizes_with_units(
    tmp_path: Path,
) -> None:
    config = load_site_config(write(tmp_path, MINIMAL + 'root = "/r"\n'), environ={})
    assert config.images.dir is None
    assert config.images.max_size == 100 * 2**30
    text = MINIMAL + 'root = "/r"\n[images]\ndir = "sif"\nmax_size = "2.5GiB"\n'
    config = load_site_config(write(tmp_path, text), environ={})
    assert config.images.dir == tmp_path / "sif"
    assert config.images.max_size == int(2.5 * 2**30)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (MINIMAL + 'root = "/r"\nslot = 3\n', "slot"),
        (MINIMAL + 'root = "/r"\ntoken = "t"\n', "exactly one"),
        (MINIMAL + 'root = "/r"\narch = "x86"\n', "arch"),
        (MINIMAL + 'root = "/r"\n[batch]\nkind = "condor"\n', "batch"),
        (MINIMAL + 'root = "/r"\n[runtime]\nkind = "process"\nbind = "/x"\n', "bind"),
        (MINIMAL + 'root = "/r"\n[images]\nmax_size = "lots"\n', "images.max_size"),
        (MINIMAL + 'root = "/r"\n[images]\npull_timeout = 0\n', "images.pull_timeout"),
        (MINIMAL, "root"),
        ("site = [", "not valid TOML"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(SiteConfigError, match=words):
        load_site_config(write(tmp_path, text), environ={})


def test_unreadable_token_file_is_a_clear_error(tmp_path: Path) -> None:
    config = load_site_config(write(tmp_path, MINIMAL + 'root = "/r"\n'), environ={})
    with pytest.raises(SiteConfigError, match="cannot read token_file"):
        config.api_token()


def test_layout_per_gpu_and_its_late_binding_table(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """
root = "/gpfs/edge"
slots = 12
[batch]
kind = "slurm"
layout = "per_gpu"
gpus_per_node = 6
walltime = "02:00:00"
[late_binding]
expected_job_seconds = 1200
queue_per_slot = 2
"""
    )
    config = load_site_config(write(tmp_path, text), environ={})
    assert config.per_gpu and config.batch.layout == "per_gpu"
    assert config.late_binding.expected_job_seconds == 1200
    assert config.late_binding.queue_per_slot == 2
    assert config.late_binding.idle_seconds == 60
    assert load_site_config(write(tmp_path, MINIMAL + 'root = "/r"\n'), environ={}).per_gpu is False


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ('kind = "slurm"\nlayout = "per_gpu"', "gpus_per_node"),
        ('kind = "slurm"\nlayout = "per_gpu"\ngpus_per_node = 6', r"slots \(2\) must be at least"),
        ('kind = "local"\nlayout = "per_node"', "layout"),
    ],
)
def test_bad_layouts_are_refused_naming_the_field(tmp_path: Path, batch: str, message: str) -> None:
    text = MINIMAL + f'root = "/r"\nslots = 2\n[batch]\n{batch}\n'
    with pytest.raises(SiteConfigError, match=message):
        load_site_config(write(tmp_path, text), environ={})
