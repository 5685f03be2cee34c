"""A last-resort watchdog: a test (with its fixtures' teardown) that outlives twice its
own timeout is stuck where pytest-timeout cannot reach it (a teardown after the timeout
already fired, a blocking call in C). Then every thread's stack is written to the file
named by ``HPO_TEST_WATCHDOG`` (``deploy/dev/test.sh`` prints it) and the run exits, so
a hang costs one test's time and says where it was, instead of the CI's whole budget.
"""

from __future__ import annotations

import faulthandler
import os
import threading
from collections.abc import Iterator
from typing import IO

import pytest

GRACE_SECONDS = 120.0
_sink: IO[str] | None = None


def _limit(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 120)


def _file() -> IO[str] | None:
    global _sink
    if _sink is None:
        path = os.environ.get("HPO_TEST_WATCHDOG")
        if not path:
            return None
        _sink = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the session
    return _sink


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    sink = _file()
    if sink is None:
        yield
        return
    after = 2 * _limit(item) + GRACE_SECONDS

    def fire() -> None:
        sink.write(f"\n== {item.nodeid}: stuck for over {after:.0f} s\n")
        sink.flush()
        faulthandler.dump_traceback(file=sink, all_threads=True)
        sink.flush()
        os._exit(3)

    # A thread of its own: faulthandler's one timer is cancelled by pytest whenever a
    # test fails, which is exactly before the teardowns that hang.
    timer = threading.Timer(after, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
