"""The payload dies with its node agent, even when nobody sweeps after the agent.

The harvester stages and submits the job, then is gone; the node agent is killed with
SIGKILL while its payload (a shell and a background child in the payload's process
group) runs. Nothing else is left to stop them, so both must end on their own: the
kernel signals the payload's first process (PR_SET_PDEATHSIG) and the agent's leash
kills the payload's whole process group once the agent's end of its pipe closes.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.config import SiteConfig
from edge.documents import HarvesterRecord, NodeStatus
from edge.fsproto import JobPaths
from edge.harvester.daemon import Harvester
from shared.edge_api import JobSpec

SpecFactory = Callable[..., JobSpec]
HarvesterFactory = Callable[[], Harvester]

PAYLOAD = "sleep 300 & echo $! > child.pid; sleep 300"


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def until(predicate: Callable[[], Any]) -> None:
    """Wait for ``predicate``; the test's timeout bounds the wait."""
    while not predicate():
        await asyncio.sleep(0.05)


def payload_pid(paths: JobPaths) -> int | None:
    if not paths.status.exists():
        return None
    return NodeStatus.model_validate_json(paths.status.read_text()).pid


async def test_a_payload_and_its_children_die_when_the_agent_is_killed_with_sigkill(
    fake_api: Any,
    make_harvester: HarvesterFactory,
    make_spec: SpecFactory,
    site_config: SiteConfig,
) -> None:
    spec = make_spec(PAYLOAD)
    fake_api.offer(spec)
    paths = JobPaths.under(site_config.root, spec.job_id)
    harvester = make_harvester()
    harvester.load()
    await harvester.lease_once(1.0)  # staged and submitted; no harvester scans after this
    await harvester.aclose()
    child_file = paths.work / "child.pid"
    await until(lambda: payload_pid(paths) and child_file.exists() and child_file.read_text())
    shell = payload_pid(paths)
    assert shell is not None
    child = int(child_file.read_text())
    assert alive(shell) and alive(child)
    record = HarvesterRecord.model_validate_json(paths.harvester.read_text())
    assert record.batch_id is not None
    agent = int(record.batch_id.split(":")[0])
    os.kill(agent, signal.SIGKILL)
    await until(lambda: not alive(shell) and not alive(child))
