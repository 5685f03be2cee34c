"""Resource limits of a sandboxed program, applied by util-linux's ``prlimit``.

A runtime that takes :class:`ResourceLimits` puts ``prlimit --cpu=... --as=... --`` in
front of the program's shell, so the limits hold for the program and everything it
starts (children inherit rlimits). What each one means, and where it does not bite:

* ``cpu_seconds`` (RLIMIT_CPU): CPU time *per process*; at the limit the kernel sends
  SIGXCPU, which kills a program that does not catch it, and SIGKILL one second later.
  With ``processes`` this bounds the total to about ``processes * cpu_seconds``; the
  wall-clock limit of the caller bounds it in time.
* ``memory_bytes`` (RLIMIT_AS): address space per process; an allocation beyond it
  fails (Python raises MemoryError). Thread-heavy libraries reserve address space per
  thread, so it is set generously.
* ``processes`` (RLIMIT_NPROC): processes *and threads* of the program's user. The
  kernel does not enforce it for root, and counts every process of that user in its
  user namespace: it only means "processes of this sandbox" when the program runs as an
  unprivileged user in a user namespace of its own (what the ``bwrap`` runtime's
  ``run_as`` arranges).
* ``file_bytes`` (RLIMIT_FSIZE): the size of any one file the program writes; a write
  beyond it fails with EFBIG, or SIGXFSZ kills the writer (Python ignores SIGXFSZ). It
  bounds a file, not the disk: the working directory's filesystem has no quota here.

Core dumps are always off: a program killed by SIGXCPU would otherwise leave one in its
working directory.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

_GIB = 1024**3
_MIB = 1024**2


def _size(value: int) -> str:
    if value % _GIB == 0:
        return f"{value // _GIB} GiB"
    if value % _MIB == 0:
        return f"{value // _MIB} MiB"
    return f"{value} bytes"


class ResourceLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_seconds: int | None = Field(default=None, ge=1)
    memory_bytes: int | None = Field(default=None, ge=16 * _MIB)
    processes: int | None = Field(default=None, ge=4)
    file_bytes: int | None = Field(default=None, ge=1)
    prlimit: str = "prlimit"
    """Name (looked up in the program's ``PATH``) or absolute path of util-linux's prlimit."""

    @property
    def empty(self) -> bool:
        return (
            self.cpu_seconds is None
            and self.memory_bytes is None
            and self.processes is None
            and self.file_bytes is None
        )

    def argv(self) -> list[str]:
        """The ``prlimit ... --`` prefix; empty when no limit is set."""
        if self.empty:
            return []
        argv = [self.prlimit, "--core=0"]
        if self.cpu_seconds is not None:
            # soft: SIGXCPU (a clear reason); hard, a second later: SIGKILL for a
            # program that catches SIGXCPU.
            argv.append(f"--cpu={self.cpu_seconds}:{self.cpu_seconds + 1}")
        if self.memory_bytes is not None:
            argv.append(f"--as={self.memory_bytes}")
        if self.processes is not None:
            argv.append(f"--nproc={self.processes}")
        if self.file_bytes is not None:
            argv.append(f"--fsize={self.file_bytes}")
        return [*argv, "--"]

    def describe(self) -> str:
        """One line for a user whose program hit a limit."""
        parts = []
        if self.cpu_seconds is not None:
            parts.append(f"CPU time {self.cpu_seconds} s per process")
        if self.memory_bytes is not None:
            parts.append(f"memory {_size(self.memory_bytes)} of address space per process")
        if self.processes is not None:
            parts.append(f"{self.processes} processes and threads")
        if self.file_bytes is not None:
            parts.append(f"files of at most {_size(self.file_bytes)}")
        return ", ".join(parts) if parts else "none"


__all__ = ["ResourceLimits"]
