"""Running a batch system's command-line tools (``sbatch``, ``bjobs``, ``qstat`` ...).

The adapters talk to their schedulers only through the documented client commands, as a
user at a terminal would: no library bindings, no REST endpoints, so the harvester needs
nothing on the login node beyond what users already have. Every command runs with an
argv list (never through a shell), no terminal on stdin, and a timeout, because a
scheduler that hangs must not hang the harvester's scan.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass


class CommandError(RuntimeError):
    """The command could not be run at all (missing, not executable, timed out)."""


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """``sbatch exited 1: <its stderr and stdout>``, for error messages and logs."""
        said = " | ".join(text.strip() for text in (self.stderr, self.stdout) if text.strip())
        return f"{self.argv[0]} exited {self.returncode}: {said or 'no message'}"


def run_command(argv: Sequence[str], *, timeout: float, stdin: str | None = None) -> CommandResult:
    """Run ``argv`` to its end and capture its output; raises CommandError if it cannot
    be started or outlives ``timeout`` seconds (it is killed then)."""
    args = list(argv)
    try:
        done = subprocess.run(  # noqa: S603 - argv list, no shell
            args,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise CommandError(
            f"{args[0]!r} is not on PATH: is the batch system's client installed on this host?"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{args[0]} did not answer within {timeout:.0f} s") from exc
    except OSError as exc:
        raise CommandError(f"cannot run {args[0]}: {exc}") from exc
    return CommandResult(args, done.returncode, done.stdout, done.stderr)
