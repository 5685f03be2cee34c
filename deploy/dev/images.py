#!/usr/bin/env python3
"""Container images for the tests of the ``charliecloud`` runtime, built here from Debian.

    sudo python3 deploy/dev/images.py build [--arch amd64|ppc64le] [--cache DIR]
    python3 deploy/dev/images.py path [--arch ARCH] [--cache DIR]   # prints the image dir

An image is a Debian bookworm ``debootstrap --variant=minbase`` with python3, plus the
empty ``/srv/workDir`` that ch-run binds the working directory onto. It is built once
into a cache directory outside the repository (``$HPO_TEST_IMAGE_CACHE``, default
``/var/tmp/hpo-relay-images``) and reused by every later run: ``build`` does nothing
when the image is already there. It is written under a temporary name and renamed, so a
build cut short leaves no half image behind.

``--arch ppc64le`` builds the same image for POWER (Debian's ``ppc64el``), whose second
debootstrap stage runs under ``qemu-user-static``; that needs binfmt_misc, which
``build`` mounts and enables (``update-binfmts --enable qemu-ppc64le``) when missing,
also when the image is already built (the registration does not survive a reboot). The
registration has the F flag, so the kernel opens qemu once and runs POWER binaries with
it inside containers too.

Needs root and Debian's packages debootstrap (and qemu-user-static, binfmt-support for
ppc64le), installed with apt-get when missing; the mirror is the machine's own apt
source. deploy/dev/test.sh builds the amd64 image before the tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_CACHE = Path("/var/tmp/hpo-relay-images")  # noqa: S108 - a cache kept between runs
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_ARCH = {"amd64": "amd64", "ppc64le": "ppc64el"}
PACKAGES = {
    "amd64": ["debootstrap"],
    "ppc64le": ["debootstrap", "qemu-user-static", "binfmt-support"],
}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


class ImageUnavailable(Exception):
    """The image cannot be built here; the message says why and what to do."""


def log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def cache_dir(explicit: Path | None = None) -> Path:
    return explicit or Path(os.environ.get("HPO_TEST_IMAGE_CACHE") or DEFAULT_CACHE)


def image_path(arch: str, cache: Path | None = None) -> Path:
    """Where the image of ``arch`` is (or will be) in the cache."""
    return cache_dir(cache) / f"debian-{SUITE}-python3.{arch}"


def mirror() -> str:
    """The first Debian mirror of the machine's apt sources, else deb.debian.org."""
    for source in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        try:
            text = source.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if (
                line.startswith("URIs:")
                and len(words) > 1
                and words[1].rstrip("/").endswith("/debian")
            ):
                return words[1]
            if words[:1] == ["deb"] and any(w.rstrip("/").endswith("/debian") for w in words):
                return next(w for w in words if w.rstrip("/").endswith("/debian"))
    return DEFAULT_MIRROR


def run(argv: list[str], **kwargs: object) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": SBIN_PATH}
    result = subprocess.run(argv, env=env, stdout=sys.stderr, check=False, **kwargs)  # type: ignore[call-overload]  # noqa: S603
    if result.returncode:
        raise ImageUnavailable(f"`{' '.join(argv)}` failed (exit {result.returncode}); see above")


def ensure_packages(arch: str) -> None:
    tools = {"debootstrap": "debootstrap", "qemu-user-static": "qemu-ppc64le-static"}
    missing = [
        p for p in PACKAGES[arch] if p in tools and not shutil.which(tools[p], path=SBIN_PATH)
    ]
    if arch == "ppc64le" and not shutil.which("update-binfmts", path=SBIN_PATH):
        missing.append("binfmt-support")
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise ImageUnavailable(f"{', '.join(missing)} missing and no apt-get to install them")
    log(f"installing {' '.join(missing)} with apt-get")
    run(["apt-get", "update", "-q"])
    run(["apt-get", "install", "-y", "-q", *missing])


def ensure_binfmt() -> None:
    """Have the kernel run ppc64le binaries through qemu (the F flag: in containers too)."""
    if not (BINFMT / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    entry = BINFMT / "qemu-ppc64le"
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        run(["update-binfmts", "--enable", "qemu-ppc64le"])
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        raise ImageUnavailable(f"binfmt_misc has no enabled {entry} after update-binfmts")


def build(arch: str, cache: Path | None = None) -> Path:
    """Build the image of ``arch`` unless the cache has it; return its directory."""
    target = image_path(arch, cache)
    if (target / "srv" / "workDir").is_dir():
        if arch != "amd64" and os.geteuid() == 0:
            ensure_binfmt()  # lost at every reboot, unlike the image
        return target
    if os.geteuid() != 0:
        raise ImageUnavailable(
            f"{target} is missing and debootstrap needs root: "
            f"sudo python3 deploy/dev/images.py build --arch {arch}"
        )
    ensure_packages(arch)
    if arch != "amd64":
        ensure_binfmt()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    log(f"building {target} with debootstrap (a minute for amd64, several under emulation)")
    run(
        [
            "debootstrap",
            f"--arch={DEBIAN_ARCH[arch]}",
            "--variant=minbase",
            "--include=python3",
            SUITE,
            str(partial),
            mirror(),
        ]
    )
    for cleanup in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (partial / cleanup).glob("*"):
            if entry.is_file():
                entry.unlink()
    (partial / "srv" / "workDir").mkdir(parents=True, exist_ok=True)
    partial.chmod(0o755)
    partial.rename(target)
    log(f"built {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "path"])
    parser.add_argument("--arch", choices=sorted(DEBIAN_ARCH), default="amd64")
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "path":
        print(image_path(args.arch, args.cache))
        return 0
    try:
        print(build(args.arch, args.cache))
    except ImageUnavailable as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
