"""Matching jobs to sites, as pure functions."""

from __future__ import annotations

from shared.domain.models import Site
from shared.domain.taskconfig import TaskConfig
from shared.runtime.images import image_arches


def eligible(config: TaskConfig, site: Site) -> bool:
    """A site can run a task's jobs if it is the one asked for and an image fits its arch."""
    if config.site and config.site != site.id:
        return False
    if config.architecture and config.architecture != site.arch:
        return False
    return site.arch in image_arches(config.evaluationContainer)


def choose_site(config: TaskConfig, sites: list[Site], assigned: dict[str, int]) -> Site | None:
    """The eligible site with the most free slots not yet promised to assigned jobs."""
    best: Site | None = None
    best_room = 0
    for site in sites:
        room = site.free_slots - assigned.get(site.id, 0)
        if room > best_room and eligible(config, site):
            best, best_room = site, room
    return best
