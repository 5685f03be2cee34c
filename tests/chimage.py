"""The Debian images the charliecloud tests run payloads in (built by deploy/dev/images.py).

The images are built once, outside the repository, by ``deploy/dev/images.py build``
(deploy/dev/test.sh does it before the tests); a test that needs one and finds none, or
finds no ``ch-run``, fails saying how to get it. It never skips.
"""

from __future__ import annotations

import importlib.util
import shutil
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL_CHARLIECLOUD = "install Charliecloud: apt-get install -y charliecloud-runtime"


@cache
def _images_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_images", REPO / "deploy/dev/images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def image_dir(arch: str = "amd64") -> Path:
    """The image directory of ``arch``, failing the test when it is not built."""
    if shutil.which("ch-run") is None:
        pytest.fail(f"ch-run is not on PATH; {INSTALL_CHARLIECLOUD}", pytrace=False)
    path: Path = _images_module().image_path(arch)
    if not (path / "srv" / "workDir").is_dir():
        pytest.fail(
            f"the {arch} test image {path} is not built: run "
            f"`sudo python3 deploy/dev/images.py build --arch {arch}` once "
            "(deploy/dev/test.sh builds the amd64 one)",
            pytrace=False,
        )
    if arch != "amd64":
        entry = Path(f"/proc/sys/fs/binfmt_misc/qemu-{arch}")
        if not entry.exists() or not entry.read_text().startswith("enabled"):
            pytest.fail(
                f"the kernel cannot run {arch} binaries (no enabled {entry}): run "
                f"`sudo python3 deploy/dev/images.py build --arch {arch}`, which registers "
                "qemu-user-static with binfmt_misc (deploy/dev/test.sh does it)",
                pytrace=False,
            )
    return path
