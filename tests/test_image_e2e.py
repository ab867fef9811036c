"""The demo model's image, end to end: built from the top-level Dockerfile by `torchship image`, pushed to
a loopback registry (the ECR stand-in), pulled back by digest, run as UID 10001 on a read-only root, and its
served answers compared with the source model's. Slow: `make test-e2e` (marker e2e)."""

from __future__ import annotations

import json
import shutil
import threading
import time

import httpx
import pytest

from torchship.examples import load_examples
from torchship.image.builders import Tool
from torchship.image.local import DEMO_SPEC, ContainersUnavailable, LocalContainers, demo_image
from torchship.image.run_check import RunningImage, check_served
from torchship.reference import source_results
from torchship.settings import Settings
from torchship.sources import MODEL_DIRNAME
from torchship.spec import load_spec

DEMO_SPEC_NAME = load_spec(DEMO_SPEC).name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def containers():
    local = LocalContainers()
    try:
        local.require()
    except ContainersUnavailable as exc:
        pytest.skip(f"containers cannot run here: {exc}")
    with local.activated():
        yield local


@pytest.fixture(scope="module")
def demo(containers):
    return demo_image(containers)


@pytest.fixture(scope="module")
def podman(containers):
    return Tool("podman", shutil.which("podman"))


def test_the_built_image_is_recorded_with_its_served_parity(demo, containers):
    assert demo.served_parity.ok and demo.served_parity.compared >= 10
    assert demo.uid == 10001 and demo.writable_paths == ["/tmp", "/var/log/torchship"]
    assert demo.labels["io.torchship.gate.verdict"] == "pass"
    assert demo.labels["io.torchship.model.name"] == "minilm-embeddings"
    assert demo.digest.startswith("sha256:") and demo.size_bytes > 500_000_000
    config = containers.podman("image", "inspect", "--format", "{{json .Config}}", demo.reference).stdout
    assert json.loads(config)["User"] == "10001:10001"


def test_pushed_image_pulled_by_digest_serves_the_source_models_answers(demo, containers, podman, tmp_path):
    spec = load_spec(DEMO_SPEC)
    with containers.registry(tmp_path) as registry:
        repository = f"{registry}/torchship/{spec.name}"
        digest = podman.push(demo.reference, f"{repository}:e2e", tls_verify=False)
        assert digest.startswith("sha256:")
        by_digest = f"{repository}@{digest}"
        try:
            containers.podman("pull", "--tls-verify=false", by_digest)
            texts = load_examples(spec)
            root = Settings(outputs_dir=containers.root / "outputs").stage_root(spec.name, spec.version)
            expected = source_results(spec, root / "fetch" / MODEL_DIRNAME, texts)
            with RunningImage(podman, by_digest, spec.name) as running:
                uid = podman.exec(
                    running.name, ["python", "-c", "import os; print(os.getuid(), os.getgid())"]
                )
                assert uid.stdout.split() == ["10001", "10001"]
                read_only = podman.exec(running.name, ["python", "-c", "open('/opt/torchship/x', 'w')"])
                assert read_only.returncode != 0 and "Read-only file system" in read_only.stderr
                assert running.probe("live").returncode == 0
                checked = check_served(running, texts, expected, spec.validate.atol, spec.validate.rtol)
                assert checked.parity["ok"], checked.parity["failure"]
                assert checked.parity["compared"] == 2 * len(texts) + 1
                # The model-register API is off: the image serves exactly the verified .mar.
                register = podman.exec(running.name, ["python", "-c", (
                    "import urllib.request as u, os\n"
                    "r = u.Request(f'http://127.0.0.1:{os.environ[\"TORCHSHIP_MANAGEMENT_PORT\"]}/models?url=x.mar', method='POST')\n"
                    "try: u.urlopen(r)\nexcept Exception as e: print(getattr(e, 'code', e))"
                )])  # fmt: skip
                assert register.stdout.strip().startswith("4"), register.stdout
                running.stop()
            # SIGTERM stops TorchServe promptly: exit 0 well before podman's 30 s would force SIGKILL.
            assert running.exit_code == 0 and running.stop_s < 20, (running.exit_code, running.stop_s)
        finally:
            containers.podman("image", "rm", "-f", by_digest, check=False)


def test_a_request_in_flight_at_sigterm_completes_then_the_container_exits_0(demo, podman):
    """The entrypoint drains: a long request sent just before SIGTERM gets its 200, then PID 1 exits 0."""
    # Within the demo spec's serve.max_tokens_per_request (4096): 64 texts of ~60 tokens, seconds on 2 CPU cores.
    texts = [f"sentence {i} " + "a long text about serving models on a small machine " * 5 for i in range(64)]
    answer: dict = {}
    with RunningImage(podman, demo.reference, DEMO_SPEC_NAME) as running:

        def long_request() -> None:
            started = time.monotonic()
            try:
                with httpx.Client(base_url=running.url, timeout=120) as client:
                    response = client.post(f"/predictions/{DEMO_SPEC_NAME}", json={"texts": texts})
                answer["status"], answer["vectors"] = response.status_code, len(response.json())
            except httpx.HTTPError as exc:  # the failure this test exists for: a connection reset
                answer["error"] = repr(exc)
            answer["took_s"] = time.monotonic() - started

        thread = threading.Thread(target=long_request)
        sent = time.monotonic()
        thread.start()
        time.sleep(0.3)  # the request is in flight (it takes seconds alone)
        sigterm_after_s = time.monotonic() - sent
        running.stop()
        thread.join(120)
        logs = podman.logs(running.name, lines=15)
    assert answer.get("status") == 200 and answer["vectors"] == len(texts), (answer, logs)
    assert running.exit_code == 0, running.exit_code
    assert answer["took_s"] > sigterm_after_s + 0.5, (
        "the request was not in flight at SIGTERM: a longer one is needed"
    )
    # Prompt: it stopped once the request was answered, within a few seconds, not at the drain timeout.
    assert running.stop_s < answer["took_s"] + 8, (running.stop_s, answer["took_s"])
    print(
        f"in-flight request {answer['took_s']:.1f} s, SIGTERM at {sigterm_after_s:.1f} s; exit 0 {running.stop_s:.1f} s after SIGTERM"
    )
