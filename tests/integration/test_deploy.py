"""What can be checked of deploy/ on a machine with no container engine and no cluster:
the YAML parses, the compose file is valid by the Compose specification (Debian's
docker-compose validates it client-side), the Helm chart renders with Helm's own engine
and its manifests are valid Kubernetes objects (by Kubernetes' published schemas), the
systemd units pass ``systemd-analyze verify``, and the Grafana dashboard names only
metrics the services export. What cannot be checked here (no engine, no cluster) is
said in docs/operations.md."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from edge.metrics import EdgeMetrics
from shared.ops.metrics import CentralMetrics, StateGauges

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "hpo-relay"
SERVICES = ("api", "steering", "jobbuilder", "broker", "storage", "monitor")
KUBERNETES = "1.30"
SECRETS = {
    "busUrl": "amqp://hpo:pw@rabbitmq:5672/",
    "mongoUrl": "mongodb://mongodb:27017/hpo",
    "artifactsUrl": "s3://ak:sk@minio:9000/hpo-artifacts?secure=false",
    "signingKey": "0" * 64,
}


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is missing: apt-get install -y {package} (deploy/dev/test.sh does it)",
            pytrace=False,
        )
    return path


def test_every_yaml_file_parses() -> None:
    files = [
        p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and "templates" not in p.parts
    ]
    assert len(files) >= 6
    for path in files:
        assert list(yaml.safe_load_all(path.read_text())), path


def compose_config(workdir: Path, compose: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` on a copy of deploy/, with env.example as its .env."""
    copy = workdir / "deploy"
    shutil.copytree(DEPLOY, copy)
    (copy / "compose" / "compose.yaml").write_text(compose)
    shutil.copy(copy / "compose" / "env.example", copy / "compose" / ".env")
    return subprocess.run(
        [tool("docker-compose", "docker-compose"), "-f", "compose.yaml", "config"],
        cwd=copy / "compose",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_is_valid_by_the_compose_spec(tmp_path: Path) -> None:
    source = (DEPLOY / "compose" / "compose.yaml").read_text()
    done = compose_config(tmp_path / "ok", source)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert set(services) == {*SERVICES, "rabbitmq", "mongodb", "minio", "prometheus", "grafana"}
    for name in SERVICES:
        env = services[name]["environment"]
        assert services[name]["command"] == ["run", name]
        assert env["HPO_BUS_URL"].startswith("amqp://") and env["HPO_OPS_PORT"] == "9100"
        assert env["HPO_SIGNING_KEY"] == "change-me-to-64-hex-characters"  # from .env
        assert set(services[name]["depends_on"]) == {"rabbitmq", "mongodb", "minio"}
    assert "HPO_MINIO_ADMIN_URL" in services["storage"]["environment"]
    scraped = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    targets = scraped["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(targets) == sorted(f"{name}:9100" for name in SERVICES)
    # the validator is not a rubber stamp: a misspelt key is refused
    broken = compose_config(tmp_path / "broken", source.replace("restart:", "restrat:", 1))
    assert broken.returncode != 0
    assert "restrat" in broken.stderr


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name="demo", namespace="hpo")
    documents = []
    for text in manifests.values():
        documents += [d for d in yaml.safe_load_all(text) if d]
    return documents


def test_helm_chart_lints_and_renders_valid_kubernetes_objects() -> None:
    import helm_python as helm

    lint = helm.lint(str(CHART))
    assert lint["errors"] == [], lint
    documents = render({"secrets": SECRETS, "ingress": {"enabled": True}})
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["Deployment"] * 6 + ["Ingress", "Secret"] + ["Service"] * 6
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    for name in SERVICES:
        spec = deployments[f"demo-hpo-relay-{name}"]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        assert container["args"] == ["run", name]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
        assert container["envFrom"] == [{"secretRef": {"name": "demo-hpo-relay-secrets"}}]
        assert spec["securityContext"]["runAsNonRoot"] is True
    secret = next(d for d in documents if d["kind"] == "Secret")
    assert set(secret["stringData"]) == {
        "HPO_BUS_URL",
        "HPO_MONGO_URL",
        "HPO_ARTIFACTS_URL",
        "HPO_SIGNING_KEY",
    }


def test_helm_chart_scales_and_takes_an_existing_secret() -> None:
    documents = render({"existingSecret": "hpo-prod", "services": {"steering": {"replicas": 8}}})
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)
    assert not [d for d in documents if d["kind"] == "Secret"]
    steering = next(
        d
        for d in documents
        if d["metadata"]["name"] == "demo-hpo-relay-steering" and d["kind"] == "Deployment"
    )
    assert steering["spec"]["replicas"] == 8
    container = steering["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "hpo-prod"}}]


def test_helm_chart_without_secrets_says_what_is_missing() -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmError, match=r"secrets.busUrl \(or existingSecret\) is required"):
        render({})


# Keys systemd 254 added; Debian 12's systemd 252 warns about them (the unit says so).
NEWER_SYSTEMD = ("RestartSteps", "RestartMaxDelaySec")


@pytest.mark.parametrize(
    ("unit", "verify_as", "binary"),
    [
        ("hpo-services@.service", "hpo-services@api.service", "/opt/hpo-relay/bin/hpo-services"),
        ("hpo-edge-harvester.service", "hpo-edge-harvester.service", "%h/.local/bin/hpo-edge"),
    ],
)
def test_systemd_units_verify(unit: str, verify_as: str, binary: str, tmp_path: Path) -> None:
    """Verified with the command pointed at this checkout's (verify checks it exists)."""
    installed = Path(sys.executable).parent / Path(binary).name
    assert installed.exists()
    text = (DEPLOY / "systemd" / unit).read_text()
    assert binary in text
    (tmp_path / unit).write_text(text.replace(binary, str(installed)))
    done = subprocess.run(
        [tool("systemd-analyze", "systemd"), "verify", "--man=no", str(tmp_path / verify_as)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    complaints = [
        line
        for line in done.stderr.splitlines()
        if str(tmp_path) in line and not any(f"'{key}'" in line for key in NEWER_SYSTEMD)
    ]
    assert complaints == []


def exported_metric_names() -> set[str]:
    registry = CollectorRegistry()
    CentralMetrics(registry)
    StateGauges(registry)
    edge = EdgeMetrics("s", registry)
    edge.watch(lambda: 0, lambda: 0, 1)
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names | {f"{n}_bucket" for n in names} | {f"{n}_total" for n in names}


def dashboard_expressions() -> list[str]:
    """(Each is also run by the real Prometheus in test_prometheus_scrape.py.)"""
    dashboard = json.loads((DEPLOY / "grafana" / "hpo-relay.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_grafana_dashboard_names_only_exported_metrics() -> None:
    exported = exported_metric_names()
    used = {name for expr in dashboard_expressions() for name in re.findall(r"\bhpo_\w+", expr)}
    assert len(used) >= 15
    assert used - exported == set()
