"""Task resources against compute classes, the broker's preference learnt from run
times, and the class a site declares from its batch config when it lists none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge.classes import declared_classes
from edge.config import SiteConfig
from services.broker.logic import choose, refusal, waiting_reason
from shared.domain.models import Site
from shared.domain.resources import ComputeClass, Resources, class_refusal
from shared.domain.taskconfig import TaskConfig

A100 = ComputeClass(
    name="a100",
    gpu_model="A100",
    gpus_per_node=4,
    cpus_per_node=64,
    memory="512GiB",  # type: ignore[arg-type]
    max_nodes=8,
    layouts=["single", "multi_node"],
    max_walltime="1-00:00:00",  # type: ignore[arg-type]
)
CPU = ComputeClass(name="cpu", cpus_per_node=128)


def cfg(**resources: Any) -> TaskConfig:
    return TaskConfig.model_validate({"evaluationExec": "run", "resources": resources})


def site(name: str, *classes: ComputeClass, free: int = 4) -> Site:
    return Site(id=name, free_slots=free, compute_classes=list(classes))


@pytest.mark.parametrize(
    ("needs", "why"),
    [
        ({}, None),
        ({"gpus": 4, "gpu_model": "a100", "memory": "256GiB", "walltime": "12:00:00"}, None),
        ({"gpus": 16, "nodes": 4, "layout": "multi_node"}, None),
        ({"gpus": 8}, "4 GPU(s) per node"),
        ({"nodes": 9}, "8 node(s) per job at most"),
        ({"gpus": 1, "gpu_model": "H100"}, "GPU model A100"),
        ({"cpus": 65}, "64 CPU cores per node"),
        ({"memory": "1TiB"}, "512.0GiB of memory per node"),
        ({"walltime": "1-00:00:01"}, "a walltime limit of 24:00:00"),
        ({"layout": "per_gpu"}, "layouts single, multi_node"),
        ({"compute_class": "cpu"}, "not the class cpu"),
    ],
)
def test_a_class_satisfies_a_task_or_says_what_it_lacks(
    needs: dict[str, Any], why: str | None
) -> None:
    assert class_refusal(Resources.model_validate(needs), A100) == why


def test_a_walltime_is_hh_mm_ss_d_hh_mm_ss_or_seconds() -> None:
    assert Resources.model_validate({"walltime": "02:30:00"}).walltime == 9000
    assert Resources.model_validate({"walltime": "1-00:00:00"}).walltime == 86400
    assert Resources.model_validate({"walltime": 60}).walltime == 60
    with pytest.raises(ValidationError, match="minutes and seconds run to 59"):
        Resources.model_validate({"walltime": "1:75:00"})


def test_only_sites_with_a_fitting_class_are_chosen_and_the_reason_names_the_need() -> None:
    needs = cfg(gpus=4)
    small, big, old = site("small", CPU), site("big", CPU, A100), Site(id="old", free_slots=9)
    assert choose(needs, [small, big, old], {}) == (big, "a100")
    assert refusal(needs, old) == "it declares no compute classes"
    assert choose(cfg(), [old], {}) == (old, None), "a task asking nothing runs anywhere"
    assert waiting_reason(needs, [small, old]) == (
        "needs 4 GPU(s) per node; no live site offers them (small: class cpu: 0 GPU(s) "
        "per node; old: it declares no compute classes)"
    )


def test_the_class_that_finished_the_tasks_jobs_fastest_is_preferred_once_each_was_tried() -> None:
    fast = ComputeClass(name="fast", gpus_per_node=1)
    slow = ComputeClass(name="slow", gpus_per_node=1)
    one, two = site("one", slow, free=8), site("two", fast, free=2)
    needs = cfg(gpus=1)
    assert choose(needs, [one, two], {}) == (one, "slow"), "untried: the most room"
    assert choose(needs, [one, two], {}, {("one", "slow"): 100.0}) == (two, "fast")
    times = {("one", "slow"): 100.0, ("two", "fast"): 20.0}
    assert choose(needs, [one, two], {}, times) == (two, "fast")
    assert choose(needs, [one, two], {"two": 2}, times) == (one, "slow"), "the fast one is full"


def test_a_site_without_classes_declares_one_from_its_batch_config(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "site": "s",
        "api_url": "http://127.0.0.1:1",
        "token": "t",
        "root": str(tmp_path),
    }
    plain = SiteConfig.model_validate(base)
    assert declared_classes(plain) == [ComputeClass(name="default")]
    slurm = SiteConfig.model_validate(
        {
            **base,
            "batch": {"kind": "slurm", "gpus_per_node": 4, "nodes": 2, "walltime": "02:00:00"},
        }
    )
    assert declared_classes(slurm) == [
        ComputeClass(name="default", gpus_per_node=4, max_nodes=2, max_walltime=7200)
    ]
    listed = SiteConfig.model_validate({**base, "compute_classes": [A100.model_dump()]})
    assert declared_classes(listed) == [A100]
