"""`torchship deploy` up to the cluster boundary: real kubectl against a loopback Kubernetes API server.

The server (tests/fake_kube_api.py) speaks the API's discovery, server-side apply, watch and patch
formats; the rollout verdicts (ok, progress deadline exceeded) and the undo are kubectl's own."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from deploy_helpers import DEMO_SPEC, spec_file
from fake_kube_api import FakeKubeAPI
from torchship.cli import app
from torchship.deploy.errors import DeployError
from torchship.deploy.rollout import smoke_request
from torchship.serving.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
runner = CliRunner()
NAME = "minilm-embeddings"
OLD_IMAGE = "torchship/minilm-embeddings:0.9.0"
# The demo spec names no namespace: its objects go to the model's own, not the context's ("models").
NAMESPACE = NAME


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    def start(scenario: str, previous: bool = False) -> FakeKubeAPI:
        api = FakeKubeAPI(scenario).__enter__()
        started.append(api)
        api.add_namespace(NAMESPACE)
        if previous:
            api.seed_previous_revision(NAMESPACE, NAME, OLD_IMAGE)
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
        return api

    started: list[FakeKubeAPI] = []
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    yield start
    for api in started:
        api.__exit__(None, None, None)


def deploy(*args: str):
    return runner.invoke(app, ["deploy", str(DEMO_SPEC), *args])


def applies(api: FakeKubeAPI) -> list[str]:
    return [
        path
        for method, path, kind in api.requests
        if method == "PATCH" and kind == "application/apply-patch+yaml"
    ]


def image_of(api: FakeKubeAPI) -> str:
    return api.objects[("deployments", NAMESPACE, NAME)]["spec"]["template"]["spec"]["containers"][0]["image"]


def test_healthy_rollout_applies_every_object_server_side(cluster):
    api = cluster("healthy")
    result = deploy("--no-smoke")
    assert result.exit_code == 0, result.output
    assert "rolled out deployment/minilm-embeddings" in result.output
    assert "deployment.apps/minilm-embeddings serverside-applied" in result.output
    patches = applies(api)
    assert len(patches) == 7
    assert all(
        "fieldManager=torchship" in p and "fieldValidation=Strict" in p and "dryRun" not in p for p in patches
    )
    assert image_of(api) == "torchship/minilm-embeddings:1.0.0"
    assert any("watch=true" in path for _, path, _ in api.requests)  # kubectl rollout status watched it


def test_stuck_rollout_is_undone_with_the_pod_events(cluster):
    api = cluster("stuck", previous=True)
    result = deploy("--no-smoke")
    assert result.exit_code == 5, result.output
    assert 'deployment "minilm-embeddings" exceeded its progress deadline' in result.output
    assert "rolled back to revision 1" in result.output
    assert "Startup probe failed: model minilm-embeddings has no READY worker (x42)" in result.output
    assert image_of(api) == OLD_IMAGE  # kubectl rollout undo put the previous template back


def test_stuck_first_rollout_says_there_is_nothing_to_roll_back_to(cluster):
    api = cluster("stuck")
    result = deploy("--no-smoke")
    assert result.exit_code == 5
    assert (
        "first rollout of deployment/minilm-embeddings, so there is nothing to roll back to" in result.output
    )
    assert not [r for r in api.requests if r[2] == "application/json-patch+json"]


def test_failed_smoke_request_rolls_back(cluster):
    api = cluster("healthy", previous=True)
    result = deploy()  # smoke on: this API server has no kubelet, so kubectl port-forward fails
    assert result.exit_code == 5, result.output
    assert "smoke request failed: kubectl port-forward failed: " in result.output
    assert "rolled back to revision 1" in result.output
    assert image_of(api) == OLD_IMAGE
    assert any(m == "POST" and "/portforward" in p for m, p, _ in api.requests)


def test_dry_run_prints_the_server_side_diff_and_changes_nothing(cluster):
    api = cluster("healthy")
    result = deploy("--dry-run")
    assert result.exit_code == 0, result.output
    assert "+kind: Deployment" in result.output and "+  progressDeadlineSeconds: 335" in result.output
    assert all("dryRun=All" in p for p in applies(api)) and applies(api)
    assert ("deployments", NAMESPACE, NAME) not in api.objects


def test_env_deploys_into_the_environments_namespace_with_its_replica_bounds(cluster, tmp_path):
    api = cluster("healthy")
    api.add_namespace("ml-production")
    (tmp_path / "torchship.toml").write_text(
        '[environments.production]\nnamespace = "ml-production"\nreplicas = 3\nmax_replicas = 9\n'
    )
    result = runner.invoke(app, ["deploy", str(spec_file(tmp_path)), "--env", "production", "--no-smoke"])
    assert result.exit_code == 0, result.output
    assert ("deployments", "ml-production", "tiny-embeddings") in api.objects
    hpa = api.objects[("horizontalpodautoscalers", "ml-production", "tiny-embeddings")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
    assert not [key for key in api.objects if key[1] == NAMESPACE]


def test_dry_run_without_a_cluster_lists_what_would_be_applied(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(unreachable_kubeconfig(tmp_path)))
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    result = deploy("--dry-run")
    assert result.exit_code == 0, result.output
    assert "cluster not reachable, so no diff" in result.output
    assert (
        "deployment/minilm-embeddings" in result.output and "networkpolicy/minilm-embeddings" in result.output
    )


def unreachable_kubeconfig(tmp_path):
    api = FakeKubeAPI()  # never started: its port is closed
    path = api.kubeconfig(tmp_path / "kubeconfig")
    api.server.server_close()
    return path


def test_unreachable_cluster_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(unreachable_kubeconfig(tmp_path)))
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    result = deploy()
    assert result.exit_code == 1
    assert "error: no reachable Kubernetes cluster (context (current)" in result.output
    assert "was refused" in result.output and "hint: Check `kubectl config current-context`" in result.output


def test_unknown_context_is_a_clear_error(cluster):
    cluster("healthy")
    result = deploy("--context", "prod-eu")
    assert result.exit_code == 1
    assert "no reachable Kubernetes cluster (context prod-eu" in result.output and "prod-eu" in result.output


def test_missing_kubectl_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = deploy("--dry-run")
    assert result.exit_code == 1
    assert "error: kubectl is not installed" in result.output


def test_manifests_failing_the_checks_are_never_applied(cluster, tmp_path):
    api = cluster("healthy")
    spec = spec_file(tmp_path, deploy="{replicas: 1}")
    result = runner.invoke(app, ["deploy", str(spec), "--no-smoke"])
    assert result.exit_code == 4
    assert "rendered manifests fail: replicas" in result.output
    assert api.requests == []


class _Model(BaseHTTPRequestHandler):
    status = 200

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps([0.1, 0.2] if self.status == 200 else {"code": self.status}).encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status", [200, 503])
def test_smoke_request_needs_a_200_with_json(status):
    handler = type("Model", (_Model,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        if status == 200:
            assert smoke_request(url, "m", "hello") == "POST /predictions/m → 200 (10 bytes)"
        else:
            with pytest.raises(DeployError, match="answered 503"):
                smoke_request(url, "m", "hello")
    finally:
        server.shutdown()
        server.server_close()
