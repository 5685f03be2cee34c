"""Site configuration of the edge harvester, read from a TOML file by the site admin.

Example ``site.toml``::

    site = "hpc-a"
    api_url = "https://hpo.example.org"
    token_file = "~/.config/hpo-relay/site.token"
    root = "/gpfs/project/hpo-edge"      # or $HPO_EDGE_ROOT
    arch = "ppc64le"
    slots = 6
    isolate_network = true

    [batch]
    kind = "local"

    [runtime]
    kind = "process"

    [datasets]                           # uploaded datasets, cached once per site
    max_size = "2TiB"
    [datasets.present]                   # datasets already on the shared filesystem
    "user.alice.mnist" = "/gpfs/data/mnist"

Relative paths are taken relative to the config file. The config is built once by the
CLI and passed down; nothing reads it at import time.
"""

from __future__ import annotations

import os
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, model_validator

from edge.batch import BatchConfig, LocalBatchConfig
from edge.batch.options import unsupported
from edge.classes import SiteComputeClass
from edge.harvester.datacache import DatasetCacheConfig
from edge.harvester.payloadfile import PayloadFileLimits
from edge.harvester.sifcache import SifCacheConfig
from shared.edge_api import Arch
from shared.runtime import ProcessRuntimeConfig, RuntimeConfig
from shared.startup import describe

ROOT_ENV = "HPO_EDGE_ROOT"


class SiteConfigError(ValueError):
    """The site config cannot be used; the message says what to change."""


class LateBindingConfig(BaseModel):
    """``[late_binding]``: how ``per_gpu`` workers (layout 1) take jobs."""

    model_config = ConfigDict(extra="forbid")

    expected_job_seconds: float = Field(default=900.0, gt=0)
    """A job's expected duration until a worker has seen one finish; a worker then
    uses the longest it saw. A slot starts another job only if it fits in the walltime
    left."""
    idle_seconds: float = Field(default=60.0, ge=0)
    """A worker with an empty inbox and nothing running exits after this long."""
    queue_per_slot: int = Field(default=1, ge=0, le=16)
    """Jobs held in a worker's inbox per GPU slot beyond the running ones, so a slot
    starts its next job as soon as a payload ends; the harvester leases
    ``slots x (1 + queue_per_slot)`` jobs at most."""
    poll_interval: float = Field(default=0.5, gt=0)
    """How often an idle slot looks into the inbox."""


class SiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    api_url: AnyHttpUrl
    token: SecretStr | None = None
    token_file: Path | None = None
    root: Path
    arch: Arch = "amd64"
    slots: int = Field(default=1, ge=1, le=10_000)
    batch: BatchConfig = Field(default_factory=LocalBatchConfig)
    runtime: RuntimeConfig = Field(default_factory=ProcessRuntimeConfig)
    images: SifCacheConfig = Field(default_factory=SifCacheConfig)
    """The SIF cache on the login node (apptainer and singularity runtimes only)."""
    compute_classes: list[SiteComputeClass] = Field(default_factory=list, max_length=32)
    """The classes of nodes jobs run on, declared in every heartbeat (without their
    ``batch`` options, which the harvester uses when it submits a job of the class);
    none: one ``default`` class read from ``[batch]`` (edge/classes.py)."""
    datasets: DatasetCacheConfig = Field(default_factory=DatasetCacheConfig)
    """The dataset cache and the datasets already present on the site."""
    poll_interval: float = Field(default=2.0, gt=0)
    heartbeat_interval: float = Field(default=10.0, gt=0)
    """How often node agents touch their heartbeat and the harvester relays it."""
    lost_after_intervals: int = Field(default=6, ge=2)
    kill_grace_seconds: float = Field(default=30.0, ge=0)
    lease_wait_seconds: float = Field(default=10.0, ge=0, le=60)
    lease_recover_interval: float = Field(default=30.0, gt=0)
    """How often the harvester asks the api which leases this site holds and stages the
    ones it has no job directory for: a lease answered to a request that died with an
    earlier process, which may be answered after this process first asked. Keep it
    well below the api's lease time, or such a job is lost and its point retried."""
    verify_tls: bool | Path = True
    """False, True (system CAs) or the path of a CA bundle."""
    isolate_network: bool = False
    """Start node agents under ``unshare -n``, proving the compute side is offline."""
    request_timeout: float = Field(default=30.0, gt=0)
    payload_files: PayloadFileLimits = Field(default_factory=PayloadFileLimits)
    """``[payload_files]``: sizes, JSON depth and read time the harvester accepts from
    what a payload wrote (edge/harvester/payloadfile.py)."""
    late_binding: LateBindingConfig = Field(default_factory=LateBindingConfig)
    ops_host: str = "127.0.0.1"
    ops_port: int | None = Field(default=None, ge=0, le=65535)
    """The operations listener (/healthz, /readyz, /metrics); off unless set, since a
    login node is shared and an open port there is the site admin's choice."""

    @model_validator(mode="after")
    def _one_token_source(self) -> SiteConfig:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("set exactly one of 'token' and 'token_file'")
        return self

    @model_validator(mode="after")
    def _isolation_fits_the_layout(self) -> SiteConfig:
        layout = getattr(self.batch, "layout", "single")
        if self.isolate_network and layout in ("multi_node", "elastic"):
            raise ValueError(
                f"isolate_network cannot be used with batch.layout {layout!r}: the launcher "
                "must reach the scheduler and the ranks each other over the network"
            )
        return self

    @model_validator(mode="after")
    def _slots_hold_a_worker(self) -> SiteConfig:
        if self.batch.layout == "per_gpu" and self.slots < self.batch.gpus_per_node:
            raise ValueError(
                f"slots ({self.slots}) must be at least batch.gpus_per_node "
                f"({self.batch.gpus_per_node}) with layout 'per_gpu': a worker holds a node"
            )
        return self

    @model_validator(mode="after")
    def _class_options_fit_the_batch_system(self) -> SiteConfig:
        for index, declared in enumerate(self.compute_classes):
            if declared.batch is None:
                continue
            where = f"compute_classes[{index}] ({declared.name}).batch"
            why = unsupported(self.batch.kind, declared.batch)
            if why is not None:
                raise ValueError(f"{where}: {why}")
            gpus = self.batch.gpus_per_node
            if self.per_gpu and declared.batch.set_fields() and declared.gpus_per_node != gpus:
                raise ValueError(
                    f"compute_classes[{index}] ({declared.name}).gpus_per_node: a class with "
                    f"batch options gets 'per_gpu' workers of its own, each holding "
                    f"[batch] gpus_per_node ({gpus}) GPUs of one node: declare "
                    f"gpus_per_node = {gpus} (not {declared.gpus_per_node})"
                )
        return self

    @property
    def per_gpu(self) -> bool:
        return self.batch.layout == "per_gpu"

    @property
    def base_url(self) -> str:
        return str(self.api_url).rstrip("/")

    @property
    def lost_after_seconds(self) -> float:
        return self.heartbeat_interval * self.lost_after_intervals

    def api_token(self) -> str:
        """The site token; read from ``token_file`` at each call so it can be rotated."""
        if self.token is not None:
            return self.token.get_secret_value()
        assert self.token_file is not None
        try:
            value = self.token_file.read_text().strip()
        except OSError as exc:
            raise SiteConfigError(f"cannot read token_file {self.token_file}: {exc}") from exc
        if not value:
            raise SiteConfigError(f"token_file {self.token_file} is empty")
        return value


def _resolve(base: Path, value: Any) -> Any:
    if isinstance(value, str) and value:
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else base / path)
    return value


def load_site_config(path: Path, environ: Mapping[str, str] | None = None) -> SiteConfig:
    """Read and validate ``path``; ``root`` defaults to ``$HPO_EDGE_ROOT``.

    Raises SiteConfigError with a message naming the file and the bad key.
    """
    env = os.environ if environ is None else environ
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SiteConfigError(f"cannot read site config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SiteConfigError(f"{path} is not valid TOML: {exc}") from exc
    if "root" not in data and env.get(ROOT_ENV):
        data["root"] = env[ROOT_ENV]
    base = path.resolve().parent
    for key in ("root", "token_file"):
        data[key] = _resolve(base, data.get(key))
    images = data.get("images")
    if isinstance(images, dict) and images.get("dir"):
        data["images"] = {**images, "dir": _resolve(base, images["dir"])}
    datasets = data.get("datasets")
    if isinstance(datasets, dict):
        datasets = dict(datasets)
        if datasets.get("dir"):
            datasets["dir"] = _resolve(base, datasets["dir"])
        if isinstance(datasets.get("present"), dict):
            datasets["present"] = {k: _resolve(base, v) for k, v in datasets["present"].items()}
        data["datasets"] = datasets
    if isinstance(data.get("verify_tls"), str):
        data["verify_tls"] = _resolve(base, data["verify_tls"])
    data = {k: v for k, v in data.items() if v is not None}
    try:
        return SiteConfig.model_validate(data)
    except ValueError as exc:
        raise SiteConfigError(
            f"invalid site config {path}: {describe(exc, env_prefix=None)}"
        ) from exc


def tls_verify(config: SiteConfig) -> bool | ssl.SSLContext:
    """The value httpx expects for ``verify`` (a context for a CA bundle path)."""
    if isinstance(config.verify_tls, bool):
        return config.verify_tls
    return ssl.create_default_context(cafile=str(config.verify_tls))
