"""The broker's matching rules and what a site declares it can run."""

from __future__ import annotations

from typing import Any

import pytest

from services.broker.logic import choose_site, eligible, places, refusal, waiting_reason
from shared.capabilities import cannot_run, declared
from shared.domain.models import Site
from shared.domain.taskconfig import TaskConfig
from shared.edge_api import SiteCapabilities
from shared.runtime import parse_runtime_config


def cfg(**over: Any) -> TaskConfig:
    return TaskConfig.model_validate({"evaluationExec": "run", **over})


def site(name: str, arch: str = "amd64", free: int = 2, **caps: Any) -> Site:
    declared_caps = SiteCapabilities(**caps) if caps else None
    return Site(id=name, arch=arch, free_slots=free, capabilities=declared_caps)


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        ({"kind": "process"}, SiteCapabilities(runtime="process")),
        (
            {"kind": "process", "ignore_image": True},
            SiteCapabilities(runtime="process", ignores_images=True),
        ),
        ({"kind": "bwrap"}, SiteCapabilities(runtime="bwrap")),
    ],
)
def test_host_runtimes_declare_they_run_no_image(
    runtime: dict[str, Any], expected: SiteCapabilities
) -> None:
    assert declared(parse_runtime_config(runtime)) == expected


@pytest.mark.parametrize("kind", ["apptainer", "singularity"])
def test_sif_runtimes_run_local_images_and_what_the_harvester_pulls(kind: str) -> None:
    caps = declared(parse_runtime_config({"kind": kind}))
    assert caps.runtime == kind and not caps.ignores_images
    assert {"path", "docker", "oras"} <= set(caps.image_schemes)
    assert cannot_run(caps, "docker://x/y:1") is None
    assert cannot_run(caps, "/gpfs/images/eval.sif") is None


def test_charliecloud_runs_local_image_directories_and_needs_one() -> None:
    bare = declared(parse_runtime_config({"kind": "charliecloud"}))
    assert bare == SiteCapabilities(
        runtime="charliecloud", image_schemes=["path"], needs_image=True
    )
    assert cannot_run(bare, "/gpfs/images/torch") is None
    assert cannot_run(bare, "docker://x") == "its charliecloud runtime runs only local image files"
    assert cannot_run(bare, None) == (
        "its charliecloud runtime runs only jobs that name an image (evaluationContainer), "
        "and the site has no default image"
    )
    with_default = declared(
        parse_runtime_config({"kind": "charliecloud", "default_image": "/gpfs/images/torch"})
    )
    assert cannot_run(with_default, None) is None


def test_what_each_kind_of_site_cannot_run() -> None:
    plain = SiteCapabilities(runtime="process")
    assert cannot_run(plain, None) is None
    assert cannot_run(plain, "docker://x") == "its process runtime runs no container image"
    assert cannot_run(SiteCapabilities(runtime="bwrap", ignores_images=True), "docker://x") is None
    local = SiteCapabilities(runtime="apptainer", image_schemes=["path"])
    assert cannot_run(local, "docker://x") == "its apptainer runtime runs only local image files"


def test_a_site_is_refused_for_the_reason_that_applies() -> None:
    assert refusal(cfg(site="a,b"), site("c")) == "the task may run only at a, b"
    assert refusal(cfg(site="a,b"), site("b")) is None
    assert (
        refusal(cfg(architecture="arm64"), site("a")) == "the task needs arm64, the site is amd64"
    )
    arm_only = cfg(evaluationContainer={"arm64": "/img/arm.sif"})
    assert refusal(arm_only, site("a")) == "evaluationContainer has no image for amd64"
    image = cfg(evaluationContainer="docker://x/eval:1")
    assert eligible(image, site("legacy"))  # declared nothing: taken at its word
    assert not eligible(image, site("plain", runtime="process"))
    assert eligible(image, site("sif", runtime="apptainer", image_schemes=["path", "docker"]))


def test_the_broker_picks_only_a_site_that_can_run_the_job() -> None:
    image = cfg(evaluationContainer="docker://x/eval:1")
    sites = [
        site("roomy", free=10, runtime="process"),
        site("able", free=1, runtime="apptainer", image_schemes=["docker"]),
    ]
    chosen = choose_site(image, sites, {})
    assert chosen is not None and chosen.id == "able"
    assert choose_site(image, sites, {"able": 1}) is None  # full: waits, no reason to show
    assert waiting_reason(image, sites) == ""


def test_the_places_a_task_could_run_at_full_or_not() -> None:
    image = cfg(evaluationContainer="docker://x/eval:1")
    able = site("able", free=0, runtime="apptainer", image_schemes=["docker"])
    assert places(image, [site("roomy", free=10, runtime="process")]) == 0
    assert places(image, [able]) == 1
    assert places(image, [able, site("other", free=3)]) == 2  # declares nothing: taken at its word
    assert places(cfg(site="other"), [able, site("other")]) == 1


def test_why_a_task_waits() -> None:
    image = cfg(evaluationContainer="docker://x/eval:1")
    plain = [site("a", runtime="process"), site("b", runtime="bwrap")]
    assert waiting_reason(image, plain) == (
        "no live site can run image docker://x/eval:1 (a: its process runtime runs no "
        "container image; b: its bwrap runtime runs no container image)"
    )
    assert waiting_reason(image, []) == "waiting for a site: no site is alive"
    assert waiting_reason(cfg(site="far"), plain) == (
        "waiting for a site: the task may run only at far, none alive"
    )
    assert waiting_reason(cfg(architecture="ppc64le"), plain) == (
        "no live site can run this task's jobs (a: the task needs ppc64le, the site is amd64; "
        "b: the task needs ppc64le, the site is amd64)"
    )
