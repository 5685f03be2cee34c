"""Settings, one class per component, read from ``HPO_*`` environment variables.

Nothing reads the environment at import time: a process builds its settings once in
its entry point (``load(...)``) and passes them down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SIGNING_KEY = "dev-only-signing-key"


def default_home() -> Path:
    return Path.home() / ".local" / "share" / "hpo-relay"


class LogSettings(BaseSettings):
    """How every entry point logs (``shared.logs``); read from ``HPO_LOG_*``."""

    model_config = SettingsConfigDict(env_prefix="HPO_LOG_", extra="ignore")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["kv", "json"] = "kv"
    """``kv``: one ``key=value`` line per record (logfmt); ``json``: one JSON object."""
    access: bool = False
    """Log one line per HTTP request the api and monitor answer (tokens redacted)."""


class ServiceSettings(BaseSettings):
    """What every central service needs: where the bus, the database and the store are."""

    model_config = SettingsConfigDict(env_prefix="HPO_", extra="ignore")

    bus_url: str = "memory://"
    bus_prefix: str = ""
    bus_delivery_limit: int = Field(default=5, ge=1)
    mongo_url: str = "mongodb://127.0.0.1:27017/hpo"
    artifacts_url: str = "file:///var/lib/hpo-relay/artifacts"
    public_url: str = "http://127.0.0.1:8000"
    signing_key: SecretStr = SecretStr(DEV_SIGNING_KEY)
    dev_mode: bool = False
    reconcile_interval: float = Field(default=2.0, gt=0)
    home: Path = Field(default_factory=default_home)

    @model_validator(mode="after")
    def _no_default_secret_in_production(self) -> ServiceSettings:
        uses_signed_urls = self.artifacts_url.startswith("file:")
        if (
            uses_signed_urls
            and not self.dev_mode
            and self.signing_key.get_secret_value() == DEV_SIGNING_KEY
        ):
            raise ValueError("HPO_SIGNING_KEY must be set outside dev mode (HPO_DEV_MODE=1)")
        return self


class ApiSettings(ServiceSettings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    lease_seconds: float = Field(default=120.0, gt=0)
    lease_poll_interval: float = Field(default=0.05, gt=0)
    max_task_files_bytes: int = 1_000_000
    max_body_bytes: int = Field(default=8_000_000, ge=1)
    """Largest request body (413 beyond): a task's files, JSON-escaped, fit with room."""


class SteeringSettings(ServiceSettings):
    """Where and how user steering containers (phpo's steeringExec) run."""

    steering_workdir: Path | None = None
    """Fresh working directories for steering programs; default ``<home>/steering``."""
    steering_runtime: Literal["bwrap", "process"] = "bwrap"
    """``bwrap``: a sandbox with the limits below. ``process``: no isolation at all (any
    user can then run commands as the service's user); only for a trusted development
    host, and warned about at start."""
    steering_bwrap: str = "bwrap"
    """Name (looked up in ``PATH``) or absolute path of bubblewrap."""
    steering_image_runtime: str = "auto"
    """Runtime for ``steeringContainer`` images: ``auto`` (the first image runtime found
    on this host), ``none``, or a kind such as ``apptainer``."""
    steering_attempt_timeout: float = Field(default=600.0, gt=0)
    """Wall-clock limit of one run of a steering program, in seconds."""
    steering_cpu_seconds: int = Field(default=600, ge=1)
    steering_memory_bytes: int = Field(default=8 * 1024**3, ge=64 * 1024**2)
    """Address space per process (RLIMIT_AS), not resident memory."""
    steering_processes: int = Field(default=256, ge=8)
    """Processes and threads of one sandbox."""
    steering_file_bytes: int = Field(default=1024**3, ge=1024**2)
    """Largest file a steering program may write."""
    steering_sandbox_user: str = Field(default="65534:65534", pattern=r"^[1-9][0-9]*:[1-9][0-9]*$")
    """``UID:GID`` steering programs run as when the service runs as root."""
    steering_sandbox_hide: list[str] = ["/home", "/root", "/run", "/var/lib", "/var/log"]
    """Host directories the sandbox covers with an empty one (the service's home too)."""
    steering_attempts: int = Field(default=3, ge=1, le=10)
    steering_lease_seconds: float = Field(default=30.0, gt=0)
    """How long a steering process owns a segment without renewing its lease; a
    segment whose owner died waits this long for a new one."""
    steering_instance: str | None = None
    """This process's name as a segment owner; default ``<host>-<pid>-<random>``."""

    @property
    def workdir(self) -> Path:
        return self.steering_workdir or self.home / "steering"


class BrokerSettings(ServiceSettings):
    site_alive_seconds: float = Field(default=60.0, gt=0)


class MonitorSettings(ServiceSettings):
    monitor_host: str = "127.0.0.1"
    monitor_port: int = 8001


class StorageSettings(ServiceSettings):
    max_artifact_bytes: int = 100 * 1024 * 1024


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment, with explicit overrides winning."""
    return cls.model_validate(overrides)
