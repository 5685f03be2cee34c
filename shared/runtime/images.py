"""Container image references: pull references vs local files, multi-arch maps, SIF cache keys.

Pure functions, no I/O. Three places use them:

* the container runtimes, to refuse a registry reference on a compute node (compute
  nodes have no network and never pull);
* the broker, to send a job only where an image exists for the site's arch
  (:func:`image_arches`);
* the harvester, to pick the reference for its arch (:func:`resolve_image`) and to name
  the SIF file it pulls into its cache on the shared filesystem (:func:`sif_cache_name`).

``evaluationContainer`` is either one reference (a multi-arch manifest, or an image for
any arch) or a map ``{"amd64": ref, "ppc64le": ref, "arm64": ref}``. Common aliases of
the arch names (``x86_64``, ``aarch64``, ``ppc64el``, ``power9``) are accepted as keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, get_args

from shared.edge_api import Arch

PULL_SCHEMES: Final = ("docker", "oras", "library", "shub", "ipfs", "http", "https")
"""Schemes whose image must be fetched over the network (by ``apptainer pull``)."""

ARCHES: Final[tuple[Arch, ...]] = get_args(Arch)

_ALIASES: Final[dict[str, Arch]] = {
    "amd64": "amd64",
    "x86_64": "amd64",
    "x86-64": "amd64",
    "arm64": "arm64",
    "aarch64": "arm64",
    "ppc64le": "ppc64le",
    "ppc64el": "ppc64le",
    "power9": "ppc64le",
}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_DIGEST = re.compile(r"^(sha256|sha512):([0-9a-f]{64}|[0-9a-f]{128})$")
_PINNED = re.compile(r"@((?:sha256|sha512):[0-9a-f]+)$")

ImageSpec = str | Mapping[str, str] | Mapping[Arch, str]
"""An ``evaluationContainer`` value: one reference or a map arch -> reference."""


class ImageResolutionError(ValueError):
    """No usable image for the site; the message is meant for the user of the task."""


def image_scheme(reference: str) -> str | None:
    """``docker`` for ``docker://x/y``; None for a plain path."""
    match = _SCHEME.match(reference)
    return match.group(1).lower() if match else None


def is_pull_reference(reference: str) -> bool:
    """True when the image must be fetched from a registry before it can run."""
    return image_scheme(reference) in PULL_SCHEMES


def normalise_arch(name: str) -> Arch:
    """``x86_64`` -> ``amd64`` and so on; ImageResolutionError for an unknown arch."""
    arch = _ALIASES.get(name.strip().lower())
    if arch is None:
        raise ImageResolutionError(
            f"unknown architecture {name!r} in evaluationContainer: use one of {', '.join(ARCHES)}"
        )
    return arch


def _arch_map(spec: Mapping[str, str] | Mapping[Arch, str]) -> dict[Arch, str]:
    if not spec:
        raise ImageResolutionError("evaluationContainer is an empty map: name at least one arch")
    result: dict[Arch, str] = {}
    for key, reference in spec.items():
        arch = normalise_arch(key)
        if arch in result:
            raise ImageResolutionError(f"evaluationContainer names {arch} twice (key {key!r})")
        if not isinstance(reference, str) or not reference.strip():
            raise ImageResolutionError(f"evaluationContainer[{key!r}] is not an image reference")
        result[arch] = reference.strip()
    return result


def image_arches(spec: ImageSpec | None) -> frozenset[Arch]:
    """The arches a job with this image can run on: all of them for a single reference
    (or no image), only the map's keys for a map."""
    if spec is None or isinstance(spec, str):
        return frozenset(ARCHES)
    return frozenset(_arch_map(spec))


def resolve_image(spec: ImageSpec | None, arch: str) -> str | None:
    """The reference to run on a site of ``arch``; None when the task names no image.

    Raises ImageResolutionError when the map has no image for ``arch``, naming the arches
    it does have, or when ``spec`` is malformed.
    """
    site_arch = normalise_arch(arch)
    if spec is None:
        return None
    if isinstance(spec, str):
        if not spec.strip():
            raise ImageResolutionError("evaluationContainer is empty")
        return spec.strip()
    images = _arch_map(spec)
    if site_arch not in images:
        have = ", ".join(sorted(images))
        raise ImageResolutionError(
            f"evaluationContainer has no image for {site_arch} (it has: {have}); add one "
            f"or send the task to a site of another architecture"
        )
    return images[site_arch]


def pinned_digest(reference: str) -> str | None:
    """The digest a reference pins (``docker://x/y@sha256:...``), else None."""
    match = _PINNED.search(reference)
    return match.group(1) if match and _DIGEST.match(match.group(1)) else None


def sif_cache_name(digest: str, arch: str) -> str:
    """File name of the SIF pulled for ``digest`` (``sha256:<hex>``) on ``arch``.

    Keyed by content and arch only: two tags of one image share a file, and a tag moved
    to a new image gets a new one. The name is safe on every shared filesystem.
    """
    match = _DIGEST.match(digest)
    if match is None:
        raise ImageResolutionError(f"{digest!r} is not an image digest like sha256:<64 hex>")
    return f"{match.group(1)}-{match.group(2)}.{normalise_arch(arch)}.sif"


__all__ = [
    "ARCHES",
    "PULL_SCHEMES",
    "ImageResolutionError",
    "ImageSpec",
    "image_arches",
    "image_scheme",
    "is_pull_reference",
    "normalise_arch",
    "pinned_digest",
    "resolve_image",
    "sif_cache_name",
]
