"""Integration: the real TorchServe 0.12.0 (Java frontend + Python workers) on 127.0.0.1."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
import yaml

from conftest import run_stages
from junit_schema import check_junit
from torchship.errors import ServingError
from torchship.serving.torchserve import TorchServe
from torchship.settings import Settings
from torchship.spec import load_spec

pytestmark = pytest.mark.torchserve

SENTENCES = ["TorchServe serves PyTorch models.", "The cat sat on the mat.", "ok", "Wie geht es dir?"]


def post(server, name, body, content_type="application/json"):
    with server.client() as client:
        content = (
            json.dumps(body) if content_type == "application/json" and not isinstance(body, bytes) else body
        )
        return client.post(f"/predictions/{name}", content=content, headers={"Content-Type": content_type})


def test_served_demo_model_equals_sentence_transformers(torchserve, minilm_package):
    from sentence_transformers import SentenceTransformer

    spec, settings, _ = minilm_package
    model_dir = settings.stage_root(spec.name, spec.version) / "fetch" / "model"
    expected = SentenceTransformer(str(model_dir), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    response = post(torchserve, spec.name, {"texts": SENTENCES})
    assert response.status_code == 200, response.text
    served = torch.tensor(response.json())
    assert served.shape == (4, 384)
    assert torch.allclose(served, expected, atol=1e-5), (served - expected).abs().max()


def test_request_contract(torchserve, tiny_package, tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    name = tiny_package[0].name
    one = post(torchserve, name, {"text": "hello world"})
    many = post(torchserve, name, {"texts": ["hello world", "ok"]})
    plain = post(torchserve, name, b"hello world", "text/plain")
    assert one.status_code == many.status_code == plain.status_code == 200
    assert one.headers["content-type"].startswith("application/json")
    expected = SentenceTransformer(str(tiny_model_dir), device="cpu").encode(["hello world", "ok"])
    assert torch.tensor(many.json()) == pytest.approx(torch.tensor(expected), abs=1e-5)
    assert one.json() == pytest.approx(many.json()[0], abs=1e-6)
    assert plain.json() == pytest.approx(one.json(), abs=1e-6)


def test_token_authorization_is_on(torchserve, tiny_package):
    response = httpx.post(
        f"{torchserve.inference_url}/predictions/{tiny_package[0].name}", json={"text": "hi"}
    )
    assert response.status_code in (400, 401), response.text
    assert "token" in response.text.lower(), response.text


def test_model_register_api_is_off(torchserve):
    token = torchserve.keys()["management"]
    response = httpx.post(
        f"{torchserve.management_url}/models",
        params={"url": "anything.mar"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 405, response.text


BAD = [
    (b"{not json", "application/json", "malformed JSON"),
    (b"\xff\xfe bytes", "application/octet-stream", "not valid UTF-8"),
    ({"text": 42}, "application/json", "must be a string"),
    ({"text": "   "}, "application/json", "empty or only whitespace"),
    ({"texts": []}, "application/json", "empty list"),
    ({"texts": ["a"] * 9}, "application/json", "over the limit of 8"),
    ({"text": "a", "bogus": 1}, "application/json", "unknown option"),
    ({"text": "cat " * 300_000}, "application/json", "over the limit of 1048576 bytes"),
]


def test_concurrent_mixed_good_and_bad_requests_in_batches(torchserve, tiny_package, tiny_model_dir):
    """batch_size 4 with a 50 ms delay: good and bad requests share server-side batches; each bad one gets
    its own 400, every good one its result, and the worker never restarts."""
    name = tiny_package[0].name
    good = [({"text": f"the cat sat on the mat {i}"}, "application/json", None) for i in range(12)]
    requests = [r for pair in zip(good, BAD * 2, strict=False) for r in pair] + good[len(BAD) * 2 :]
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda r: post(torchserve, name, r[0], r[1]), requests))
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(tiny_model_dir), device="cpu")
    for (body, _, expected_error), response in zip(requests, responses, strict=True):
        if expected_error is None:
            assert response.status_code == 200, response.text
            # its own text's embedding, whatever else shared its server-side batch
            want = reference.encode(body["text"])
            assert response.json() == pytest.approx(want.tolist(), abs=1e-5), body
        else:
            assert response.status_code == 400, (expected_error, response.status_code, response.text)
            assert expected_error in response.json()["message"]
    logs = "\n".join(torchserve.log_lines())
    assert "Backend worker process died" not in logs
    token = torchserve.keys()["management"]
    described = httpx.get(
        f"{torchserve.management_url}/models/{name}", headers={"Authorization": f"Bearer {token}"}
    ).json()[0]
    assert [w["status"] for w in described["workers"]] == ["READY"]
    assert described["batchSize"] == 4


def test_verify_stage_checks_served_parity(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    outcomes = run_stages(spec, settings)
    assert [o.status for o in outcomes] == ["ran"] * 5, [str(o.error) for o in outcomes]
    details = outcomes[-1].record["details"]
    assert details["parity"]["ok"] and details["parity"]["compared"] == 5 + 5 + 1
    served = json.loads((settings.stage_root(spec.name, spec.version) / "verify" / "served.json").read_text())
    assert len(served["served"]) == 5 and len(served["served"][0]) == 32
    # verify's junit.xml holds every check: validate's and the served ones, listed in the stage record.
    verify_dir = settings.stage_root(spec.name, spec.version) / "verify"
    assert "junit.xml" in outcomes[-1].record["outputs"]
    suite = check_junit((verify_dir / "junit.xml").read_text()).find("testsuite")
    assert suite.get("name") == f"{spec.name} {spec.version} verify" and suite.get("failures") == "0"
    classnames = {case.get("classname") for case in suite.iter("testcase")}
    checks = json.loads((verify_dir / "report.json").read_text())["checks"]
    assert classnames == {f"{spec.name}.verify.{c['name']}" for c in checks}
    assert {"served_parity", "served_latency", "parity", "source_model"} <= {c["name"] for c in checks}


# --- TorchServe that cannot start ------------------------------------------------------------------


def test_java_missing_is_a_clear_error(tiny_package, tmp_path):
    spec, _, mar = tiny_package
    with pytest.raises(ServingError, match="Java was not found"):
        TorchServe({spec.name: mar}, Settings(java_home=tmp_path / "no-jdk")).start()


def test_port_taken_is_a_clear_error(tiny_package):
    spec, settings, mar = tiny_package
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServingError, match=f"port {port} on 127.0.0.1 is already in use"):
            TorchServe({spec.name: mar}, settings, port=port).start()


def test_model_that_fails_to_load_shows_the_log_lines(tiny_package, tmp_path):
    _, settings, mar = tiny_package
    broken = tmp_path / "broken.mar"
    with zipfile.ZipFile(mar) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "model-config.yaml":
                config = yaml.safe_load(data)
                config["handler"]["task"] = "summarization"
                data = yaml.safe_dump(config).encode()
            dst.writestr(item, data)
    server = TorchServe({"broken": broken}, settings)
    started = time.monotonic()
    with pytest.raises(ServingError) as info:
        server.start(timeout_s=120)
    assert "could not load broken" in info.value.message
    assert "summarization" in info.value.details  # the handler's own error, from the worker log
    assert time.monotonic() - started < 90  # failed fast, not at the timeout
    assert server.process is None and not server.workdir.exists()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_serve_command_stops_torchserve_on_ctrl_c(tiny_package, tmp_path):
    _, _, mar = tiny_package
    port = __import__("torchship.serving.ports", fromlist=["free_port"]).free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchship.cli", "serve", str(mar), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    # A reader thread keeps draining the pipe after the first lines (a blocking readline loop could wait
    # forever, and an undrained pipe could stall the process under test).
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any("Ctrl-C stops TorchServe" in line for line in lines):
                break
            time.sleep(0.1)
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/predictions/{mar.stem}" in output, output
        token = next(line.split()[1] for line in list(lines) if line.startswith("token:"))
        answer = httpx.post(
            f"http://127.0.0.1:{port}/predictions/{mar.stem}",
            json={"text": "hello world"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError("serve did not stop within 120 s of Ctrl-C:\n" + "".join(lines)) from None
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, "".join(lines)  # the README's exit code for Ctrl-C
    assert not _listening(port)
    # Neither the Java frontend nor a Python worker of that TorchServe survives (both name its work dir).
    workdir = next(line.split("(keys: ")[1].rsplit("/", 1)[0] for line in lines if "(keys: " in line)
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert workdir not in processes
    assert not os.path.exists(workdir)
