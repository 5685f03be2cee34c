"""The ``charliecloud`` runtime: the payload runs in a read-only image directory with ``ch-run``.

Charliecloud (``ch-run``) needs no daemon, no setuid helper and no root: it enters an
image directory through an unprivileged user namespace, which makes it the container
runtime of many HPC centres that offer neither Apptainer nor Docker. The payload is
started as::

    setpriv --pdeathsig KILL -- unshare [--user --map-current-user] --pid --fork
        --mount --mount-proc --kill-child [--net] --
    ch-run [--uid 65534 --gid 65534] --private-tmp --bind WORKDIR:/srv/workDir
        --cd /srv/workDir [--unset-env=USER] [extra args] IMAGE -- /bin/sh -c EXEC

What it isolates: the image is mounted read-only (never ``--write``); of the host the
payload sees only its working directory at ``/srv/workDir`` and the kernel's ``/dev``,
``/sys``, ``/etc/hosts`` and ``/etc/resolv.conf``, which ch-run always binds; ``/tmp`` is
a private, empty tmpfs. ``unshare`` gives it its own PID namespace with its own
``/proc``, so the agent and the rest of the node are invisible, and dying with its
parent: ``setpriv`` has the kernel kill ``unshare`` when the agent dies, and
``--kill-child`` then takes the whole namespace with it, so even a payload whose agent
was killed with SIGKILL leaves nothing behind. When the agent runs as root, the payload
runs as ``root_uid``:``root_gid`` (nobody) inside, without capabilities, because root in
ch-run's user namespace would keep every capability there.

What it does not isolate: the network (the host's, as with Apptainer; compute nodes are
offline, ``isolate_network`` on the site unshares the agent's, and ``isolate_network``
here gives the payload a namespace of its own with only a loopback), host devices
(``/dev`` is the host's; ``CUDA_VISIBLE_DEVICES`` selects the payload's GPUs), CPU and
memory limits (the batch system's job). The payload is the first process of its PID
namespace, so a SIGTERM reaches it only if it installed a handler (its children get it
as usual); SIGKILL follows after the grace period in any case.

**Environment.** ch-run hands its own environment to the payload, so the node agent
starts it with exactly the payload's variables (:attr:`Launch.env`, nothing inherited):
``PATH`` (the image's usual one, or ``path``), ``HOME`` and ``PWD`` = ``/srv/workDir``,
``LANG``, the ``pass_env`` variables, the job's variables and, when GPUs are assigned,
``CUDA_VISIBLE_DEVICES``; ch-run adds ``CH_RUNNING`` and nothing else. The values never
appear on a command line. ch-run refuses to start without ``USER``; unless the job sets
one, the runtime gives ch-run the agent's and has it removed again (``--unset-env``).

**Images.** An image is the absolute path of an image *directory* on the shared
filesystem (``ch-convert`` writes one from any Docker or OCI image; ``debootstrap``
does too), with an empty ``/srv/workDir`` in it: ch-run binds only onto directories
that exist in a read-only image (``mkdir -p IMAGE/srv/workDir`` once adds it). A
SquashFS archive (``.sqfs``) is handed to ch-run as is, which mounts it only when built
with libsquashfuse (Debian's 0.31 is not: ``ch-run --feature=squash`` tells). Registry
references are refused: compute nodes never pull, and the harvester does not pull for
this runtime. NVIDIA driver libraries must be in the image (``ch-fromhost --nvidia``).

Needs on the compute nodes: Charliecloud >= 0.31 (Debian/Ubuntu ``apt-get install
charliecloud-runtime``), util-linux >= 2.38 (``setpriv``, ``unshare
--map-current-user``) and unprivileged user namespaces, which ch-run needs anyway.
Tested for real: the runtime contract suite runs payloads in a Debian image built with
debootstrap, and a whole task runs through it on the test Slurm.

Site config::

    [runtime]
    kind = "charliecloud"
    default_image = "/gpfs/images/pytorch"    # used when a task names no image
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.runtime.images import image_scheme, is_pull_reference
from shared.runtime.port import Launch, RuntimeUnsupportedError

WORKDIR = "/srv/workDir"
SHELL = "/bin/sh"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""``PATH`` inside the image unless the site sets ``path``: the node's would name host
directories that do not exist in the image."""
NOBODY = 65534


class CharliecloudRuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["charliecloud"] = "charliecloud"
    executable: str = "ch-run"
    """Name (looked up in the agent's ``PATH``) or absolute path of ch-run."""
    unshare: str = "unshare"
    setpriv: str = "setpriv"
    extra_args: list[str] = []
    """Added after the runtime's own ch-run options, before the image."""
    default_image: str | None = None
    """Absolute path of the image directory used when the job names none; None refuses
    such jobs."""
    path: str | None = None
    """``PATH`` inside the container; None: the usual Debian/RHEL one."""
    lang: str = "C.UTF-8"
    pass_env: list[str] = []
    """Node variables passed into the container unchanged (e.g. ``NCCL_SOCKET_IFNAME``)."""
    isolate_network: bool = False
    """Give the payload a network namespace of its own (only a loopback). Off by default:
    ranks of the multi-node layouts talk over the network."""
    root_uid: int = Field(default=NOBODY, ge=1)
    root_gid: int = Field(default=NOBODY, ge=1)
    """Who the payload is inside the container when the agent runs as root."""

    @field_validator("extra_args")
    @classmethod
    def _read_only_image(cls, value: list[str]) -> list[str]:
        for arg in value:
            if arg in ("-w", "--write") or arg.startswith(("-b", "--bind", "--home")):
                raise ValueError(
                    f"extra_args {arg!r} is not allowed: payload images run read-only with "
                    "only their working directory bound"
                )
        return value

    @field_validator("default_image")
    @classmethod
    def _local_default_image(cls, value: str | None) -> str | None:
        if value is not None and (image_scheme(value) is not None or not value.startswith("/")):
            raise ValueError("default_image must be the absolute path of an image directory")
        return value


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


class CharliecloudRuntime:
    kind = "charliecloud"
    runs_images = True

    def __init__(
        self,
        config: CharliecloudRuntimeConfig,
        environ: Mapping[str, str] | None = None,
        *,
        euid: Callable[[], int] = os.geteuid,
        is_dir: Callable[[str], bool] = os.path.isdir,
    ) -> None:
        self._config = config
        self._environ = os.environ if environ is None else environ
        self._euid = euid
        self._is_dir = is_dir

    def _image(self, image: str | None) -> str:
        chosen = image or self._config.default_image
        if not chosen:
            raise RuntimeUnsupportedError(
                "this site runs payloads in containers (runtime 'charliecloud') but the task "
                "names no evaluationContainer and the site sets no runtime.default_image"
            )
        if is_pull_reference(chosen):
            raise RuntimeUnsupportedError(
                f"image {chosen!r} is a registry reference, and compute nodes never pull: "
                "this site runs Charliecloud image directories on its shared filesystem; "
                "name one of those (an absolute path) in evaluationContainer"
            )
        if image_scheme(chosen) is not None or not chosen.startswith("/"):
            raise RuntimeUnsupportedError(
                f"image {chosen!r} is not usable on a compute node: runtime 'charliecloud' "
                "takes the absolute path of an image directory (or SquashFS archive)"
            )
        if self._is_dir(chosen) and not self._is_dir(os.path.join(chosen, WORKDIR[1:])):
            raise RuntimeUnsupportedError(
                f"image {chosen!r} has no {WORKDIR} directory, where the working directory "
                f"is bound (ch-run cannot create it in a read-only image): the site admin "
                f"adds it once with `mkdir -p {chosen}{WORKDIR}`"
            )
        return chosen

    def _env(
        self, env: Mapping[str, str], gpus: Sequence[str] | None
    ) -> tuple[dict[str, str], bool]:
        """The payload's variables, and whether ``USER`` was added for ch-run alone."""
        values = {
            "PATH": self._config.path or IMAGE_PATH,
            "HOME": WORKDIR,
            "LANG": self._config.lang,
        }
        for name in self._config.pass_env:
            if name in self._environ:
                values[name] = self._environ[name]
        values.update(env)
        if gpus is not None:
            values["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        values["PWD"] = WORKDIR
        added_user = "USER" not in values
        if added_user:
            values["USER"] = _user_name()
        return values, added_user

    def prepare(
        self,
        exec_: str,
        workdir: Path,
        env: Mapping[str, str],
        image: str | None,
        gpus: Sequence[str] | None,
    ) -> Launch:
        chosen = self._image(image)
        workdir = workdir.resolve()
        if ":" in str(workdir):
            raise RuntimeUnsupportedError(
                f"working directory {workdir} cannot be bound by ch-run (it contains ':'); "
                "move the site's edge root"
            )
        config = self._config
        root = self._euid() == 0
        argv = [config.setpriv, "--pdeathsig", "KILL", "--", config.unshare]
        if not root:
            argv += ["--user", "--map-current-user"]
        argv += ["--pid", "--fork", "--mount", "--mount-proc", "--kill-child"]
        if config.isolate_network:
            argv.append("--net")
        argv += ["--", config.executable]
        if root:
            argv += ["--uid", str(config.root_uid), "--gid", str(config.root_gid)]
        argv += ["--private-tmp", "--bind", f"{workdir}:{WORKDIR}", "--cd", WORKDIR]
        child_env, added_user = self._env(env, gpus)
        if added_user:
            argv.append("--unset-env=USER")
        argv += [*config.extra_args, chosen, "--", SHELL, "-c", exec_]
        return Launch(argv=argv, env=child_env, cwd=workdir)


__all__ = ["CharliecloudRuntime", "CharliecloudRuntimeConfig"]
