"""Batch options per compute class: what each scheduler's script gets for a job of a
class (partition/queue, account, QOS, constraint, extra directives), what the config
refuses (options a scheduler cannot express, directives that could break out of the
directive block), and that the heartbeat declares the classes without them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge.batch import LsfBatchConfig, PbsBatchConfig, SgeBatchConfig, SlurmBatchConfig
from edge.batch.lsf import LsfBatch
from edge.batch.options import ClassBatchOptions
from edge.batch.pbs import PbsBatch
from edge.batch.script import new_worker
from edge.batch.sge import SgeBatch
from edge.batch.slurm import SlurmBatch
from edge.classes import class_batch_options, declared_classes
from edge.config import SiteConfig, SiteConfigError, load_site_config


def worker_dir(tmp_path: Path, job_id: str = "job-1") -> Path:
    path = tmp_path / "root" / "jobs" / job_id
    path.mkdir(parents=True)
    return path


def prefixed(script: str, prefix: str) -> list[str]:
    return [line[len(prefix) + 1 :] for line in script.splitlines() if line.startswith(prefix)]


def site(tmp_path: Path, batch: dict[str, Any], *classes: dict[str, Any]) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": "s",
            "api_url": "https://api.example.org",
            "token": "t",
            "root": str(tmp_path),
            "batch": batch,
            "compute_classes": list(classes),
        }
    )


A100 = ClassBatchOptions(
    partition="gpu-a100",
    account="proj2",
    qos="hpo",
    constraint="a100&ib",
    directives=["--mem=64G"],
)


def test_slurm_class_options_replace_and_add_to_the_config(tmp_path: Path) -> None:
    batch = SlurmBatch(
        SlurmBatchConfig(partition="cpu", account="proj1", directives=["--comment=hpo"])
    )
    plain = prefixed(batch.render(new_worker(worker_dir(tmp_path))), "#SBATCH")
    assert "--partition=cpu" in plain and "--account=proj1" in plain
    assert not any(line.startswith(("--qos", "--constraint")) for line in plain)
    lines = prefixed(batch.render(new_worker(worker_dir(tmp_path, "job-2")), A100), "#SBATCH")
    assert "--partition=gpu-a100" in lines and "--partition=cpu" not in lines
    assert "--account=proj2" in lines and "--account=proj1" not in lines
    assert "--qos=hpo" in lines and "--constraint=a100&ib" in lines
    assert lines[-2:] == ["--comment=hpo", "--mem=64G"]  # the config's first, the class's last


def test_sge_class_options(tmp_path: Path) -> None:
    batch = SgeBatch(SgeBatchConfig(queue="all.q"))
    options = ClassBatchOptions(queue="gpu.q", account="proj2", directives=["-l gpu_a100=true"])
    lines = prefixed(batch.render(new_worker(worker_dir(tmp_path)), options), "#$")
    assert "-q gpu.q" in lines and "-q all.q" not in lines
    assert "-A proj2" in lines and lines[-1] == "-l gpu_a100=true"


def test_lsf_class_options(tmp_path: Path) -> None:
    batch = LsfBatch(LsfBatchConfig(queue="normal", account="proj1"))
    options = ClassBatchOptions(queue="gpu", constraint="a100", directives=["-sla hpo"])
    lines = prefixed(batch.render(new_worker(worker_dir(tmp_path)), options), "#BSUB")
    assert "-q gpu" in lines and "-q normal" not in lines
    assert "-P proj1" in lines  # not replaced: the class names no account
    assert '-R "select[a100]"' in lines and lines[-1] == "-sla hpo"


def test_pbs_class_options(tmp_path: Path) -> None:
    batch = PbsBatch(PbsBatchConfig())
    options = ClassBatchOptions(queue="gpu", account="proj2", directives=["-l filesystems=eagle"])
    lines = prefixed(batch.render(new_worker(worker_dir(tmp_path)), options), "#PBS")
    assert "-q gpu" in lines and "-A proj2" in lines and lines[-1] == "-l filesystems=eagle"


def test_a_rendered_script_with_class_options_still_runs_as_a_shell_script(
    tmp_path: Path,
) -> None:
    """bash reads the directive lines as comments: the options change nothing else."""
    script = SlurmBatch(SlurmBatchConfig(python="/bin/true", export_code_root=False)).render(
        new_worker(worker_dir(tmp_path)), A100
    )
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"directives": ["--qos=a\n/bin/rm -rf ~"]}, "line break or control character"),
        ({"directives": ["--qos=a\r"]}, "line break or control character"),
        ({"directives": ["touch /tmp/x"]}, "not a scheduler option"),
        ({"directives": ["$(reboot)"]}, "not a scheduler option"),
        ({"constraint": "a100; reboot"}, "constraint"),
        ({"constraint": "$(reboot)"}, "constraint"),
        ({"partition": 'gpu"x'}, "partition"),
        ({"qos": "high prio"}, "qos"),
        ({"account": "a\nb"}, "account"),
        ({"nodes": 2}, "nodes"),
    ],
)
def test_unsafe_or_unknown_options_are_refused_naming_the_field(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ClassBatchOptions.model_validate(options)


@pytest.mark.parametrize(
    ("batch", "options", "message"),
    [
        ({"kind": "slurm"}, {"queue": "q"}, "'queue' is not an option of slurm: Slurm has"),
        ({"kind": "sge"}, {"partition": "p"}, "'partition' is not an option of sge"),
        ({"kind": "sge"}, {"constraint": "a100"}, "'constraint' is not an option of sge"),
        ({"kind": "pbs"}, {"qos": "high"}, "'qos' is not an option of pbs"),
        ({"kind": "lsf"}, {"qos": "high"}, "'qos' is not an option of lsf"),
        (
            {"kind": "local"},
            {"directives": ["-x"]},
            "the local batch system .* takes no batch options",
        ),
    ],
)
def test_options_the_batch_system_cannot_express_are_refused(
    tmp_path: Path, batch: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=r"compute_classes\[1\] \(b\)\.batch: " + message):
        site(tmp_path, batch, {"name": "a"}, {"name": "b", "batch": options})


def test_the_site_toml_names_the_class_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        'site = "s"\napi_url = "https://api.example.org"\ntoken = "t"\nroot = "r"\n'
        '[batch]\nkind = "slurm"\n'
        '[[compute_classes]]\nname = "a100"\ngpus_per_node = 4\n'
        'batch = { partition = "gpu", directives = ["sleep 1"] }\n'
    )
    with pytest.raises(SiteConfigError, match=r"compute_classes.*batch.*directives"):
        load_site_config(path)


def test_the_heartbeat_declares_classes_without_their_batch_options(tmp_path: Path) -> None:
    config = site(
        tmp_path,
        {"kind": "slurm"},
        {"name": "cpu"},
        {"name": "a100", "gpus_per_node": 4, "batch": A100.model_dump()},
    )
    declared = declared_classes(config)
    assert [c.name for c in declared] == ["cpu", "a100"]
    assert all("batch" not in c.model_dump() for c in declared)
    assert declared[1].gpus_per_node == 4
    assert class_batch_options(config, "a100") == A100
    assert class_batch_options(config, "cpu") is None
    assert class_batch_options(config, "unknown") is None
    assert class_batch_options(config, None) is None
