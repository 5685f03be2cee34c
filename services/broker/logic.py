"""Matching jobs to sites, as pure functions."""

from __future__ import annotations

from collections.abc import Sequence

from shared.capabilities import cannot_run
from shared.domain.models import Site
from shared.domain.taskconfig import TaskConfig
from shared.runtime.images import image_arches, resolve_image


def refusal(config: TaskConfig, site: Site) -> str | None:
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


def eligible(config: TaskConfig, site: Site) -> bool:
    return refusal(config, site) is None


def choose_site(config: TaskConfig, sites: list[Site], assigned: dict[str, int]) -> Site | None:
    """The eligible site with the most free slots not yet promised to assigned jobs."""
    best: Site | None = None
    best_room = 0
    for site in sites:
        room = site.free_slots - assigned.get(site.id, 0)
        if room > best_room and eligible(config, site):
            best, best_room = site, room
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
    images = {
        resolve_image(config.evaluationContainer, s.arch)
        for s in alive
        if s.arch in image_arches(config.evaluationContainer)
    }
    if len(images) == 1 and None not in images:
        return f"no live site can run image {images.pop()} ({per_site})"
    return f"no live site can run this task's jobs ({per_site})"
