"""Multi-arch image resolution and SIF cache keys (pure functions)."""

from __future__ import annotations

import pytest

from shared.runtime.images import (
    ARCHES,
    ImageResolutionError,
    image_arches,
    image_scheme,
    is_pull_reference,
    normalise_arch,
    pinned_digest,
    resolve_image,
    sif_cache_name,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4
MULTI = {
    "amd64": "docker://reg.example.org/eval:1-amd64",
    "ppc64le": "docker://reg.example.org/eval:1-ppc64le",
}


@pytest.mark.parametrize(
    ("reference", "scheme", "pull"),
    [
        ("docker://reg.example.org/eval:mlflow", "docker", True),
        ("oras://ghcr.io/x/eval:1", "oras", True),
        ("library://alice/default/eval", "library", True),
        ("Docker://x/y", "docker", True),
        ("https://example.org/eval.sif", "https", True),
        ("/gpfs/sif/eval.sif", None, False),
        ("instance://running", "instance", False),
        ("eval.sif", None, False),
    ],
)
def test_schemes(reference: str, scheme: str | None, pull: bool) -> None:
    assert image_scheme(reference) == scheme
    assert is_pull_reference(reference) is pull


def test_one_reference_serves_every_arch() -> None:
    ref = "docker://reg.example.org/eval:mlflow"
    for arch in ARCHES:
        assert resolve_image(ref, arch) == ref
    assert image_arches(ref) == frozenset(ARCHES)
    assert image_arches(None) == frozenset(ARCHES)
    assert resolve_image(None, "ppc64le") is None


def test_a_map_picks_the_sites_arch() -> None:
    assert resolve_image(MULTI, "ppc64le") == MULTI["ppc64le"]
    assert resolve_image(MULTI, "x86_64") == MULTI["amd64"]
    assert image_arches(MULTI) == {"amd64", "ppc64le"}


def test_a_map_without_the_sites_arch_is_a_clear_error() -> None:
    with pytest.raises(
        ImageResolutionError, match=r"no image for arm64 \(it has: amd64, ppc64le\)"
    ):
        resolve_image(MULTI, "arm64")


def test_arch_aliases_in_map_keys() -> None:
    spec = {"x86_64": "a.sif", "aarch64": "b.sif", "power9": "c.sif"}
    assert image_arches(spec) == frozenset(ARCHES)
    assert resolve_image(spec, "arm64") == "b.sif"
    assert normalise_arch("PPC64EL") == "ppc64le"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({}, "empty map"),
        ({"sparc": "x"}, "unknown architecture 'sparc'"),
        ({"amd64": "a", "x86_64": "b"}, "names amd64 twice"),
        ({"amd64": " "}, "not an image reference"),
        ("  ", "empty"),
    ],
)
def test_malformed_specs(spec: str | dict[str, str], words: str) -> None:
    with pytest.raises(ImageResolutionError, match=words):
        resolve_image(spec, "amd64")


def test_unknown_site_arch() -> None:
    with pytest.raises(ImageResolutionError, match="unknown architecture"):
        resolve_image("x", "riscv64")


def test_pinned_digest() -> None:
    assert pinned_digest(f"docker://reg.example.org/eval@{DIGEST}") == DIGEST
    assert pinned_digest("docker://reg.example.org/eval:1") is None
    assert pinned_digest("docker://reg.example.org/eval@sha256:abc") is None


def test_sif_cache_name_is_keyed_by_digest_and_arch() -> None:
    name = sif_cache_name(DIGEST, "amd64")
    assert name == f"sha256-{DIGEST[7:]}.amd64.sif"
    assert sif_cache_name(DIGEST, "x86_64") == name
    assert sif_cache_name(DIGEST, "ppc64le") != name
    assert "/" not in name and ":" not in name


@pytest.mark.parametrize(
    "digest", ["sha256:abc", "md5:" + "0" * 32, "../../etc/passwd", DIGEST.upper()]
)
def test_sif_cache_name_refuses_what_is_not_a_digest(digest: str) -> None:
    with pytest.raises(ImageResolutionError, match="not an image digest"):
        sif_cache_name(digest, "amd64")
