"""Network isolation of the compute side with ``unshare -n`` (util-linux).

Starting the node agent in a fresh network namespace (only a downed loopback) proves
that nothing on the compute side needs the network, which is the premise of the whole
edge design. It needs root or unprivileged user namespaces; when it is asked for and
does not work, the harvester refuses to start rather than silently running online.
"""

from __future__ import annotations

import shutil
import subprocess


class IsolationUnavailableError(RuntimeError):
    pass


def unshare_prefix() -> list[str]:
    """The argv prefix that runs a command without network; checked to work."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise IsolationUnavailableError(
            "isolate_network is set but 'unshare' (util-linux) is not installed"
        )
    try:
        probe = subprocess.run(  # noqa: S603 - fixed argv, no user value
            [unshare, "-n", "true"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IsolationUnavailableError(f"'unshare -n true' could not run: {exc}") from exc
    if probe.returncode != 0:
        raise IsolationUnavailableError(
            "isolate_network is set but 'unshare -n true' fails "
            f"(exit {probe.returncode}: {probe.stderr.strip() or 'no message'}); run the "
            "harvester as a user allowed to create network namespaces (root, or enable "
            "unprivileged user namespaces) or set isolate_network = false"
        )
    return [unshare, "-n"]
