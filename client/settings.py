"""Where the client finds the server and its token: flags, then ``HPO_URL``/``HPO_TOKEN``,
then the file written by ``hpo login``."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import BaseModel


class ClientConfig(BaseModel):
    url: str = "http://127.0.0.1:8000"
    token: str = ""


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hpo-relay" / "client.toml"


def load_config(url: str | None = None, token: str | None = None) -> ClientConfig:
    stored = ClientConfig()
    path = config_path()
    if path.exists():
        stored = ClientConfig.model_validate(tomllib.loads(path.read_text()))
    return ClientConfig(
        url=url or os.environ.get("HPO_URL") or stored.url,
        token=token or os.environ.get("HPO_TOKEN") or stored.token,
    )


def save_config(config: ClientConfig) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(f'url = "{config.url}"\ntoken = "{config.token}"\n')
    tmp.replace(path)
    return path
