"""The version the harvester reports to the api and ``hpo-edge version`` prints."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def edge_version() -> str:
    try:
        return version("hpo-relay")
    except PackageNotFoundError:
        return "0+unknown"
