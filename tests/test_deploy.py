"""Deployment artifacts: every rendered manifest validates against the Kubernetes schemas offline."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.gateway_process import ROOT, free_port

DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.30.0"


def render(path: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to render the manifests; ./scripts/test.sh installs it"
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


WITH_REDIS = [
    "ConfigMap",
    "Deployment",
    "Deployment",
    "HorizontalPodAutoscaler",
    "Ingress",
    "PodDisruptionBudget",
    "Service",
    "Service",
    "StatefulSet",
]
# The base's kinds less its Redis (a StatefulSet and a Service).
WITHOUT_REDIS = [kind for kind in WITH_REDIS if kind != "StatefulSet"]
WITHOUT_REDIS.remove("Service")
EXTERNAL_REDIS = DEPLOY / "kubernetes" / "overlays" / "external-redis"


@pytest.mark.parametrize(
    ("overlay", "expected_kinds"),
    [
        ("base", WITH_REDIS),
        ("overlays/custom-metrics", WITH_REDIS),
        ("overlays/external-redis", WITHOUT_REDIS),
    ],
)
def test_kustomization_renders_and_every_manifest_validates(overlay: str, expected_kinds: list[str]) -> None:
    documents = render(DEPLOY / "kubernetes" / overlay)
    kinds = sorted(doc["kind"] for doc in documents)
    assert kinds == sorted(expected_kinds)
    for doc in documents:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_external_redis_overlay_takes_the_url_and_password_from_a_secret() -> None:
    documents = render(EXTERNAL_REDIS)
    assert "redis://redis:6379" not in yaml.safe_dump_all(documents)
    assert not [doc for doc in documents if doc["metadata"]["name"] == "redis"]
    deployments = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Deployment"}
    assert deployments.keys() == {"aggregator", "aggregator-worker"}
    for name, deployment in deployments.items():
        env = {entry["name"]: entry for entry in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["AGGREGATOR_REDIS_URL"] == {
            "name": "AGGREGATOR_REDIS_URL",
            "valueFrom": {"secretKeyRef": {"name": "aggregator-redis", "key": "url"}},
        }, name
        assert env["AGGREGATOR_REDIS_PASSWORD"] == {
            "name": "AGGREGATOR_REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "aggregator-redis", "key": "password", "optional": True}},
        }, name


def test_the_external_redis_example_secret_is_valid_and_shows_every_url_form() -> None:
    path = EXTERNAL_REDIS / "secret.example.yaml"
    kustomization = yaml.safe_load((EXTERNAL_REDIS / "kustomization.yaml").read_text())
    assert path.name not in kustomization["resources"], "the example Secret must not be applied"
    text = path.read_text()
    secret = yaml.safe_load(text)
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "aggregator-redis"
    assert {"url", "password"} <= secret["stringData"].keys()
    urls = re.findall(r"^[#\s]*url: (\S+)$", text, flags=re.MULTILINE)
    assert secret["stringData"]["url"] in urls
    schemes = {url.split("://", 1)[0] for url in urls}
    assert schemes >= {"redis+sentinel", "redis+cluster"}, schemes
    assert schemes & {"redis", "rediss"}, schemes


def test_pods_run_non_root_with_probes_limits_and_graceful_stop() -> None:
    documents = render(DEPLOY / "kubernetes" / "base")
    deployments = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Deployment"}
    aggregator = deployments["aggregator"]["spec"]["template"]["spec"]
    container = aggregator["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= container["resources"].keys()
    assert aggregator["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert aggregator["terminationGracePeriodSeconds"] >= 20
    assert deployments["aggregator-worker"]["spec"]["replicas"] == 2
    hpa = next(doc for doc in documents if doc["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    ingress = next(doc for doc in documents if doc["kind"] == "Ingress")
    assert "mcp_session_id" in ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/upstream-hash-by"]


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, flags=re.MULTILINE)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER\s+10001", runtime, flags=re.MULTILINE)
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime
    assert not re.search(r"apt-get install|gcc|build-essential", runtime)


def test_haproxy_example_is_valid() -> None:
    haproxy = shutil.which("haproxy")
    assert haproxy, "haproxy is needed; ./scripts/test.sh installs it"
    result = subprocess.run(
        [haproxy, "-c", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_the_readme_s_by_hand_cluster_and_the_haproxy_example_agree() -> None:
    readme = (ROOT / "README.md").read_text()
    by_hand = readme[readme.index("By hand, the same is:") :]
    by_hand = by_hand[: by_hand.index("```", by_hand.index("```") + 3)]
    replica_ports = {int(port) for port in re.findall(r"aggregator serve .*--port (\d+)", by_hand)}
    cluster = readme[readme.index("## Run a cluster") :]
    client_port = int(re.findall(r"connect clients to `http://127\.0\.0\.1:(\d+)/mcp`", cluster)[0])
    haproxy = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    servers = {int(port) for port in re.findall(r"^\s*server \S+ 127\.0\.0\.1:(\d+)", haproxy, re.M)}
    assert replica_ports and servers == replica_ports
    assert re.search(rf"^\s*bind 127\.0\.0\.1:{client_port}$", haproxy, re.M)
    configs = set(re.findall(r"-c (\S+)", by_hand))
    assert all((ROOT / config).exists() for config in configs), configs


def test_the_local_cluster_launcher_prints_every_url_and_stops_on_sigterm() -> None:
    port = free_port()
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest.cluster",
            "-c",
            "examples/cluster.yaml",
            "--replicas",
            "2",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert launcher.stdout is not None
        lines = []
        for line in launcher.stdout:
            lines.append(line)
            if line.startswith("ready:"):
                break
        output = "".join(lines)
        assert f"connect MCP clients to http://127.0.0.1:{port}/mcp" in output, output
        assert len(re.findall(r"replica \d: http://127\.0\.0\.1:\d+/mcp", output)) == 2, output
    finally:
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(30) == 0
