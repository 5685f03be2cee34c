"""``hpo-edge doctor``: every check passes and fails as it should, and the docs' configs parse.

The api checks run against the real api app (its real edge router and authentication)
served by uvicorn, with a stand-in store that records every write: that is what proves
the default token probe changes nothing.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from edge import doctor
from edge.batch import (
    LocalBatchConfig,
    LsfBatchConfig,
    PbsBatchConfig,
    SgeBatchConfig,
    SlurmBatchConfig,
)
from edge.cli import app
from edge.config import SiteConfig, load_site_config
from edge.doctor import (
    check_api,
    check_batch,
    check_config,
    check_isolation,
    check_root,
    check_runtime,
    check_token_source,
    run_checks,
)
from services.api.app import create_app
from services.api.auth import hash_secret
from shared.config import ApiSettings
from shared.domain.models import Site, Token
from shared.runtime import (
    ApptainerRuntimeConfig,
    BwrapRuntimeConfig,
    CharliecloudRuntimeConfig,
    ProcessRuntimeConfig,
    SingularityRuntimeConfig,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "edge.md"
EDGE_TOKEN = "hpo_edge-token-for-hpc-a"
OTHER_SITE_TOKEN = "hpo_edge-token-for-hpc-b"
USER_TOKEN = "hpo_user-token"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, api_url: str = "", **extra: str) -> Path:
    """A local/process site config with a private token file; ``extra`` adds TOML lines."""
    token = tmp_path / "site.token"
    token.write_text(EDGE_TOKEN + "\n")
    token.chmod(0o600)
    lines = [
        'site = "hpc-a"',
        f'api_url = "{api_url or f"http://127.0.0.1:{closed_port()}"}"',
        'token_file = "site.token"',
        'root = "edge-root"',
        *extra.values(),
    ]
    path = tmp_path / "site.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def shim(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


# -- config --------------------------------------------------------------------------------


def test_a_good_config_parses(tmp_path: Path) -> None:
    results, config = check_config(write_config(tmp_path))
    assert config is not None
    assert [r.status for r in results] == ["ok"]
    assert "site hpc-a, batch local, runtime process" in results[0].detail


def test_a_bad_config_is_one_line_per_key(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        'site = "hpc a"\napi_url = "http://x"\ntoken = "t"\nroot = "r"\nslots = 0\n'
        '[batch]\nkind = "slurm"\npartiton = "gpu"\n[runtime]\nkind = "bwrap"\nhide = ["/tmp"]\n'
    )
    results, config = check_config(path)
    assert config is None
    assert {r.status for r in results} == {"FAIL"}
    details = [r.detail for r in results]
    assert any(d.startswith("site: String should match pattern") for d in details)
    assert "slots: Input should be greater than or equal to 1" in details
    assert "batch.partiton: Extra inputs are not permitted" in details
    assert any(d.startswith("runtime.hide: hide entry '/tmp' clashes") for d in details)
    assert all(str(path) in r.fix for r in results)


def test_no_token_source_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('site = "a"\napi_url = "http://x"\nroot = "r"\n')
    results, _ = check_config(path)
    assert [r.detail for r in results] == [
        "(top level): set exactly one of 'token' and 'token_file'"
    ]
    path.write_text("site = \n")
    results, _ = check_config(path)
    assert results[0].status == "FAIL" and "not valid TOML" in results[0].detail
    results, _ = check_config(tmp_path / "missing.toml")
    assert results[0].status == "FAIL" and "cannot read site config" in results[0].detail


def test_token_file_missing_empty_loose_and_private(tmp_path: Path) -> None:
    config = load_site_config(write_config(tmp_path))
    path = tmp_path / "site.toml"
    assert check_token_source(config, path).status == "ok"
    assert config.token_file is not None
    config.token_file.chmod(0o644)
    loose = check_token_source(config, path)
    assert (loose.status, loose.detail) == (
        "warn",
        f"{config.token_file} is readable by group and others",
    )
    assert loose.fix.startswith(f"chmod 600 {config.token_file}")
    config.token_file.write_text("\n")
    empty = check_token_source(config, path)
    assert empty.status == "FAIL" and "is empty" in empty.detail
    assert "create-token --owner ops --scope edge:hpc-a" in empty.fix
    config.token_file.unlink()
    assert check_token_source(config, path).status == "FAIL"


def test_an_inline_token_warns_only_when_the_config_is_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('site = "a"\napi_url = "http://x"\ntoken = "hpo_t"\nroot = "r"\n')
    path.chmod(0o600)
    config = load_site_config(path)
    assert check_token_source(config, path).status == "ok"
    path.chmod(0o604)
    result = check_token_source(config, path)
    assert (result.status, result.detail.endswith("which others can read")) == ("warn", True)


# -- batch -----------------------------------------------------------------------------------


def test_local_batch_needs_no_command() -> None:
    assert check_batch(LocalBatchConfig(), timeout=5).status == "ok"


def test_missing_scheduler_commands_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    shim(bindir, "sbatch", "exit 0")
    shim(bindir, "squeue", "exit 0")
    monkeypatch.setenv("PATH", str(bindir))
    result = check_batch(SlurmBatchConfig(), timeout=5)
    assert (result.status, result.detail) == ("FAIL", "not on PATH: sacct, scancel")
    assert "environment file" in result.fix


@pytest.mark.parametrize(
    ("config", "tools", "query"),
    [
        (SlurmBatchConfig(), ("sbatch", "squeue", "sacct", "scancel"), "squeue --version"),
        (LsfBatchConfig(), ("bsub", "bjobs", "bkill"), "bjobs -V"),
        (PbsBatchConfig(), ("qsub", "qstat", "qdel"), "qstat --version"),
        (SgeBatchConfig(), ("qsub", "qstat", "qdel"), "qstat -help"),
    ],
)
def test_scheduler_commands_answer_a_version_query(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config: SlurmBatchConfig | LsfBatchConfig | PbsBatchConfig | SgeBatchConfig,
    tools: tuple[str, ...],
    query: str,
) -> None:
    bindir = tmp_path / "bin"
    calls = tmp_path / "calls"
    for tool in tools:
        shim(bindir, tool, f'echo "{tool} $*" >> {calls}\necho "{tool} 1.2.3"')
    monkeypatch.setenv("PATH", str(bindir))
    result = check_batch(config, timeout=5)
    assert result.status == "ok"
    assert result.detail == f"{query}: {query.split()[0]} 1.2.3"
    assert calls.read_text() == f"{query}\n"  # nothing is submitted, queried or cancelled


def test_a_scheduler_that_refuses_or_hangs_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleep = shutil.which("sleep")
    bindir = tmp_path / "bin"
    for tool in ("bsub", "bkill"):
        shim(bindir, tool, "exit 0")
    shim(bindir, "bjobs", 'echo "LSF is down." >&2\necho "try later" >&2\nexit 255')
    monkeypatch.setenv("PATH", str(bindir))
    refused = check_batch(LsfBatchConfig(), timeout=5)
    assert (refused.status, refused.detail) == (
        "FAIL",
        "bjobs exited 255: LSF is down. | try later",
    )
    shim(bindir, "bjobs", f"exec {sleep} 30")
    hung = check_batch(LsfBatchConfig(), timeout=1)
    assert (hung.status, hung.detail) == ("FAIL", "bjobs did not answer within 1 s")


# -- edge root -------------------------------------------------------------------------------


def test_a_writable_root_leaves_no_probe_behind(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = check_root(root)
    assert result.status == "ok"
    assert re.fullmatch(rf"{root} writable, [0-9.]+ GiB free of [0-9.]+ GiB", result.detail)
    assert list(root.iterdir()) == []


def test_a_missing_root_is_probed_where_it_would_be_created(tmp_path: Path) -> None:
    result = check_root(tmp_path / "a" / "b")
    assert result.status == "ok"
    assert result.detail.startswith(f"{tmp_path / 'a' / 'b'} does not exist yet, {tmp_path} is")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_root_fails(tmp_path: Path) -> None:
    # /proc refuses new files even to root, unlike a chmod'ed directory.
    result = check_root(Path("/proc/hpo-edge-root"))
    assert result.status == "FAIL" and result.detail.startswith("cannot write in /proc:")
    (tmp_path / "file").write_text("")
    blocked = check_root(tmp_path / "file" / "root")
    assert blocked.status == "FAIL" and "is not a directory" in blocked.detail
    assert "shared filesystem" in blocked.fix


def test_little_free_space_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "LOW_SPACE", 1 << 62)
    result = check_root(tmp_path)
    assert result.status == "warn" and "only" in result.detail


# -- runtime and isolation ---------------------------------------------------------------------


def test_the_process_runtime_needs_nothing() -> None:
    [result] = check_runtime(ProcessRuntimeConfig(), here=True, timeout=5)
    assert result.status == "ok"


def test_bwrap_runs_a_real_sandbox() -> None:
    [result] = check_runtime(BwrapRuntimeConfig(), here=True, timeout=30)
    assert result.status == "ok", result.detail
    assert result.detail.startswith("bubblewrap ")


def test_bwrap_missing_or_refused(tmp_path: Path) -> None:
    missing = BwrapRuntimeConfig(executable=str(tmp_path / "no-bwrap"))
    [here] = check_runtime(missing, here=True, timeout=5)
    [nodes] = check_runtime(missing, here=False, timeout=5)
    assert (here.status, nodes.status) == ("FAIL", "warn")
    assert "install bubblewrap" in here.fix
    refusing = shim(
        tmp_path,
        "bwrap",
        '[ "$1" = --version ] && { echo "bubblewrap 0.0"; exit 0; }\n'
        'echo "bwrap: No permissions to create a new namespace" >&2\nexit 1',
    )
    [refused] = check_runtime(BwrapRuntimeConfig(executable=str(refusing)), here=True, timeout=5)
    assert refused.status == "FAIL"
    assert refused.detail.endswith("No permissions to create a new namespace")
    assert "user namespaces" in refused.fix


def test_charliecloud_answers_and_its_default_image_is_checked(tmp_path: Path) -> None:
    """Against the real ch-run (deploy/dev/test.sh installs Charliecloud)."""
    [ok] = check_runtime(CharliecloudRuntimeConfig(), here=True, timeout=30)
    assert ok.status == "ok" and ok.detail.startswith("ch-run 0."), ok.detail
    bare = tmp_path / "image"
    bare.mkdir()
    [warned] = check_runtime(
        CharliecloudRuntimeConfig(default_image=str(bare)), here=False, timeout=30
    )
    assert warned.status == "warn" and f"mkdir -p {bare}/srv/workDir" in warned.fix
    [missing] = check_runtime(
        CharliecloudRuntimeConfig(executable=str(tmp_path / "no-ch-run")), here=True, timeout=5
    )
    assert missing.status == "FAIL" and "charliecloud-runtime" in missing.fix


def test_apptainer_and_singularity_answer_their_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    shim(bindir, "apptainer", 'echo "apptainer version 1.3.4"')
    shim(bindir, "singularity", 'echo "FATAL: no config" >&2\nexit 255')
    monkeypatch.setenv("PATH", str(bindir))
    data = tmp_path / "data"
    data.mkdir()
    [ok] = check_runtime(ApptainerRuntimeConfig(binds=[f"{data}:/data"]), here=False, timeout=5)
    assert (ok.status, ok.detail.split(" (")[0]) == ("ok", "apptainer version 1.3.4")
    absent = ApptainerRuntimeConfig(binds=["/nowhere/datasets:/data"], default_image="/no/x.sif")
    [_, paths] = check_runtime(absent, here=False, timeout=5)
    assert (paths.status, paths.detail) == (
        "warn",
        "not found on this host: /nowhere/datasets, /no/x.sif",
    )
    [broken] = check_runtime(SingularityRuntimeConfig(), here=True, timeout=5)
    assert (broken.status, broken.detail) == ("FAIL", "singularity --version: FATAL: no config")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    [gone] = check_runtime(ApptainerRuntimeConfig(), here=False, timeout=5)
    assert (gone.status, gone.detail) == ("warn", "'apptainer' is not on PATH")


def test_network_isolation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert check_isolation(here=True).status == "ok"
    monkeypatch.setenv("PATH", str(tmp_path))
    here = check_isolation(here=True)
    assert here.status == "FAIL" and "'unshare' (util-linux) is not installed" in here.detail
    nodes = check_isolation(here=False)
    assert nodes.status == "warn" and nodes.detail.startswith("on this login node:")


# -- the api ------------------------------------------------------------------------------------


@dataclass
class StubStore:
    """What the api app needs to authenticate, recording every write it is asked for."""

    writes: list[str] = field(default_factory=list)
    tokens: Any = None
    sites: Any = None
    jobs: Any = None

    def __post_init__(self) -> None:
        known = {
            hash_secret(EDGE_TOKEN): Token(id="t1", owner="ops", scopes=["edge:hpc-a"], hash="h"),
            hash_secret(OTHER_SITE_TOKEN): Token(
                id="t2", owner="ops", scopes=["edge:hpc-b"], hash="h"
            ),
            hash_secret(USER_TOKEN): Token(id="t3", owner="alice", scopes=["user"], hash="h"),
        }

        async def find_by_hash(digest: str) -> Token | None:
            return known.get(digest)

        async def heartbeat(site: Site) -> None:
            self.writes.append(f"heartbeat {site.id} free={site.free_slots}")

        async def lease_next(*args: object, **kwargs: object) -> None:
            self.writes.append("lease")

        self.tokens = SimpleNamespace(find_by_hash=find_by_hash)
        self.sites = SimpleNamespace(heartbeat=heartbeat)
        self.jobs = SimpleNamespace(lease_next=lease_next)


@dataclass
class Api:
    url: str
    store: StubStore
    published: list[object]


@pytest.fixture
def api() -> Iterator[Api]:
    store = StubStore()
    published: list[object] = []

    async def publish(message: object) -> None:
        published.append(message)

    ctx = SimpleNamespace(store=store, bus=SimpleNamespace(publish=publish), artifacts=None)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ctx, ApiSettings(dev_mode=True)),  # type: ignore[arg-type]
            log_level="warning",
            lifespan="off",
            ws="none",
        )
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        yield Api(f"http://127.0.0.1:{sock.getsockname()[1]}", store, published)
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def site_config(tmp_path: Path, url: str, token: str = EDGE_TOKEN, **extra: Any) -> SiteConfig:
    return SiteConfig.model_validate(
        {"site": "hpc-a", "api_url": url, "token": token, "root": str(tmp_path), **extra}
    )


def test_the_default_token_check_records_nothing(tmp_path: Path, api: Api) -> None:
    health, token = check_api(site_config(tmp_path, api.url), heartbeat=False, timeout=10)
    assert (health.status, token.status) == ("ok", "ok"), (health, token)
    assert health.detail.startswith(f"{api.url}/healthz answered in ")
    assert "not checked: that it is for site hpc-a" in token.detail
    assert (api.store.writes, api.published) == ([], [])


def test_a_wrong_token_fails_and_says_how_to_make_one(tmp_path: Path, api: Api) -> None:
    for secret, answer in [
        ("hpo_unknown", "401: invalid, expired or revoked token"),
        (USER_TOKEN, "403: this token is not an edge token"),
    ]:
        _, token = check_api(site_config(tmp_path, api.url, secret), heartbeat=False, timeout=10)
        assert (token.status, token.detail) == ("FAIL", answer)
        assert "hpo-services admin create-token --owner ops --scope edge:hpc-a" in token.fix
    assert api.store.writes == []


def test_heartbeat_checks_the_site_by_sending_one(tmp_path: Path, api: Api) -> None:
    other = site_config(tmp_path, api.url, OTHER_SITE_TOKEN)
    _, unchecked = check_api(other, heartbeat=False, timeout=10)
    assert unchecked.status == "ok"  # the limit of the side-effect-free probe
    _, refused = check_api(other, heartbeat=True, timeout=10)
    assert (refused.status, refused.detail) == ("FAIL", "403: this token is not for site hpc-a")
    assert api.store.writes == []
    _, sent = check_api(site_config(tmp_path, api.url), heartbeat=True, timeout=10)
    assert sent.status == "ok" and sent.detail.startswith("valid for site hpc-a")
    assert api.store.writes == ["heartbeat hpc-a free=0"]


def test_an_unreachable_api_fails_and_skips_the_token(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    health, token = check_api(site_config(tmp_path, url), heartbeat=False, timeout=5)
    assert health.status == "FAIL" and "ConnectError" in health.detail
    assert "check api_url" in health.fix
    assert (token.status, token.detail) == ("warn", "not checked: no api")


@pytest.fixture
def plain_http(tmp_path: Path) -> Iterator[str]:
    """A web server that is not the api (no /healthz)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_server_that_is_not_the_api_or_does_not_speak_tls(
    tmp_path: Path, plain_http: str
) -> None:
    health, _ = check_api(site_config(tmp_path, f"http://{plain_http}"), heartbeat=False, timeout=5)
    assert health.status == "FAIL"
    assert health.detail.startswith(f"GET http://{plain_http}/healthz: 404 ")
    tls, _ = check_api(site_config(tmp_path, f"https://{plain_http}"), heartbeat=False, timeout=5)
    assert tls.status == "FAIL" and "SSL" in tls.detail and "verify_tls" in tls.fix


def test_verify_tls_with_a_missing_ca_bundle(tmp_path: Path) -> None:
    config = site_config(tmp_path, "https://hpo.example.org", verify_tls=str(tmp_path / "ca.pem"))
    [result] = check_api(config, heartbeat=False, timeout=5)
    assert result.status == "FAIL" and "cannot load the CA bundle" in result.detail


def test_the_verify_tls_setting_reaches_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plain_http: str
) -> None:
    seen: list[object] = []
    real = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        seen.append(kwargs["verify"])
        return real(**kwargs)

    monkeypatch.setattr(httpx, "Client", client)
    check_api(
        site_config(tmp_path, f"http://{plain_http}", verify_tls=False), heartbeat=False, timeout=5
    )
    assert seen == [False]


# -- all checks and the command --------------------------------------------------------------


def test_all_checks_pass_on_a_good_local_site(
    tmp_path: Path, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "LOW_SPACE", 0)  # whatever this machine's disk holds
    path = write_config(tmp_path, api.url, isolation="isolate_network = true")
    results = run_checks(path, timeout=30)
    assert [(r.name, r.status) for r in results] == [
        ("config", "ok"),
        ("token file", "ok"),
        ("batch (local)", "ok"),
        ("edge root", "ok"),
        ("runtime (process)", "ok"),
        ("network isolation", "ok"),
        ("api", "ok"),
        ("token", "ok"),
    ]
    result = CliRunner().invoke(app, ["doctor", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "8 checks: 0 failed, 0 warning(s)" in result.output


def test_the_command_exits_non_zero_on_a_failure(tmp_path: Path) -> None:
    path = write_config(tmp_path)  # the api port is closed
    result = CliRunner().invoke(app, ["doctor", "-c", str(path), "--timeout", "5"])
    assert result.exit_code == 1
    assert re.search(
        r"^FAIL  api: GET http://127\.0\.0\.1:\d+/healthz: ConnectError", result.output, re.M
    )
    assert "      fix: check api_url" in result.output


def test_the_command_reports_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('site = "a"\napi_url = "http://x"\ntoken = "t"\nroot = "r"\nslots = 0\n')
    result = CliRunner().invoke(app, ["doctor", "--config", str(path)])
    assert result.exit_code == 1
    assert "FAIL  config: slots: Input should be greater than or equal to 1" in result.output
    assert "Traceback" not in result.output


# -- the site configs in docs/edge.md ----------------------------------------------------------


def doc_configs() -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```$", DOCS.read_text(), re.M | re.S)


def test_the_docs_site_configs_are_valid(tmp_path: Path) -> None:
    blocks = doc_configs()
    assert len(blocks) >= 2
    configs = []
    for index, block in enumerate(blocks):
        path = tmp_path / f"site{index}.toml"
        path.write_text(block)
        results, config = check_config(path)
        assert config is not None, f"block {index} of {DOCS.name}: {[r.detail for r in results]}"
        configs.append(config)
    slurm = [c for c in configs if isinstance(c.batch, SlurmBatchConfig)]
    lsf = [c for c in configs if isinstance(c.batch, LsfBatchConfig)]
    assert slurm and lsf
    assert isinstance(lsf[0].batch, LsfBatchConfig)
    # the full example (the others show one table each beside a minimal site)
    full = next(c for c in slurm if c.runtime.kind == "apptainer")
    assert isinstance(full.batch, SlurmBatchConfig)
    assert full.batch.gpus_per_node > 0 and full.batch.setup
    assert lsf[0].arch == "ppc64le"
    assert lsf[0].batch.launcher[0] == "jsrun" and "-g6" in lsf[0].batch.launcher
    assert lsf[0].runtime.kind in ("apptainer", "singularity")
    grid = [c for c in configs if isinstance(c.batch, SgeBatchConfig)]
    assert grid and grid[0].runtime.kind == "charliecloud"
