"""Matching jobs to sites and their compute classes, as pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shared.capabilities import cannot_run
from shared.domain.models import Site
from shared.domain.resources import class_refusal, describe_needs
from shared.domain.taskconfig import TaskConfig
from shared.runtime.images import image_arches, resolve_image

Choice = tuple[Site, str | None]
"""A site and the compute class of it (None for a site that declares none)."""
RunTimes = Mapping[tuple[str, str], float]
"""(site, class) -> mean observed run time of the task's jobs there, in seconds."""


def refusal(config: TaskConfig, site: Site) -> str | None:
    """Why ``site`` cannot run the task's jobs (for the user); None when it can: the
    site itself (:func:`site_refusal`) and at least one of its compute classes."""
    return site_refusal(config, site) or resources_refusal(config, site)


def resources_refusal(config: TaskConfig, site: Site) -> str | None:
    """Why none of the site's compute classes satisfies the task's ``resources``."""
    if not config.resources.asks_anything:
        return None
    if not site.compute_classes:
        return "it declares no compute classes"
    why = [(c.name, class_refusal(config.resources, c)) for c in site.compute_classes]
    if any(reason is None for _, reason in why):
        return None
    return "; ".join(f"class {name}: {reason}" for name, reason in why)


def fitting_classes(config: TaskConfig, site: Site) -> list[str | None]:
    """The site's classes that can run the task's jobs ([None]: a site without classes,
    for a task that asks for nothing)."""
    if not site.compute_classes:
        return [] if config.resources.asks_anything else [None]
    return [c.name for c in site.compute_classes if class_refusal(config.resources, c) is None]


def site_refusal(config: TaskConfig, site: Site) -> str | None:
    """Why ``site`` cannot run the task's jobs (for the user); None when it can.

    It must be a site the task allows (``site``, one or a comma-separated list), of the
    architecture it asks for, have an image of the task for its arch, and declare it
    can run that image (a site that declares nothing is taken at its word).
    """
    if config.sites and site.id not in config.sites:
        return f"the task may run only at {', '.join(config.sites)}"
    if config.architecture and config.architecture != site.arch:
        return f"the task needs {config.architecture}, the site is {site.arch}"
    if site.arch not in image_arches(config.evaluationContainer):
        return f"evaluationContainer has no image for {site.arch}"
    if site.capabilities is None:
        return None
    return cannot_run(site.capabilities, resolve_image(config.evaluationContainer, site.arch))


def places(config: TaskConfig, sites: Sequence[Site]) -> int:
    """How many (site, class) places among ``sites`` could take the task's jobs, full or
    not: with one or none, there is nothing for run times to choose between."""
    return sum(len(fitting_classes(config, s)) for s in sites if site_refusal(config, s) is None)


def eligible(config: TaskConfig, site: Site) -> bool:
    return refusal(config, site) is None


def choose_site(config: TaskConfig, sites: list[Site], assigned: dict[str, int]) -> Site | None:
    """The site :func:`choose` picks, before any run time was observed."""
    choice = choose(config, sites, assigned)
    return None if choice is None else choice[0]


def choose(
    config: TaskConfig,
    sites: list[Site],
    assigned: dict[str, int],
    run_times: RunTimes | None = None,
) -> Choice | None:
    """The site and class for the task's next job, among those with free slots not yet
    promised to assigned jobs: a class the task's jobs never finished on first (so every
    class is tried), else the one that finished them fastest; ties go to the most room."""
    times = run_times or {}
    best: Choice | None = None
    best_rank: tuple[int, float, int] | None = None
    for site in sites:
        room = site.free_slots - assigned.get(site.id, 0)
        if room <= 0 or site_refusal(config, site) is not None:
            continue
        for name in fitting_classes(config, site):
            mean = times.get((site.id, name)) if name is not None else None
            rank = (0, 0.0, -room) if mean is None else (1, mean, -room)
            if best_rank is None or rank < best_rank:
                best, best_rank = (site, name), rank
    return best


def waiting_reason(config: TaskConfig, alive: Sequence[Site]) -> str:
    """Why the task's jobs cannot go to any live site; "" when one could take them (it
    may be full for now)."""
    if config.sites and not any(s.id in config.sites for s in alive):
        return f"waiting for a site: the task may run only at {', '.join(config.sites)}, none alive"
    if not alive:
        return "waiting for a site: no site is alive"
    reasons = {site.id: refusal(config, site) for site in alive}
    if any(why is None for why in reasons.values()):
        return ""
    per_site = "; ".join(f"{name}: {why}" for name, why in reasons.items())
    if all(site_refusal(config, s) is None for s in alive):  # only the resources differ
        return f"{describe_needs(config.resources)}; no live site offers them ({per_site})"
    images = {
        resolve_image(config.evaluationContainer, s.arch)
        for s in alive
        if s.arch in image_arches(config.evaluationContainer)
    }
    if len(images) == 1 and None not in images:
        return f"no live site can run image {images.pop()} ({per_site})"
    return f"no live site can run this task's jobs ({per_site})"
