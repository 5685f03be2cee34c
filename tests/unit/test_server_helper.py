"""``start_secantus``: stop leaves nothing running, and a restart on the same directory
sees the data — the property a second ``hpo demo`` run relies on."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from shared.store.server import (
    SecantusNotInstalledError,
    SecantusStartError,
    start_secantus,
)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.mongo
def test_stop_then_restart_on_same_directory_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "db"
    with start_secantus(data_dir) as server:
        assert server.url == f"mongodb://127.0.0.1:{server.port}"
        with MongoClient[dict[str, Any]](server.url) as client:
            assert client.admin.command("ping")["ok"] == 1
            client.demo.runs.insert_one({"_id": "r1", "best": 0.25})
            assert client.demo.runs.find_one({"_id": "r1"}) == {"_id": "r1", "best": 0.25}
        first_pid = server.pid

    assert not server.running
    assert _process_gone(first_pid)
    server.stop()  # a second stop is a no-op

    with start_secantus(data_dir) as again:
        with MongoClient[dict[str, Any]](again.url) as client:
            assert client.demo.runs.find_one({"_id": "r1"}) == {"_id": "r1", "best": 0.25}
        with pytest.raises(SecantusStartError, match="exited before it was ready"):
            start_secantus(data_dir, ready_timeout=20)  # WiredTiger allows one live server
    assert _process_gone(again.pid)


def test_missing_secantus_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(SecantusNotInstalledError, match=r"pip install 'hpo-relay\[demo\]'"):
        start_secantus(tmp_path / "db")
