"""The ``bwrap`` runtime: the payload runs on the host's software in a bubblewrap sandbox.

For sites (and the embedded default) without apptainer that still want the evaluation
container's rules: a read-only system with one writable working directory at
``/srv/workDir``, no network. The payload is started as::

    bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --tmpfs /dev/shm
          [--dev-bind-try DEV DEV ...]            # GPU devices, when GPUs are assigned
          [--tmpfs HIDDEN --remount-ro HIDDEN ...] # e.g. /home, /root
          --tmpfs /srv --bind WORKDIR /srv/workDir --remount-ro /srv --chdir /srv/workDir
          --unshare-net --unshare-pid --unshare-ipc --die-with-parent --new-session
          --cap-drop ALL [extra args] -- [setpriv ... unshare --user ...] [prlimit ...]
          /bin/sh -c EXEC

What it isolates: the whole host filesystem is read-only; ``/tmp`` and ``/dev/shm`` are
private, empty and thrown away at the end; the ``hide`` paths (by default the home
directories, where the site token and users' keys live, and ``/run/user`` with its agent
sockets) are covered by empty read-only directories; the only host directory the payload
can write is its working directory. It has no network (its own namespace with only a
loopback), its own PID and IPC namespaces, no capabilities even when the agent runs as
root, and a new session, so it cannot inject input into the agent's terminal. ``HOME``
and ``PWD`` are ``/srv/workDir``.

What it does not isolate: everything else of the host stays *readable* (add the edge
root or scratch areas to ``hide`` to cover them); Unix sockets in visible directories
(``/run``, ``/var/run``) remain reachable, because sockets ignore network namespaces.
On compute nodes CPU, memory and GPU limits are the batch system's job. It runs no
image: a job naming one is refused unless ``ignore_image`` is set, as with the
``process`` runtime.

**Limits and an unprivileged user** (what the steering service sets; optional for
sites). ``limits`` puts ``prlimit`` (see :mod:`shared.runtime.limits`) in front of the
shell. ``run_as = "UID:GID"`` matters when the caller is root: root is exempt from the
process limit and reads every file whatever its mode, so the sandbox is set up as root
and then ``setpriv`` drops to UID:GID with no supplementary groups, no capabilities
and ``no_new_privs``, and ``unshare --user`` gives the program a user namespace of its
own, so that the kernel counts the process limit per sandbox rather than over every
process of UID. ``prepare`` hands the working directory (and the files in it) to
UID:GID and the private ``/tmp`` is world-writable. A caller that is not root needs
none of this: bwrap itself then runs in a new user namespace as the caller.

**Environment without ``--clearenv``.** The node agent starts ``bwrap`` with exactly
:attr:`Launch.env` and nothing inherited, and bwrap hands that environment to the
payload unchanged. That gives the same result as ``--clearenv`` followed by one
``--setenv`` per variable, without putting the job's values on the command line where
every user of the node can read them (``/proc/<pid>/cmdline``). The payload sees
``PATH`` (the node's, or ``path``), ``HOME`` and ``PWD`` = ``/srv/workDir``, ``LANG``,
the ``pass_env`` variables, the job's variables and, when GPUs are assigned,
``CUDA_VISIBLE_DEVICES``. (A set-uid ``bwrap``, found on some old distributions, would
have the C library drop ``LD_LIBRARY_PATH``/``TMPDIR``-like variables on the way.)

**Stopping.** bwrap does not forward signals: when the agent stops a payload, SIGTERM
ends bwrap and ``--die-with-parent`` kills the whole sandbox at once, so a payload gets
no grace period to save a checkpoint (periodic checkpoints are unaffected). Apptainer's
starter, by contrast, forwards SIGTERM to the payload.

bubblewrap must be installed on the nodes (Debian/Ubuntu ``apt-get install
bubblewrap``) and unprivileged user namespaces allowed, unless the agent runs as root.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from shared.runtime.limits import ResourceLimits
from shared.runtime.port import Launch, host_runtime_image_notes

WORKDIR = "/srv/workDir"
SHELL = "/bin/sh"
PRIVATE_TMP = ("/tmp", "/dev/shm")  # noqa: S108 - empty tmpfs mounts inside the sandbox
MANAGED = ("/proc", "/dev", "/srv", *PRIVATE_TMP)
"""Mount points the runtime sets up itself; ``hide`` cannot name them or their parents."""

NVIDIA_DEVICES = [
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
    "/dev/nvidia-caps",
    *(f"/dev/nvidia{index}" for index in range(16)),
]
AMD_DEVICES = ["/dev/kfd", "/dev/dri"]
SETUP_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
"""Kept in the sandbox only for ``setpriv``, which drops them before the program runs."""


class BwrapRuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["bwrap"] = "bwrap"
    executable: str = "bwrap"
    """Name (looked up in the payload's ``PATH``) or absolute path of bubblewrap."""
    extra_args: list[str] = []
    """Added after the runtime's own options (e.g. ``["--ro-bind", "/data", "/data"]``)."""
    path: str | None = None
    """``PATH`` for the payload; None means the node agent's own ``PATH``."""
    lang: str = "C.UTF-8"
    pass_env: list[str] = []
    """Names of node variables passed through unchanged (e.g. ``LD_LIBRARY_PATH``)."""
    ignore_image: bool = False
    """Run jobs that name a container image on the host's software instead of refusing."""
    hide: list[str] = ["/home", "/root", "/run/user"]
    """Host directories covered by an empty read-only directory (missing ones skipped)."""
    gpu_devices: list[str] = [*NVIDIA_DEVICES, *AMD_DEVICES]
    """Device nodes bound (``--dev-bind-try``: absent ones skipped) when GPUs are assigned
    to the payload; with none assigned the sandbox's minimal ``/dev`` has no GPU."""
    limits: ResourceLimits = ResourceLimits()
    """CPU time, memory, processes and file size of the payload; none by default."""
    run_as: str | None = None
    """``UID:GID`` the payload runs as when the caller is root (ignored otherwise)."""

    @field_validator("run_as")
    @classmethod
    def _unprivileged(cls, value: str | None) -> str | None:
        if value is None:
            return None
        uid, sep, gid = value.partition(":")
        if not (sep and uid.isdigit() and gid.isdigit()) or int(uid) == 0 or int(gid) == 0:
            raise ValueError(f"run_as {value!r} must be UID:GID of an unprivileged user")
        return value

    @field_validator("hide")
    @classmethod
    def _hideable(cls, value: list[str]) -> list[str]:
        for entry in value:
            path = PurePosixPath(entry)
            if not path.is_absolute() or ".." in path.parts or path == PurePosixPath("/"):
                raise ValueError(f"hide entry {entry!r} must be an absolute path below /")
            if str(path) != entry:
                raise ValueError(f"hide entry {entry!r} must be written {str(path)!r}")
            for managed in map(PurePosixPath, MANAGED):
                if path == managed or managed in path.parents or path in managed.parents:
                    raise ValueError(f"hide entry {entry!r} clashes with the sandbox's {managed}")
        return value

    @field_validator("gpu_devices")
    @classmethod
    def _devices(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not entry.startswith("/dev/"):
                raise ValueError(f"gpu device {entry!r} must be under /dev/")
        return value


class BwrapRuntime:
    kind = "bwrap"
    runs_images = False

    def __init__(
        self,
        config: BwrapRuntimeConfig,
        environ: Mapping[str, str] | None = None,
        is_dir: Callable[[str], bool] = os.path.isdir,
        euid: Callable[[], int] = os.geteuid,
    ) -> None:
        self._config = config
        self._environ = os.environ if environ is None else environ
        self._is_dir = is_dir
        """Which ``hide`` paths exist: bwrap cannot create a mount point on a read-only root."""
        self._euid = euid

    def _drop_to(self) -> tuple[int, int] | None:
        if self._config.run_as is None or self._euid() != 0:
            return None
        uid, _, gid = self._config.run_as.partition(":")
        return int(uid), int(gid)

    def _env(self, env: Mapping[str, str], gpus: Sequence[str] | None) -> dict[str, str]:
        child_env = {
            "PATH": self._config.path or self._environ.get("PATH", os.defpath),
            "HOME": WORKDIR,
            "LANG": self._config.lang,
        }
        for name in self._config.pass_env:
            if name in self._environ:
                child_env[name] = self._environ[name]
        child_env.update(env)
        if gpus is not None:
            child_env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        child_env["PWD"] = WORKDIR
        return child_env

    def prepare(
        self,
        exec_: str,
        workdir: Path,
        env: Mapping[str, str],
        image: str | None,
        gpus: Sequence[str] | None,
    ) -> Launch:
        notes = host_runtime_image_notes("bwrap", image, ignore_image=self._config.ignore_image)
        workdir = workdir.resolve()
        config = self._config
        drop = self._drop_to()
        argv = [config.executable, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for private in PRIVATE_TMP:
            argv += (["--perms", "1777"] if drop else []) + ["--tmpfs", private]
        if gpus:
            for device in config.gpu_devices:
                argv += ["--dev-bind-try", device, device]
        for hidden in config.hide:
            if self._is_dir(hidden):
                argv += ["--tmpfs", hidden, "--remount-ro", hidden]
        argv += ["--tmpfs", "/srv", "--bind", str(workdir), WORKDIR, "--remount-ro", "/srv"]
        argv += ["--chdir", WORKDIR, "--unshare-net", "--unshare-pid", "--unshare-ipc"]
        argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        inner: list[str] = []
        if drop is not None:
            _hand_over(workdir, *drop)
            for cap in SETUP_CAPS:
                argv += ["--cap-add", cap]
            inner += [
                "setpriv",
                f"--reuid={drop[0]}",
                f"--regid={drop[1]}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
                "unshare",
                "--user",
                "--map-current-user",
                "--",
            ]
        elif self._euid() != 0 and not config.limits.empty:
            argv.append("--unshare-user")  # implied when not root; the limits rely on it
        elif config.limits.processes is not None:
            notes.append("the process limit does not bind root: set run_as")
        inner += config.limits.argv()
        if not config.limits.empty:
            notes.append(f"limits: {config.limits.describe()}")
        argv += [*config.extra_args, "--", *inner, SHELL, "-c", exec_]
        return Launch(argv=argv, env=self._env(env, gpus), cwd=workdir, notes=notes)


def _hand_over(workdir: Path, uid: int, gid: int) -> None:
    """Make the working directory and what was staged in it the payload user's.

    Others get search permission only: bwrap enters the directory as root without
    capabilities, before ``setpriv`` drops to the payload's user.
    """
    os.chown(workdir, uid, gid)
    workdir.chmod(0o711)
    for entry in workdir.iterdir():
        os.chown(entry, uid, gid, follow_symlinks=False)


__all__ = ["BwrapRuntime", "BwrapRuntimeConfig"]
