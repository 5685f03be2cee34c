"""What a site can run: declared by its harvester from its runtime, checked by the broker.

A site's runtime decides which jobs can run there at all: ``process`` and ``bwrap``
run the exec on the host's software and refuse a job that names an image (unless the
site admin set ``ignore_image``); ``apptainer`` and ``singularity`` run a local image
file, and a registry reference once the harvester has pulled it on the login node;
``charliecloud`` runs local image directories only, and a job naming no image only
when the site set a ``default_image``.
Sending a job where it cannot run only burns its attempts with the same failure, so
the harvester declares this in every heartbeat and the broker never assigns such a
job there; a task no live site can run waits, saying why.

Pure functions, no I/O.
"""

from __future__ import annotations

from shared.edge_api import SiteCapabilities
from shared.runtime import (
    BwrapRuntimeConfig,
    CharliecloudRuntimeConfig,
    ProcessRuntimeConfig,
    RuntimeConfig,
)
from shared.runtime.images import PULL_SCHEMES, image_scheme
from shared.runtime.sif import SifRuntimeConfig

LOCAL_IMAGE = "path"
"""The scheme name of an image given as a path on the site (no ``scheme://``)."""


def declared(runtime: RuntimeConfig) -> SiteCapabilities:
    """What a harvester with this ``[runtime]`` can run."""
    if isinstance(runtime, ProcessRuntimeConfig | BwrapRuntimeConfig):
        return SiteCapabilities(runtime=runtime.kind, ignores_images=runtime.ignore_image)
    if isinstance(runtime, SifRuntimeConfig):
        # local SIF files, and registry references the harvester pulls into its SIF
        # cache before the job is released
        return SiteCapabilities(runtime=runtime.kind, image_schemes=[LOCAL_IMAGE, *PULL_SCHEMES])
    if isinstance(runtime, CharliecloudRuntimeConfig):
        return SiteCapabilities(
            runtime=runtime.kind,
            image_schemes=[LOCAL_IMAGE],
            needs_image=runtime.default_image is None,
        )
    return SiteCapabilities(runtime=runtime.kind, image_schemes=[LOCAL_IMAGE])


def image_kind(reference: str) -> str:
    """The scheme a reference is matched on: ``docker`` for ``docker://x``, ``path`` for
    a plain path."""
    return image_scheme(reference) or LOCAL_IMAGE


def cannot_run(capabilities: SiteCapabilities, image: str | None) -> str | None:
    """Why a site with ``capabilities`` cannot run a job with ``image`` (the reference
    already resolved for the site's arch); None when it can."""
    if image is None:
        if capabilities.needs_image:
            return (
                f"its {capabilities.runtime} runtime runs only jobs that name an image "
                "(evaluationContainer), and the site has no default image"
            )
        return None
    if capabilities.ignores_images:
        return None
    if not capabilities.image_schemes:
        return f"its {capabilities.runtime} runtime runs no container image"
    kind = image_kind(image)
    if kind in capabilities.image_schemes:
        return None
    accepted = ", ".join(
        "local image files" if s == LOCAL_IMAGE else f"{s}:// images"
        for s in capabilities.image_schemes
    )
    return f"its {capabilities.runtime} runtime runs only {accepted}"
