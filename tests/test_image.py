"""The image's parts that need no container: the baked config, the entrypoint's addresses, the probe against
a real HTTP server, the build context, the packaged Dockerfiles' promises, and the command's refusals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar
from xml.etree import ElementTree

import pytest

from tiny_models import write_spec
from torchship.image.builders import find_builder
from torchship.image.context import RUNTIME_DIR, WRITABLE_PATHS, prepare_context, render_config
from torchship.image.dockerfile import CPU, NEURON, render_dockerfile
from torchship.image.errors import BuilderNotFound, ImageBuildError
from torchship.image.labels import image_labels
from torchship.image.runtime.settings import ImageEnv
from torchship.image.wheelhouse import ensure_wheelhouse, missing_wheels, pinned_names
from torchship.serving.ports import free_port
from torchship.spec import load_spec

REPO = Path(__file__).resolve().parent.parent
# The Dockerfiles as every build context gets them: rendered from the templates inside the package.
DOCKERFILE = render_dockerfile(CPU)
NEURON_DOCKERFILE = render_dockerfile(NEURON)


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


@pytest.fixture
def spec(tmp_path, tiny_model_dir):
    path = write_spec(tmp_path / "spec", str(tiny_model_dir), name="tiny-image")
    # Limits other than the defaults, so the config can only have them from the spec.
    path.write_text(
        path.read_text().replace("serve: {", "serve: {max_body_bytes: 4096, max_response_bytes: 70000, ")
    )
    spec = load_spec(path)
    assert (spec.serve.max_body_bytes, spec.serve.max_response_bytes) == (4096, 70000)
    return spec


def test_baked_config_is_hardened_and_takes_its_limits_from_the_spec(spec):
    config = properties(render_config(spec, "1g"))
    assert config["enable_model_api"] == "false"
    assert config["disable_token_authorization"] == "true"  # deliberate: see the README's Ship section
    assert config["enable_envvars_config"] == "false"  # TS_* variables cannot loosen the hardening
    assert config["allowed_urls"] == "^file:///opt/torchship/model-store/.*"
    assert config["workflow_store"] == config["model_store"] == "/opt/torchship/model-store"
    assert config["max_request_size"] == str(spec.serve.max_body_bytes)
    assert config["max_response_size"] == str(spec.serve.max_response_bytes)
    assert config["default_response_timeout"] == str(spec.serve.response_timeout_s)
    assert not any(key.endswith("_address") for key in config)  # the entrypoint adds them from the env
    # Prometheus' format on the metrics port, the metrics declared in the file beside the config.
    assert (config["metrics_mode"], config["metrics_config"]) == ("prometheus", "/opt/torchship/metrics.yaml")


def test_management_and_grpc_stay_on_loopback_whatever_the_environment_says():
    env = ImageEnv.from_environ(
        {"TORCHSHIP_MODEL_NAME": "m", "TORCHSHIP_INFERENCE_PORT": "9000", "TORCHSHIP_MANAGEMENT_PORT": "9001",
         "TORCHSHIP_METRICS_PORT": "9002", "TORCHSHIP_BIND_ADDRESS": "0.0.0.0"}
    )  # fmt: skip
    addresses = env.address_properties()
    assert addresses["inference_address"] == "http://0.0.0.0:9000"
    assert addresses["management_address"] == "http://127.0.0.1:9001"
    assert addresses["metrics_address"] == "http://0.0.0.0:9002"
    assert addresses["grpc_inference_address"] == addresses["grpc_management_address"] == "127.0.0.1"
    assert (addresses["grpc_inference_port"], addresses["grpc_management_port"]) == ("7070", "7071")
    assert env.local_address == "127.0.0.1"


def test_a_bad_port_in_the_environment_is_a_clear_error():
    with pytest.raises(SystemExit, match="TORCHSHIP_INFERENCE_PORT='80a' is not a TCP port"):
        ImageEnv.from_environ({"TORCHSHIP_INFERENCE_PORT": "80a"})


def test_entrypoint_config_replaces_addresses_and_keeps_the_hardening(tmp_path, spec, monkeypatch):
    baked = tmp_path / "baked.properties"
    baked.write_text(render_config(spec, "1g") + "management_address=http://0.0.0.0:1\n")
    monkeypatch.setenv("TORCHSHIP_CONFIG", str(baked))
    sys.path.insert(0, str(RUNTIME_DIR))
    try:
        import entrypoint  # the script as the image runs it (stdlib only, beside settings.py)

        entrypoint.BAKED_CONFIG = baked
        written = entrypoint.write_config(
            ImageEnv.from_environ({"TMPDIR": str(tmp_path), "TORCHSHIP_MANAGEMENT_PORT": "9101"})
        )
    finally:
        sys.path.remove(str(RUNTIME_DIR))
    config = written.read_text().splitlines()
    assert [line for line in config if line.startswith("management_address=")] == [
        "management_address=http://127.0.0.1:9101"
    ]
    assert "enable_model_api=false" in config and written.parent == tmp_path / "torchship"


class _FakeManagement(BaseHTTPRequestHandler):
    """TorchServe's answers, as recorded: /models/NAME lists workers; /ping answers Healthy."""

    workers: ClassVar[list[dict]] = []

    def do_GET(self):
        if self.path == "/models/demo":
            body, status = json.dumps([{"modelName": "demo", "workers": self.workers}]).encode(), 200
        elif self.path == "/ping":
            body, status = b'{"status": "Healthy"}', 200
        else:
            body, status = b'{"code": 404}', 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_torchserve():
    server = HTTPServer(("127.0.0.1", 0), _FakeManagement)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def _probe(kind: str, management: int, inference: int, model: str = "demo") -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCHSHIP_MODEL_NAME": model, "TORCHSHIP_MANAGEMENT_PORT": str(management),
           "TORCHSHIP_INFERENCE_PORT": str(inference), "TORCHSHIP_BIND_ADDRESS": "127.0.0.1"}  # fmt: skip
    return subprocess.run(
        [sys.executable, str(RUNTIME_DIR / "probe.py"), kind], env=env, capture_output=True, text=True
    )


def test_probe_ready_needs_a_ready_worker_of_the_model(fake_torchserve):
    _FakeManagement.workers = [{"id": "9000", "status": "UNLOADING"}]
    not_yet = _probe("ready", fake_torchserve, fake_torchserve)
    assert not_yet.returncode == 1 and "0/1 workers READY" in not_yet.stdout
    _FakeManagement.workers = [{"id": "9000", "status": "READY"}]
    assert _probe("ready", fake_torchserve, fake_torchserve).returncode == 0
    other_model = _probe("ready", fake_torchserve, fake_torchserve, model="other")
    assert other_model.returncode == 1 and "answered 404" in other_model.stdout


def test_probe_live_asks_ping_and_fails_when_nothing_listens(fake_torchserve):
    assert _probe("live", fake_torchserve, fake_torchserve).returncode == 0
    closed = free_port()
    refused = _probe("live", closed, closed)
    assert refused.returncode == 1 and "not ok" in refused.stdout
    assert _probe("bogus", closed, closed).returncode == 2


def _fake_wheelhouse(directory: Path) -> Path:
    directory.mkdir()
    for name in pinned_names(REPO / "src" / "torchship" / "locks" / "serve.txt"):
        (directory / f"{name}-0-py3-none-any.whl").write_bytes(b"wheel")
    return directory


def test_build_context_holds_exactly_what_the_dockerfile_copies(tmp_path, spec):
    mar = tmp_path / "tiny-image.mar"
    mar.write_bytes(b"archive")
    labels = image_labels(spec, "ab" * 32, "pass", "c0ffee")
    context = prepare_context(
        tmp_path / "ctx", spec, mar, _fake_wheelhouse(tmp_path / "wheels"), labels, "1g"
    )
    top = sorted(p.name for p in context.directory.iterdir())
    assert top == ["Dockerfile", "bin", "model", "requirements", "wheels"]
    model = context.directory / "model"
    assert sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file()) == [
        "config.properties",
        "image-labels.json",
        "log4j2.xml",
        "metrics.yaml",
        "model-store/tiny-image.mar",
    ]
    assert "torchship_requests" in (model / "metrics.yaml").read_text()  # the metrics the image serves
    # The baked config starts the JVM with torchship's logging, and that keeps no access log by default.
    vmargs = properties((model / "config.properties").read_text())["vmargs"]
    assert vmargs.endswith(" -Dlog4j2.configurationFile=/opt/torchship/log4j2.xml")
    logging = ElementTree.fromstring((model / "log4j2.xml").read_text())
    levels = {logger.get("name"): logger.get("level") for logger in logging.iter("Logger")}
    assert levels["ACCESS_LOG"] == "off" and levels["org.pytorch.serve"] == "info"
    assert not [a for a in logging.iter("RollingFile") if a.get("name") == "access_log"]
    assert json.loads((model / "image-labels.json").read_text()) == labels  # busts a stale layer cache
    assert (model / "model-store" / "tiny-image.mar").read_bytes() == b"archive"
    probe = context.directory / "bin" / "probe"
    assert probe.read_text().startswith("#!/opt/torchship/venv/bin/python\n") and os.access(probe, os.X_OK)
    assert os.access(context.directory / "bin" / "entrypoint", os.X_OK)
    assert context.build_args["MODEL_NAME"] == "tiny-image" and context.build_args["MAR_SHA256"] == "ab" * 32
    assert (context.build_args["GATE_VERDICT"], context.build_args["GIT_COMMIT"]) == ("pass", "c0ffee")
    for copied in re.findall(r"^COPY (?!--from)(\S+)", DOCKERFILE, re.MULTILINE):
        assert (context.directory / copied).exists(), copied


def test_serve_access_log_turns_the_access_log_on(tmp_path, spec):
    with_access = spec.model_copy(update={"serve": spec.serve.model_copy(update={"access_log": True})})
    mar = tmp_path / "tiny-image.mar"
    mar.write_bytes(b"archive")
    labels = image_labels(with_access, "ab" * 32, "pass", "c0ffee")
    context = prepare_context(
        tmp_path / "ctx", with_access, mar, _fake_wheelhouse(tmp_path / "wheels"), labels, "1g"
    )
    logging = ElementTree.fromstring((context.directory / "model" / "log4j2.xml").read_text())
    [access] = [a for a in logging.iter("RollingFile") if a.get("name") == "access_log"]
    assert access.get("fileName") == "${env:LOG_LOCATION:-logs}/access_log.log"
    [logger] = [x for x in logging.iter("Logger") if x.get("name") == "ACCESS_LOG"]
    assert logger.get("level") == "info" and logger.find("AppenderRef").get("ref") == "access_log"


def test_the_dockerfile_label_instruction_makes_exactly_the_labels_torchship_checks(spec):
    """Expand the LABEL instruction with the build arguments the way the builder does, and compare."""
    labels = image_labels(spec, "ab" * 32, "pass", "c0ffee")
    args = {"MODEL_NAME": spec.name, "MODEL_VERSION": spec.version, "MAR_SHA256": "ab" * 32,
            "GATE_VERDICT": "pass", "TORCHSHIP_VERSION": labels["io.torchship.version"], "GIT_COMMIT": "c0ffee"}  # fmt: skip
    instruction = re.search(r"^LABEL (.*?)(?<!\\)\n", DOCKERFILE, re.MULTILINE | re.DOTALL).group(1)
    pairs = re.findall(r'([\w.]+)="([^"]*)"', instruction)
    expanded = {key: re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value) for key, value in pairs}
    assert expanded == labels


def test_dockerfile_runs_as_a_numeric_high_uid_under_tini():
    user = re.findall(r"^USER (\S+)", DOCKERFILE, re.MULTILINE)
    assert re.search(
        r"^FROM serving\n(?:(?!^FROM).)*\Z", DOCKERFILE, re.MULTILINE | re.DOTALL
    )  # USER inherited
    assert user == ["10001:10001"]
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/opt/torchship/bin/entrypoint"]' in DOCKERFILE
    assert "ARG BASE_IMAGE=debian:bookworm-slim" in DOCKERFILE
    assert "--no-index" in DOCKERFILE  # the wheelhouse, never the network, for Python packages
    for path in WRITABLE_PATHS:
        assert path in DOCKERFILE


def test_no_builder_on_path_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuilderNotFound, match="no docker / podman / buildah on PATH"):
        find_builder()
    with pytest.raises(BuilderNotFound, match="not a builder"):
        find_builder("kaniko")


def test_an_incomplete_wheelhouse_names_what_is_missing(tmp_path):
    wheelhouse = _fake_wheelhouse(tmp_path / "wheels")
    (wheelhouse / "torch-0-py3-none-any.whl").unlink()
    serve = REPO / "src" / "torchship" / "locks" / "serve.txt"
    assert missing_wheels(wheelhouse, serve) == ["torch"]
    with pytest.raises(ImageBuildError, match="lacks wheels for: torch"):
        ensure_wheelhouse(serve, wheelhouse, tmp_path / "log")


def test_serve_requirements_are_the_runtime_only_and_pinned_like_prod():
    serve = pinned_names(REPO / "src" / "torchship" / "locks" / "serve.txt")
    assert {"torch", "transformers", "tokenizers", "torchserve", "safetensors", "numpy", "pyyaml"} <= serve
    assert not serve & {"boto3", "scikit_learn", "sentence_transformers", "torch_model_archiver"}
    prod = dict(
        line.split("==") for line in (REPO / "src" / "torchship" / "locks" / "prod.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )  # fmt: skip
    for line in (REPO / "src" / "torchship" / "locks" / "serve.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if version and name in prod:
            assert prod[name].strip() == version.strip(), name


def test_image_refuses_a_model_that_has_not_been_verified(tmp_path, tiny_model_dir):
    spec_path = write_spec(tmp_path / "spec", str(tiny_model_dir), name="never-verified")
    env = {**os.environ, "TORCHSHIP_OUTPUTS_DIR": str(tmp_path / "out"), "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "torchship.cli", "image", str(spec_path)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "no up-to-date 'verify' stage" in result.stderr and "hint:" in result.stderr
    assert not (tmp_path / "out" / "never-verified").joinpath("0.1.0", "image").exists()


LINT_VENV = Path("/var/tmp/torchship-tools/checkov/bin")


@pytest.mark.parametrize("variant", [CPU, NEURON], ids=lambda variant: variant.name)
def test_dockerfiles_pass_hadolint_and_checkov(variant, tmp_path):
    if not (LINT_VENV / "hadolint").is_file() or not (LINT_VENV / "checkov").is_file():
        pytest.skip(f"hadolint/checkov are not installed in {LINT_VENV} (scripts/install-lint-tools.sh)")
    dockerfile = tmp_path / "Dockerfile"  # checkov recognises Dockerfiles by name
    dockerfile.write_text(render_dockerfile(variant))
    hadolint = subprocess.run([str(LINT_VENV / "hadolint"), str(dockerfile)], capture_output=True, text=True)
    assert hadolint.returncode == 0, hadolint.stdout
    checkov = subprocess.run(
        [str(LINT_VENV / "checkov"), "-f", str(dockerfile), "--framework", "dockerfile", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(checkov.stdout)
    assert report["summary"]["failed"] == 0, [c["check_id"] for c in report["results"]["failed_checks"]]
    # The one skip, with its reason in the file: the base image is a build argument.
    assert [c["check_id"] for c in report["results"]["skipped_checks"]] == ["CKV_DOCKER_7"]


def test_neuron_dockerfile_keeps_the_image_contract():
    neuron = NEURON_DOCKERFILE
    for promise in ('ENTRYPOINT ["/usr/bin/tini", "--", "/opt/torchship/bin/entrypoint"]', "USER 10001:10001",
                    "COPY model/ /opt/torchship/", "--no-index", "TORCHSHIP_MANAGEMENT_PORT=8081"):  # fmt: skip
        assert promise in neuron, promise
    assert re.findall(r"^LABEL .*?[^\\]\n", neuron, re.MULTILINE | re.DOTALL) == re.findall(
        r"^LABEL .*?[^\\]\n",
        DOCKERFILE.replace("TorchServe 0.12.0 serving", "TorchServe 0.12.0 (Neuron) serving"),
        re.MULTILINE | re.DOTALL,
    )


def _neuron_spec(tmp_path, tiny_model_dir):
    path = write_spec(tmp_path / "neuron-spec", str(tiny_model_dir), name="tiny-neuron")
    path.write_text(path.read_text().replace("backend: torchscript", "backend: neuron"))
    return load_spec(path)


def test_a_neuron_model_gets_the_neuron_dockerfile_and_its_labels(tmp_path, tiny_model_dir):
    spec = _neuron_spec(tmp_path, tiny_model_dir)
    mar = tmp_path / "tiny-neuron.mar"
    mar.write_bytes(b"archive")
    labels = image_labels(spec, "ab" * 32, "pass", "c0ffee")
    context = prepare_context(
        tmp_path / "ctx", spec, mar, _fake_wheelhouse(tmp_path / "wheels"), labels, "1g"
    )
    dockerfile = context.dockerfile.read_text()
    assert dockerfile == NEURON_DOCKERFILE and "ARG BASE_IMAGE=public.ecr.aws/neuron/" in dockerfile
    assert labels["org.opencontainers.image.description"].startswith("TorchServe 0.12.0 (Neuron) serving")
    for copied in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.MULTILINE):
        assert (context.directory / copied).exists(), copied


def test_the_rendered_dockerfiles_are_the_templates_with_only_the_uid_filled_in():
    """The layer cache keys on instruction text: the rendered file must not vary from build to build."""
    for variant, text in ((CPU, DOCKERFILE), (NEURON, NEURON_DOCKERFILE)):
        assert "{{" not in text and "{#" not in text and "{%" not in text
        assert render_dockerfile(variant) == text
    assert "USER 10001:10001" in DOCKERFILE and "groupadd --gid 10001 torchship" in NEURON_DOCKERFILE


def _image_command(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCHSHIP_OUTPUTS_DIR": str(tmp_path / "out"), "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "torchship.cli", "image", *args], env=env, capture_output=True, text=True
    )


def test_image_context_refuses_a_directory_that_holds_files_and_writes_nothing(tmp_path, tiny_model_dir):
    spec_path = write_spec(tmp_path / "spec", str(tiny_model_dir), name="never-verified")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine\n")
    result = _image_command(tmp_path, str(spec_path), "--context", str(taken))
    assert result.returncode == 2
    assert f"--context {taken} is not empty" in result.stderr and "hint:" in result.stderr
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    # An empty directory is accepted, but the model was never verified: refused, the directory left empty.
    empty = tmp_path / "empty"
    empty.mkdir()
    unverified = _image_command(tmp_path, str(spec_path), "--context", str(empty))
    assert unverified.returncode == 1 and "no up-to-date 'verify' stage" in unverified.stderr
    assert list(empty.iterdir()) == [] and not list(tmp_path.glob(".empty.tmp-*"))
    pushing = _image_command(tmp_path, str(spec_path), "--context", str(empty), "--push", "registry/x")
    assert pushing.returncode == 2 and "--context builds nothing, so it cannot --push" in pushing.stderr
