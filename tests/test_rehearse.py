"""`torchship rehearse`: what the rehearsal changes in the rendered manifests (fast, no podman), and the
demo model played end to end by `podman kube play` with the image from image.json (marker e2e)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from deploy_helpers import CONTAINER_TOOLS_INSTALLER, DEMO_SPEC, REPO, demo, write_image_record
from torchship.cli import app
from torchship.deploy.prometheus_local import prometheus_binary
from torchship.deploy.rehearse import PORT_KEYS, REHEARSAL_ANNOTATION, rehearsal_documents
from torchship.spec import load_spec

runner = CliRunner()
PORTS = dict(zip(PORT_KEYS, (18080, 18081, 18082, 17070, 17071), strict=True))


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _flatten(item, f"{prefix}/{i}")
    else:
        yield prefix, value


def test_rehearsal_changes_only_replicas_image_ports_and_bind_address():
    _, rendered = demo()
    config, deployment = rehearsal_documents(rendered, "localhost/torchship/minilm-embeddings:1.0.0", PORTS)
    originals = {m.kind: m.doc for m in rendered.manifests}
    changed = {
        path
        for path, value in _flatten(deployment)
        if dict(_flatten(originals["Deployment"])).get(path) != value
    } | {path for path in dict(_flatten(originals["Deployment"])) if path not in dict(_flatten(deployment))}
    container = "/spec/template/spec/containers/0"
    assert changed == {
        "/spec/replicas",
        f"{container}/image",
        f"{container}/imagePullPolicy",
        f"/spec/template/metadata/annotations/{REHEARSAL_ANNOTATION}",
        *(f"{container}/ports/{i}/{k}" for i in (0, 1) for k in ("name", "containerPort", "protocol")),
    }
    assert deployment["spec"]["replicas"] == 1
    sc = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert sc == originals["Deployment"]["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    data, before = config["data"], originals["ConfigMap"]["data"]
    assert {k for k in data if data[k] != before[k]} == {*PORTS, "TORCHSHIP_BIND_ADDRESS"}
    assert data["TORCHSHIP_BIND_ADDRESS"] == "127.0.0.1" and data["TORCHSHIP_INFERENCE_PORT"] == "18080"


def test_rehearse_without_an_image_says_how_to_build_one(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    result = runner.invoke(app, ["rehearse", str(DEMO_SPEC)])
    assert result.exit_code == 1
    assert "error: no image built for minilm-embeddings 1.0.0" in result.output
    assert "hint: Build it first: torchship image" in result.output


def test_rehearse_without_podman_is_a_clear_error(tmp_path, monkeypatch):
    write_image_record(tmp_path / "outputs", load_spec(DEMO_SPEC))
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("PATH", str(tmp_path))
    result = runner.invoke(app, ["rehearse", str(DEMO_SPEC)])
    assert result.exit_code == 1
    assert "error: podman is not installed" in result.output


# The podman storage root: by default the image tests' own (torchship.image.local's), so the demo image
# built there is reused. A private root means building it again, and with vfs storage every layer is a
# full copy: measured here, one build of the demo image took over 32 GB before it finished.
# kube play adds one container there, which kube down removes.
REHEARSE_ROOT = os.environ.get("TORCHSHIP_REHEARSE_CONTAINERS_ROOT")
# Stage outputs of our own: the image tests' runs share that root's outputs/ and would re-run the stages
# under us (measured: "stage 'verify' needs the outputs of stage 'fetch', which are out of date").
REHEARSE_OUTPUTS = Path(os.environ.get("TORCHSHIP_REHEARSE_OUTPUTS", "/var/tmp/torchship-rehearse-outputs"))


@pytest.fixture(scope="module")
def demo_image_built():
    """The demo model's serving image (built once by the image work's helper), or a skip saying why not."""
    local = pytest.importorskip(
        "torchship.image.local", reason="the image work (torchship.image) is not here"
    )
    containers = local.LocalContainers(Path(REHEARSE_ROOT)) if REHEARSE_ROOT else local.LocalContainers()
    try:
        containers.require(CONTAINER_TOOLS_INSTALLER)
    except local.ContainersUnavailable as exc:
        pytest.skip(f"containers cannot run here: {exc}")
    if shutil.which("catatonit") is None:
        pytest.skip(
            "podman kube play needs catatonit for the pod's pause process (apt-get install catatonit)"
        )
    record = local.demo_image(containers, DEMO_SPEC, outputs_dir=REHEARSE_OUTPUTS)
    return containers, record


def _pods(containers) -> list[str]:
    listed = containers.podman("pod", "ls", "--format", "{{.Name}}")
    return listed.stdout.split()


@pytest.mark.e2e
def test_demo_model_rehearsed_end_to_end_with_parity(demo_image_built, monkeypatch):
    containers, record = demo_image_built
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(REHEARSE_OUTPUTS))
    with containers.activated():
        result = runner.invoke(app, ["rehearse", str(DEMO_SPEC)])
        assert result.exit_code == 0, result.output
        assert "rehearsal ok: ready in " in result.output and "served parity ok" in result.output
        assert f"podman kube play minilm-embeddings ({record.reference})" in result.output
        if prometheus_binary() is not None:
            # A real Prometheus scraped the pod's metrics port: 3 good requests, 2 with an unknown key and
            # one malformed body, counted by the rehearsal, arrived as exactly those counts.
            metrics = next(line for line in result.output.splitlines() if line.startswith("metrics ok: "))
            assert "Prometheus scraped 127.0.0.1:" in metrics
            assert "{200 ok 3, 400 bad_schema 2, 400 malformed_json 1} arrived as sent" in metrics
            assert "ts_inference_requests_total +6" in metrics
        assert "minilm-embeddings-pod-0" not in _pods(containers)  # torn down


@pytest.mark.e2e
def test_rehearse_keep_serves_until_ctrl_c_then_tears_down(demo_image_built):
    containers, _ = demo_image_built
    env = {
        **containers.env(),
        "TORCHSHIP_OUTPUTS_DIR": str(REHEARSE_OUTPUTS),
        "PYTHONPATH": str(REPO / "src"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchship.cli", "rehearse", str(DEMO_SPEC), "--keep"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        url = None
        for line in proc.stdout:
            if line.startswith("serving "):
                url = line.split(" at ", 1)[1].split()[0]
                break
        assert url is not None, "rehearse --keep never printed its URL"
        answer = httpx.post(url, json={"text": "A sentence to embed"}, timeout=60)
        assert answer.status_code == 200 and len(answer.json()) == 384
        assert "minilm-embeddings-pod-0" in _pods(containers)
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=180)[0]
        assert proc.returncode == 0, rest
        assert "torn down" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "minilm-embeddings-pod-0" not in _pods(containers)
