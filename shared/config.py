"""Settings, one class per component, read from ``HPO_*`` environment variables.

Nothing reads the environment at import time: a process builds its settings once in
its entry point (``load(...)``) and passes them down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, PlainValidator, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import artifacts, bus, store

DEV_SIGNING_KEY = "dev-only-signing-key"


def default_home() -> Path:
    return Path.home() / ".local" / "share" / "hpo-relay"


OPS_PORTS = {
    "all": 9100,
    "api": 9101,
    "steering": 9102,
    "jobbuilder": 9103,
    "broker": 9104,
    "storage": 9105,
    "monitor": 9106,
}
"""The operations listener's port when ``HPO_OPS_PORT`` is not set, by what the process
runs: the services of one host do not collide by default."""


def _ops_port(value: object) -> int | Literal["off"] | None:
    text = str(value).strip().lower() if value is not None else ""
    if text in ("off", "none", "no"):
        return "off"
    if not text:
        return None
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"must be a port number (0 to 65535) or off, not {value!r}")
    return int(text)


Port = Annotated[int, Field(ge=0, le=65535)]
"""A TCP port to listen on; 0 lets the kernel pick a free one."""
OpsPort = Annotated[int | Literal["off"] | None, PlainValidator(_ops_port)]
"""A port, ``off`` for no listener, or unset (None) for the default of :data:`OPS_PORTS`."""


def check_scheme(url: str, schemes: tuple[str, ...]) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in schemes:
        wanted = ", ".join(f"{s}://" for s in schemes)
        shown = f"{scheme!r}" if scheme else "none"
        raise ValueError(f"unsupported URL scheme {shown}: use {wanted}")
    return url


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
    """The store: ``mongodb://`` (or ``mongodb+srv://``) for a MongoDB-protocol server,
    ``memory://`` for one process's memory (tests, ephemeral runs; nothing persists)."""
    artifacts_url: str = "file:///var/lib/hpo-relay/artifacts"
    public_url: str = "http://127.0.0.1:8000"
    signing_key: SecretStr = SecretStr(DEV_SIGNING_KEY)
    dev_mode: bool = False
    reconcile_interval: float = Field(default=2.0, gt=0)
    repair_interval: float = Field(default=30.0, ge=0)
    """How often a periodic pass also puts kept counters and sets right from the records
    and looks for work a lost message left undone (services/repair.py); every process
    does at its first pass. 0: at every pass."""
    home: Path = Field(default_factory=default_home)
    startup_timeout: float | None = Field(default=None, gt=0)
    """Seconds a starting service waits for the bus, database and artifact store before
    it exits; None (the default) waits until they are back."""
    retry_initial_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=5.0, gt=0)
    """The longest pause between two attempts to reach a server that is away."""
    bus_publish_timeout: float = Field(default=5.0, gt=0)
    """How long a publish waits for a reconnecting broker before it fails."""

    ops_host: str = "127.0.0.1"
    ops_port: OpsPort = None
    """The operations listener (/healthz, /readyz, /metrics) of the process; ``off``
    for none; unset, the process's default in :data:`OPS_PORTS`."""

    def ops_port_for(self, process: str) -> int | None:
        """The port to listen on for ``process`` (a service name or ``all``), or None."""
        if self.ops_port == "off":
            return None
        if self.ops_port is None:
            return OPS_PORTS.get(process, OPS_PORTS["all"])
        return self.ops_port

    @field_validator("bus_url")
    @classmethod
    def _bus_scheme(cls, url: str) -> str:
        return check_scheme(url, bus.SCHEMES)

    @field_validator("mongo_url")
    @classmethod
    def _mongo_scheme(cls, url: str) -> str:
        return check_scheme(url, store.SCHEMES)

    @field_validator("artifacts_url")
    @classmethod
    def _artifacts_scheme(cls, url: str) -> str:
        return check_scheme(url, artifacts.SCHEMES)

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
    api_port: Port = 8000
    lease_seconds: float = Field(default=120.0, gt=0)
    lease_poll_interval: float = Field(default=0.05, gt=0)
    """How often a waiting lease re-reads the database while the bus's wake-ups are
    unavailable (the api could not watch ``job.assigned``)."""
    token_cache_seconds: float = Field(default=30.0, ge=0)
    """How long an api process keeps a token it looked up (0: never); revocations
    reach it on the bus at once, and this bounds how long one missed there still works."""
    lease_recheck_seconds: float = Field(default=2.0, gt=0)
    """How often a waiting lease re-reads the database without a wake-up when the bus
    wakes it: the bound on the delay a lost ``job.assigned`` hint can cause."""
    max_task_files_bytes: int = 1_000_000
    retry_after_seconds: int = Field(default=5, ge=1)
    """The Retry-After of a 503 answered while the bus or the database is away."""
    max_body_bytes: int = Field(default=8_000_000, ge=1)
    """Largest request body (413 beyond): a task's files, JSON-escaped, fit with room."""
    dataset_part_bytes: int = Field(default=64 * 1024 * 1024, ge=1, le=100 * 1024 * 1024)
    """Bytes per stored part of an uploaded dataset file (one presigned PUT each); at
    most 100 MiB, which a ``file://`` store's upload route accepts."""


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
    monitor_port: Port = 8001
    monitor_refresh_seconds: float = Field(default=1.0, gt=0)
    """How often what an open dashboard shows is refreshed (and pushed)."""
    token_cache_seconds: float = Field(default=30.0, ge=0)
    """As the api's: how long the monitor keeps a token it looked up (0: never)."""
    monitor_occupancy_seconds: float = Field(default=10.0, gt=0)
    """How often the sites' slots are sampled for the occupancy charts."""
    monitor_cached_tasks: int = Field(default=32, ge=1)


class StorageSettings(ServiceSettings):
    max_artifact_bytes: int = 100 * 1024 * 1024
    mlflow_url: str | None = None
    """A central MLflow tracking server the storage service keeps in step with every
    task (needs the ``mlflow`` extra); run one storage process with it."""
    mlflow_sync_interval: float = Field(default=10.0, gt=0)
    """How often a running task's experiment is brought up to date, at most."""
    minio_admin_url: SecretStr | None = None
    """``http(s)://ACCESS:SECRET@host:port`` of MinIO's admin API: with it, the storage
    service keeps one read-only policy per user, confined to the user's own prefix."""


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment, with explicit overrides winning."""
    return cls.model_validate(overrides)
