"""``hpo-edge doctor``: check a site config against the login node it will run on.

Each check is a small function returning :class:`CheckResult` values (``ok``, ``warn``
or ``FAIL``, what was found and, for a problem, the concrete fix), so each is tested on
its own; :func:`run_checks` runs them in order and :func:`render` prints one line per
check. Nothing here changes the site: the root probe writes a file and removes it, the
sandbox probe runs ``true``, and the api is asked only questions that record nothing
(see :func:`check_token`) unless the admin asks for a real heartbeat.

The doctor runs on the login node. Where payloads run on compute nodes (every batch
kind but ``local``), a runtime or ``unshare -n`` that fails here is only a warning: the
nodes may differ (modules, kernel settings), and each batch job checks ``unshare -n``
on its node itself.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console
from rich.text import Text

from edge.batch import BatchConfig, LocalBatchConfig
from edge.batch.commands import CommandError, run_command
from edge.batch.isolation import IsolationUnavailableError, unshare_prefix
from edge.config import SiteConfig, SiteConfigError, load_site_config, tls_verify
from edge.version import edge_version
from shared.capabilities import declared
from shared.edge_api import SiteHeartbeatBody, SiteHeartbeatReply
from shared.runtime import (
    ApptainerRuntimeConfig,
    BwrapRuntimeConfig,
    CharliecloudRuntimeConfig,
    RuntimeConfig,
    SingularityRuntimeConfig,
    runtime_kinds,
)
from shared.runtime.bwrap import BwrapRuntime

Status = Literal["ok", "warn", "FAIL"]

BATCH_COMMANDS: dict[str, tuple[str, ...]] = {
    "local": (),
    "slurm": ("sbatch", "squeue", "sacct", "scancel"),
    "lsf": ("bsub", "bjobs", "bkill"),
    "pbs": ("qsub", "qstat", "qdel"),
    "sge": ("qsub", "qstat", "qdel"),
}
VERSION_QUERIES: dict[str, list[str]] = {
    "slurm": ["squeue", "--version"],
    "lsf": ["bjobs", "-V"],
    "pbs": ["qstat", "--version"],
    "sge": ["qstat", "-help"],
}
"""A cheap query per scheduler: it needs the client's configuration and starts no job."""
CONFIG_VARIABLES = {
    "slurm": "SLURM_CONF",
    "lsf": "LSF_ENVDIR",
    "pbs": "PBS_CONF_FILE",
    "sge": "SGE_ROOT",
}
KINDS = frozenset([*BATCH_COMMANDS, *runtime_kinds()])
LOW_SPACE = 5 * 1024**3

FIX_ROOT = (
    "choose a root on the shared filesystem that this user can write (and the compute nodes "
    "see at the same path), or fix its ownership and mode"
)
FIX_USERNS = (
    "allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0; on Ubuntu also "
    "kernel.apparmor_restrict_unprivileged_userns = 0), or pick another runtime"
)


class CheckResult(BaseModel):
    """One line of the report; ``fix`` says what to change when the status is not ok."""

    model_config = ConfigDict(frozen=True)

    name: str
    status: Status
    detail: str
    fix: str = ""


def _ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name=name, status="ok", detail=detail)


def _bad(name: str, status: Status, detail: str, fix: str) -> CheckResult:
    return CheckResult(name=name, status=status, detail=detail, fix=fix)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no output"


def _one_line(text: str) -> str:
    """A command's complaint on one line: its lines joined, cut at 300 characters."""
    joined = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return joined if len(joined) <= 300 else joined[:297] + "..."


def _new_token(config: SiteConfig) -> str:
    where = config.token_file or "the token file"
    return (
        f"create one with `hpo-services admin create-token --owner ops --scope "
        f"edge:{config.site}` and write it to {where} (chmod 600)"
    )


# -- config and token ------------------------------------------------------------------


def check_config(path: Path) -> tuple[list[CheckResult], SiteConfig | None]:
    """Parse ``path`` as the harvester would: one FAIL per bad key, as ``key: message``."""
    try:
        config = load_site_config(path)
    except SiteConfigError as exc:
        cause = exc.__cause__
        if not isinstance(cause, ValidationError):
            return [_bad("config", "FAIL", str(exc), f"give a readable TOML file: {path}")], None
        fix = f"correct this key in {path}"
        return [
            _bad("config", "FAIL", f"{_key(error['loc'])}: {_message(error['msg'])}", fix)
            for error in cause.errors()
        ], None
    kinds = f"batch {config.batch.kind}, runtime {config.runtime.kind}"
    return [_ok("config", f"{path}: site {config.site}, {kinds}")], config


def _key(loc: Sequence[int | str]) -> str:
    """``batch.partition``, without the ``slurm`` pydantic puts in for the chosen kind."""
    parts = [str(part) for part in loc]
    if len(parts) > 2 and parts[0] in ("batch", "runtime") and parts[1] in KINDS:
        del parts[1]
    return ".".join(parts) or "(top level)"


def _message(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def _readers(path: Path) -> str:
    """``group``, ``others`` or ``group and others`` when they can read ``path``, else ``""``."""
    mode = path.stat().st_mode
    bits = (("group", stat.S_IRGRP), ("others", stat.S_IROTH))
    return " and ".join(who for who, bit in bits if mode & bit)


def check_token_source(config: SiteConfig, config_path: Path) -> CheckResult:
    """The token can be read, is not empty, and nobody but its owner can read it."""
    name = "token file"
    private = "chmod 600 {}: whoever reads the token can act as this site"
    if config.token_file is None:
        readers = _readers(config_path)
        if readers:
            detail = f"the token is written in {config_path}, which {readers} can read"
            fix = private.format(config_path) + ", or move the token to token_file"
            return _bad(name, "warn", detail, fix)
        return _ok(name, "the token is written in the config (a token_file is easier to rotate)")
    try:
        config.api_token()
    except SiteConfigError as exc:
        return _bad(name, "FAIL", str(exc), _new_token(config))
    readers = _readers(config.token_file)
    if readers:
        detail = f"{config.token_file} is readable by {readers}"
        return _bad(name, "warn", detail, private.format(config.token_file))
    return _ok(name, f"{config.token_file} is readable and private")


# -- batch system and edge root ----------------------------------------------------------


def check_batch(config: BatchConfig, timeout: float) -> CheckResult:
    """The scheduler's client commands are on PATH and answer a query that starts nothing."""
    name = f"batch ({config.kind})"
    if isinstance(config, LocalBatchConfig):
        return _ok(name, "node agents run as processes on this host: no commands needed")
    missing = [command for command in BATCH_COMMANDS[config.kind] if not shutil.which(command)]
    if missing:
        fix = (
            "put the scheduler's client directory on PATH where the harvester runs (under "
            "systemd: PATH=... in the unit's environment file; `module load` does not reach it)"
        )
        return _bad(name, "FAIL", f"not on PATH: {', '.join(missing)}", fix)
    argv = VERSION_QUERIES[config.kind]
    fix = (
        f"make `{' '.join(argv)}` work for this user here; {CONFIG_VARIABLES[config.kind]} "
        "must be set where the harvester runs, if the client needs it"
    )
    try:
        result = run_command(argv, timeout=timeout)
    except CommandError as exc:
        return _bad(name, "FAIL", str(exc), fix)
    if not result.ok:
        return _bad(name, "FAIL", _one_line(result.describe()), fix)
    return _ok(name, f"{' '.join(argv)}: {_first_line(result.stdout + result.stderr)}")


def check_root(root: Path) -> CheckResult:
    """``root``, or the directory it would be created in, takes an atomic write (temporary
    file, rename, delete); reports the free space."""
    name = "edge root"
    base = root
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        cannot = "" if base == root else f", so {root} cannot be created"
        return _bad(name, "FAIL", f"{base} is not a directory{cannot}", FIX_ROOT)
    probe = base / f".hpo-doctor-{secrets.token_hex(4)}"
    temporary = probe.with_suffix(".tmp")
    try:
        temporary.write_text("hpo-edge doctor probe\n")
        temporary.replace(probe)
        probe.unlink()
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        return _bad(name, "FAIL", f"cannot write in {base}: {exc}", FIX_ROOT)
    usage = shutil.disk_usage(base)
    space = f"{usage.free / 1024**3:.1f} GiB free of {usage.total / 1024**3:.1f} GiB"
    where = str(root) if base == root else f"{root} does not exist yet, {base} is"
    if usage.free < LOW_SPACE:
        fix = "free space there or move the root: job directories, logs and metrics live there"
        return _bad(name, "warn", f"{where} writable, only {space}", fix)
    return _ok(name, f"{where} writable, {space}")


# -- runtime and network isolation --------------------------------------------------------


def _run(
    argv: Sequence[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[int, str]:
    """(exit code, its first line, or on failure all it said); -1: it did not run or end."""
    try:
        done = subprocess.run(  # noqa: S603 - argv list, no shell
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            cwd=cwd,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    if done.returncode == 0:
        return 0, _first_line(done.stdout + done.stderr)
    return done.returncode, _one_line(done.stderr.strip() or done.stdout)


def _bwrap(config: BwrapRuntimeConfig, status: Status, timeout: float) -> CheckResult:
    """Start the runtime's own sandbox (read-only root, no network ...) around ``true``."""
    name = "runtime (bwrap)"
    with tempfile.TemporaryDirectory(prefix="hpo-doctor-") as workdir:
        launch = BwrapRuntime(config).prepare("true", Path(workdir), {}, None, None)
        executable = shutil.which(launch.argv[0], path=launch.env["PATH"])
        if executable is None:
            fix = "install bubblewrap (e.g. apt-get install bubblewrap) or set runtime.executable"
            return _bad(name, status, f"{config.executable!r} is not on PATH", fix)
        _, version = _run([executable, "--version"], timeout)
        code, said = _run([executable, *launch.argv[1:]], timeout, launch.env, launch.cwd)
    if code != 0:
        return _bad(name, status, f"a sandbox without network does not start: {said}", FIX_USERNS)
    return _ok(name, f"{version}; a read-only sandbox without network ran `true`")


def _sif(
    config: ApptainerRuntimeConfig | SingularityRuntimeConfig, status: Status, timeout: float
) -> list[CheckResult]:
    """The tool answers ``--version``; no container is run (that needs an image)."""
    name = f"runtime ({config.kind})"
    executable = shutil.which(config.executable)
    if executable is None:
        fix = (
            f"install {config.kind}, load its module in batch.setup, or set runtime.executable "
            "to its absolute path"
        )
        return [_bad(name, status, f"{config.executable!r} is not on PATH", fix)]
    code, said = _run([executable, "--version"], timeout)
    if code != 0:
        return [_bad(name, status, f"{config.executable} --version: {said}", "repair it")]
    results = [_ok(name, f"{said} (no container was started: that needs an image)")]
    paths = [bind.source for bind in config.binds]
    if config.default_image:
        paths.append(config.default_image)
    absent = [path for path in paths if not Path(path).exists()]
    if absent:
        detail = f"not found on this host: {', '.join(absent)}"
        fix = "check runtime.binds and runtime.default_image as the compute nodes see them"
        results.append(_bad(f"{name} paths", "warn", detail, fix))
    return results


def _charliecloud(config: CharliecloudRuntimeConfig, status: Status, timeout: float) -> CheckResult:
    """``ch-run --version`` answers, and the default image has its mount point."""
    name = "runtime (charliecloud)"
    executable = shutil.which(config.executable)
    if executable is None:
        fix = (
            "install Charliecloud (apt-get install charliecloud-runtime) or set runtime.executable"
        )
        return _bad(name, status, f"{config.executable!r} is not on PATH", fix)
    env = {**os.environ, "USER": os.environ.get("USER") or str(os.geteuid())}
    code, said = _run([executable, "--version"], timeout, env=env)
    if code != 0:
        return _bad(name, status, f"{config.executable} --version: {said}", "repair it")
    image = config.default_image
    if image and not Path(image, "srv", "workDir").is_dir():
        fix = (
            f"add the mount point ch-run binds the work directory on: mkdir -p {image}/srv/workDir"
        )
        return _bad(name, "warn", f"ch-run {said}; default_image {image} has no /srv/workDir", fix)
    return _ok(name, f"ch-run {said} (no container was started: that needs an image)")


def check_runtime(config: RuntimeConfig, *, here: bool, timeout: float) -> list[CheckResult]:
    """The payload runtime works. ``here``: payloads run on this host (a ``local`` batch),
    so a problem is a FAIL, not a warning."""
    status: Status = "FAIL" if here else "warn"
    if isinstance(config, BwrapRuntimeConfig):
        return [_bwrap(config, status, timeout)]
    if isinstance(config, ApptainerRuntimeConfig | SingularityRuntimeConfig):
        return _sif(config, status, timeout)
    if isinstance(config, CharliecloudRuntimeConfig):
        return [_charliecloud(config, status, timeout)]
    return [_ok("runtime (process)", "payloads run as plain processes: nothing to install")]


def check_isolation(*, here: bool) -> CheckResult:
    """``unshare -n true`` works, as the harvester (``local``) or each batch job checks."""
    name = "network isolation"
    try:
        unshare_prefix()
    except IsolationUnavailableError as exc:
        if here:
            fix = "allow this user to create network namespaces, or set isolate_network = false"
            return _bad(name, "FAIL", str(exc), fix)
        fix = "only the compute nodes matter: each batch job checks `unshare -n` there"
        return _bad(name, "warn", f"on this login node: {exc}", fix)
    return _ok(name, "`unshare -n true` works")


# -- api and token -------------------------------------------------------------------------


def _unreachable(what: str, exc: httpx.HTTPError) -> CheckResult:
    text = f"{what}: {type(exc).__name__}: {exc}"
    if "SSL" in text or "CERTIFICATE" in text.upper():
        return _bad("api", "FAIL", text, "set verify_tls to the path of the api's CA bundle")
    return _bad("api", "FAIL", text, "check api_url, and HTTPS_PROXY/NO_PROXY if a proxy is used")


def check_health(http: httpx.Client, base_url: str) -> CheckResult:
    """``GET {api_url}/healthz`` answers 200."""
    url = f"{base_url}/healthz"
    started = time.monotonic()
    try:
        response = http.get(url)
    except httpx.HTTPError as exc:
        return _unreachable(f"GET {url}", exc)
    if response.status_code != 200:
        detail = f"GET {url}: {response.status_code} {response.reason_phrase}"
        return _bad("api", "FAIL", detail, "api_url must be the base URL of the hpo-relay api")
    return _ok("api", f"{url} answered in {(time.monotonic() - started) * 1000:.0f} ms")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    return str(body.get("detail", body) if isinstance(body, dict) else body)[:200]


def check_token(http: httpx.Client, config: SiteConfig, *, heartbeat: bool) -> CheckResult:
    """Whether the api takes the token, by default without recording anything.

    The edge api has no read-only "who am I" for sites, so the default probe posts an
    *empty* body to the site heartbeat. The api authenticates the token first (401:
    unknown, expired or revoked; 403: not an edge token), then rejects the body (422), so
    the handler never runs and nothing is stored or published. What that cannot show is
    whether the token is for *this* site, which only the handler checks. ``heartbeat``
    sends a real heartbeat with 0 free slots instead: it checks the site too, and shows
    the site alive (with no room) until the harvester's next heartbeat.
    """
    try:
        token = config.api_token()
    except SiteConfigError as exc:
        return _bad("token", "warn", f"not checked: {exc}", "see the token file check")
    url = f"{config.base_url}/edge/v1/sites/{config.site}/heartbeat"
    body = "{}"
    if heartbeat:
        sent = SiteHeartbeatBody(
            arch=config.arch,
            free_slots=0,
            total_slots=config.slots,
            version=edge_version(),
            capabilities=declared(config.runtime),
        )
        body = sent.model_dump_json()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        response = http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return _unreachable(f"POST {url}", exc)
    code = response.status_code
    if code in (401, 403):
        return _bad("token", "FAIL", f"{code}: {_detail(response)}", _new_token(config))
    if heartbeat and code == 200:
        site = SiteHeartbeatReply.model_validate_json(response.content).site
        return _ok("token", f"valid for site {site}: a heartbeat with 0 free slots was accepted")
    if not heartbeat and code == 422:
        return _ok(
            "token",
            f"a live edge token; not checked: that it is for site {config.site} "
            "(--heartbeat checks that, by sending a heartbeat)",
        )
    detail = f"unexpected answer {code} to POST {url}: {_detail(response)}"
    fix = "api_url must be the api's base URL, and the api of the same release as this edge"
    return _bad("token", "FAIL", detail, fix)


def check_api(config: SiteConfig, *, heartbeat: bool, timeout: float) -> list[CheckResult]:
    """The api answers with the config's TLS settings, then the token check."""
    try:
        verify = tls_verify(config)
    except OSError as exc:
        detail = f"verify_tls: cannot load the CA bundle {config.verify_tls}: {exc}"
        return [_bad("api", "FAIL", detail, "set verify_tls to a readable PEM file, or true")]
    with httpx.Client(verify=verify, timeout=timeout) as http:
        health = check_health(http, config.base_url)
        if health.status == "FAIL":
            return [health, _bad("token", "warn", "not checked: no api", "see the api check")]
        return [health, check_token(http, config, heartbeat=heartbeat)]


# -- all of them -------------------------------------------------------------------------


def run_checks(
    config_path: Path, *, heartbeat: bool = False, timeout: float = 10.0
) -> list[CheckResult]:
    """Every check, in the order an admin would fix things; only the config check when
    the config does not parse, since every other check needs it."""
    results, config = check_config(config_path)
    if config is None:
        return results
    here = isinstance(config.batch, LocalBatchConfig)
    steps: list[Callable[[], CheckResult | list[CheckResult]]] = [
        lambda: check_token_source(config, config_path),
        lambda: check_batch(config.batch, timeout),
        lambda: check_root(config.root),
        lambda: check_runtime(config.runtime, here=here, timeout=timeout),
    ]
    if config.isolate_network:
        steps.append(lambda: check_isolation(here=here))
    steps.append(lambda: check_api(config, heartbeat=heartbeat, timeout=timeout))
    for step in steps:
        found = step()
        results.extend(found if isinstance(found, list) else [found])
    return results


STYLES: dict[Status, str] = {"ok": "green", "warn": "yellow", "FAIL": "bold red"}


def render(results: Sequence[CheckResult], console: Console) -> None:
    """One line per check, ``fix:`` under each problem, then a count."""
    for result in results:
        status = (f"{result.status:<4}", STYLES[result.status])
        console.print(Text.assemble(status, f"  {result.name}: {result.detail}"))
        if result.fix and result.status != "ok":
            console.print(Text(f"      fix: {result.fix}"))
    failed = sum(result.status == "FAIL" for result in results)
    warned = sum(result.status == "warn" for result in results)
    summary = f"{len(results)} checks: {failed} failed, {warned} warning(s)"
    console.print(Text(summary, style="bold red" if failed else "bold green"))


__all__ = ["CheckResult", "render", "run_checks"]
