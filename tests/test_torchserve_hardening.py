"""TorchServe hardened from the outside: config values that cannot be rewritten through the environment, an
allow-listed environment for the workers, limits from the spec, URLs and workflows confined to the model
store, and nothing left behind when it cannot start. Unit checks first, then one real TorchServe."""

from __future__ import annotations

import os
import re
import socket
import tempfile
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml

from torchship.errors import ServingError
from torchship.serving.config import (
    REQUEST_SIZE_HEADROOM,
    RESPONSE_SIZE_MARGIN,
    ServerLimits,
    archive_limits,
    build_config,
)
from torchship.serving.environment import torchserve_environment
from torchship.serving.torchserve import Ports, TorchServe, config_properties
from torchship.settings import Settings, SettingsError

PORTS = Ports(8080, 8081, 8082, 7070, 7071)


def java_properties(text: str) -> dict[str, str]:
    """Read a config.properties as java.util.Properties does for these files: a line break ends a value,
    `\\\\` is one backslash, `#` lines are comments. Independent of the code that writes it."""
    props = {}
    for line in text.splitlines():
        line = line.lstrip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        props[key.strip()] = re.sub(r"\\(.)", r"\1", value.lstrip())
    return props


# --- config.properties: only validated values ------------------------------------------------------------

EXPECTED_KEYS = {
    "inference_address", "management_address", "metrics_address", "grpc_inference_address",
    "grpc_inference_port", "grpc_management_address", "grpc_management_port", "model_store",
    "workflow_store", "allowed_urls", "disable_token_authorization", "token_expiration_min",
    "enable_model_api", "enable_envvars_config", "install_py_dep_per_model", "disable_system_metrics",
    "max_request_size", "max_response_size", "default_response_timeout", "vmargs", "metrics_mode",
    "metrics_config",
}  # fmt: skip


def test_rendered_config_is_hardened(tmp_path):
    store = tmp_path / "model-store"
    limits = ServerLimits(max_request_size=300_000, max_response_size=9_000_000, default_response_timeout=30)
    props = java_properties(config_properties(PORTS, store, Settings(torchserve_heap="512m"), limits))
    assert set(props) == EXPECTED_KEYS
    assert props["inference_address"] == "http://127.0.0.1:8080"
    assert props["management_address"] == "http://127.0.0.1:8081"
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert props["disable_token_authorization"] == "false" and props["enable_model_api"] == "false"
    assert props["enable_envvars_config"] == "false"
    assert props["model_store"] == props["workflow_store"] == str(store)
    assert props["max_request_size"] == "300000" and props["max_response_size"] == "9000000"
    assert props["default_response_timeout"] == "30"
    assert props["vmargs"] == (
        f"-Xmx512m -XX:+ExitOnOutOfMemoryError -Dlog4j2.configurationFile={tmp_path / 'log4j2.xml'}"
    )
    # Prometheus' format on the metrics port, the metrics torchship declares (beside the model store).
    assert props["metrics_mode"] == "prometheus"
    assert props["metrics_config"] == str(tmp_path / "metrics.yaml")
    # allowed_urls as TorchServe matches it (Java regex, full match, case-insensitive); \Q..\E is literal.
    pattern = props["allowed_urls"].replace(r"\Q", "").replace(r"\E", "")
    pattern = re.escape(str(store)).join(pattern.split(str(store)))
    assert re.fullmatch(pattern, f"file://{store}/other.mar")
    for outside in (f"file://{tmp_path}/evil.war", "file:///etc/passwd", "https://example.com/x.mar",
                    f"file://{store}/../evil.war/x", f"file://{store}x/evil.war"):  # fmt: skip
        assert not re.fullmatch(pattern, outside), outside


@pytest.mark.parametrize(
    "heap",
    [
        "1g\ndisable_token_authorization=true",
        "1g\rinference_address=http://0.0.0.0:80",
        "1g ",
        "lots",
        "1g\n",
    ],
)
def test_heap_with_anything_but_a_size_is_refused_from_env_and_dotenv(heap, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHSHIP_TORCHSERVE_HEAP", heap)
    with pytest.raises(SettingsError) as info:
        Settings()
    assert "TORCHSHIP_TORCHSERVE_HEAP" in info.value.message and "\n" not in info.value.message
    assert "TORCHSHIP_TORCHSERVE_HEAP" in info.value.hint
    monkeypatch.delenv("TORCHSHIP_TORCHSERVE_HEAP")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TORCHSHIP_ENV_FILE")  # back to the default: `.env` in the cwd
    (tmp_path / ".env").write_text(f"TORCHSHIP_TORCHSERVE_HEAP={heap!r}\n".replace("'", '"'))
    with pytest.raises(SettingsError, match="TORCHSHIP_TORCHSERVE_HEAP"):
        Settings()


def test_a_value_that_slipped_past_settings_is_still_refused_at_render(tmp_path):
    sneaky = Settings.model_construct(torchserve_heap="1g\ndisable_token_authorization=true")
    with pytest.raises(ServingError, match=r"'heap' \(TORCHSHIP_TORCHSERVE_HEAP\) is invalid"):
        config_properties(PORTS, tmp_path / "store", sneaky)
    for store in (Path("/tmp/x\nenable_model_api=true"), Path("/tmp/a,b"), Path("/tmp/a\\b"), Path("rel")):
        with pytest.raises(ServingError, match="'model_store'"):
            config_properties(PORTS, store, Settings())
    with pytest.raises(ServingError, match="not a loopback address"):
        build_config(
            host="0.0.0.0", ports=PORTS.__dict__, model_store=tmp_path, heap="1g", token_expiration_min=5,
            max_request_size=4096, max_response_size=65536, default_response_timeout=5,
        )  # fmt: skip


def test_token_lifetime_setting_is_typed(monkeypatch):
    monkeypatch.setenv("TORCHSHIP_TOKEN_EXPIRATION_MIN", "30\nenable_model_api=true")
    with pytest.raises(SettingsError, match="TORCHSHIP_TOKEN_EXPIRATION_MIN"):
        Settings()
    monkeypatch.setenv("TORCHSHIP_TOKEN_EXPIRATION_MIN", "0.5")
    assert "token_expiration_min=0.5\n" in config_properties(PORTS, Path("/s"), Settings())


def test_environment_is_an_allow_list():
    env = torchserve_environment(
        {
            "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "OPENBLAS_CORETYPE": "Haswell",
            "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t", "NEPTUNE_API_TOKEN": "n", "HF_TOKEN": "h",
            "TS_CONFIG_FILE": "/evil", "JAVA_TOOL_OPTIONS": "-Devil", "TORCHSHIP_PUBLISH_URI": "s3://x",
            "GITHUB_TOKEN": "g", "HF_HUB_OFFLINE": "0",
        },
        {"TMPDIR": "/w/tmp"},
    )  # fmt: skip
    assert env == {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "OPENBLAS_CORETYPE": "Haswell",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TMPDIR": "/w/tmp",
        "OMP_WAIT_POLICY": "PASSIVE",  # torch's threads sleep between runs unless someone says otherwise
    }  # fmt: skip


def test_a_users_omp_wait_policy_wins_over_the_default_and_a_spec_over_both():
    assert torchserve_environment({"OMP_WAIT_POLICY": "ACTIVE"}, {})["OMP_WAIT_POLICY"] == "ACTIVE"
    spec_says = torchserve_environment({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"})
    assert spec_says["OMP_WAIT_POLICY"] == "PASSIVE"


# --- limits come from the archives ----------------------------------------------------------------------


def with_limits(mar: Path, dest: Path, **handler_values) -> Path:
    """A copy of `mar` whose model-config.yaml handler section has these values."""
    with zipfile.ZipFile(mar) as src, zipfile.ZipFile(dest, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "model-config.yaml":
                config = yaml.safe_load(data)
                config["handler"].update(handler_values)
                data = yaml.safe_dump(config).encode()
            dst.writestr(item, data)
    return dest


def test_limits_follow_the_archives(tiny_package, tmp_path):
    _, _, mar = tiny_package
    small = with_limits(mar, tmp_path / "small.mar", max_body_bytes=4096, max_response_bytes=100_000)
    big = with_limits(mar, tmp_path / "big.mar", max_body_bytes=10_000_000, max_response_bytes=50_000_000)
    assert archive_limits(small).max_body_bytes == 4096
    limits = ServerLimits.for_archives([small, big])
    assert limits.max_request_size == 10_000_000 * REQUEST_SIZE_HEADROOM
    assert limits.max_response_size == 50_000_000 + RESPONSE_SIZE_MARGIN


# --- nothing left behind when TorchServe cannot start ---------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's directory for this test only: what TorchServe leaves behind shows up here."""
    base = tmp_path / "tmp"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    return base


def test_port_taken_leaves_no_work_dir(tiny_package, private_tmp):
    spec, settings, mar = tiny_package
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ServingError, match="already in use"):
            TorchServe({spec.name: mar}, settings, port=busy.getsockname()[1]).start()
    assert list(private_tmp.iterdir()) == []


def test_a_tmpdir_with_a_line_break_cannot_inject_properties(tiny_package, tmp_path, monkeypatch):
    spec, settings, mar = tiny_package
    weird = tmp_path / "tmp\ndisable_token_authorization=true"
    weird.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(weird))
    server = TorchServe({spec.name: mar}, settings)
    with pytest.raises(ServingError, match=r"'model_store' .*line break"):
        server.start()
    assert server.process is None and list(weird.iterdir()) == []


# --- one real TorchServe, started with secrets and TorchServe overrides in the environment ------------------

CANARIES = {
    "AWS_SECRET_ACCESS_KEY": "canary-aws-secret",
    "AWS_SESSION_TOKEN": "canary-aws-session",
    "NEPTUNE_API_TOKEN": "canary-neptune",
    "HF_TOKEN": "canary-hf",
    "TORCHSHIP_CANARY": "canary-torchship",
    "JAVA_TOOL_OPTIONS": "-Dcanary.java.tool.options=1",
    "TS_DISABLE_TOKEN_AUTHORIZATION": "true",
    "TS_ENABLE_MODEL_API": "true",
}
BODY_LIMIT = 64 * 1024
RESPONSE_LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def hardened(tiny_package, tmp_path_factory):
    spec, settings, mar = tiny_package
    root = tmp_path_factory.mktemp("hardened")
    # A config that would switch token auth off and listen everywhere, offered through the launcher's own
    # environment variable.
    evil = root / "evil.properties"
    evil.write_text("disable_token_authorization=true\ninference_address=http://0.0.0.0:18080\n")
    limited = with_limits(
        mar, root / f"{spec.name}.mar", max_body_bytes=BODY_LIMIT, max_response_bytes=RESPONSE_LIMIT
    )
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**CANARIES, "TS_CONFIG_FILE": str(evil)}.items():
            mp.setenv(name, value)
        server = TorchServe({spec.name: limited}, settings)
        server.start()
    try:
        yield server, spec.name, root
    finally:
        server.stop()


def _group_processes(pgid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                pass
    return found


@pytest.mark.torchserve
def test_no_secret_reaches_torchserve_or_its_workers(hardened):
    server, _, _ = hardened
    processes = _group_processes(server.process.pid)
    workers = [pid for pid, args in processes.items() if "model_service_worker" in args]
    java = [pid for pid, args in processes.items() if "org.pytorch.serve.ModelServer" in args]
    assert workers and java, processes
    for pid in processes:
        environ = dict(
            item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
        )
        leaked = sorted(set(environ) & {*CANARIES, "TS_CONFIG_FILE"})
        assert not leaked, f"{processes[pid]} got {leaked}"
        assert not any(value.startswith("canary") for value in environ.values())
        assert environ.get("HF_HUB_OFFLINE") == "1"
        assert environ.get("OMP_WAIT_POLICY") == "PASSIVE"  # set before the workers import torch


@pytest.mark.torchserve
def test_the_frontend_logs_at_info_without_access_or_metrics_files(hardened):
    """torchship's log4j2.xml: TorchServe's log at info (no per-request debug lines), the handler's log,
    and neither an access log nor metric log files (their per-request cost is in templates/log4j2.xml.j2)."""
    server, name, _ = hardened
    with server.client() as client:
        for _ in range(5):
            assert client.post(f"/predictions/{name}", json={"text": "hi"}).status_code == 200
    logs = server.workdir / "logs"
    names = {path.name for path in logs.iterdir()}
    assert {"ts_log.log", "model_log.log"} <= names
    assert not names & {"access_log.log", "model_metrics.log", "ts_metrics.log"}, names
    ts_log = (logs / "ts_log.log").read_text()
    assert "[INFO ]" in ts_log and "[DEBUG]" not in ts_log
    assert "torchship handler ready" in (logs / "model_log.log").read_text()


@pytest.mark.torchserve
def test_environment_overrides_did_not_reach_the_config(hardened):
    server, name, _ = hardened
    anonymous = httpx.post(f"{server.inference_url}/predictions/{name}", json={"text": "hi"})
    assert anonymous.status_code in (400, 401) and "token" in anonymous.text.lower()
    with server.client() as client:
        assert client.post(f"/predictions/{name}", json={"text": "hi"}).status_code == 200
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", 18080)) != 0  # the evil config's address was never bound


@pytest.mark.torchserve
def test_torchserve_limits_follow_the_spec(hardened):
    server, name, _ = hardened
    log = "\n".join(server.log_lines())
    # TorchServe prints the configuration it runs with at start-up.
    assert re.search(rf"Maximum Request Size: {BODY_LIMIT * REQUEST_SIZE_HEADROOM}\b", log), log[:3000]
    assert re.search(rf"Maximum Response Size: {RESPONSE_LIMIT + RESPONSE_SIZE_MARGIN}\b", log)
    with server.client() as client:
        # A bit over the spec's limit: our handler's 400, naming the limit.
        a_bit_over = client.post(f"/predictions/{name}", json={"text": "cat " * (BODY_LIMIT // 3)})
        assert a_bit_over.status_code == 400, a_bit_over.text
        assert f"over the limit of {BODY_LIMIT} bytes" in a_bit_over.json()["message"]
        # Far over: TorchServe refuses it before buffering it all.
        far_over = client.post(
            f"/predictions/{name}", json={"text": "cat " * (BODY_LIMIT * REQUEST_SIZE_HEADROOM // 3)}
        )
        assert far_over.status_code == 413, far_over.text
        assert client.post(f"/predictions/{name}", json={"text": "still fine"}).status_code == 200


@pytest.mark.torchserve
def test_workflows_and_urls_are_confined_to_the_model_store(hardened):
    server, _, root = hardened
    outside = root / "evil.war"
    outside.write_bytes(b"PK not really a workflow archive")
    headers = {"Authorization": f"Bearer {server.fresh_token('management')}"}
    for url in (f"file://{outside}", f"http://127.0.0.1:9/{outside.name}"):
        response = httpx.post(f"{server.management_url}/workflows", params={"url": url}, headers=headers)
        assert response.status_code in (400, 404), response.text
        assert "allowed" in response.text.lower(), response.text
    models = httpx.post(
        f"{server.management_url}/models", params={"url": f"file://{outside}"}, headers=headers
    )
    assert models.status_code == 405


@pytest.mark.torchserve
def test_an_expired_management_token_is_renewed(hardened):
    server, _, _ = hardened
    old = server.tokens()["management"].key
    new = server.renew_token("management")
    assert new.key != old and not new.expired()
    headers = {"Authorization": f"Bearer {old}"}
    assert httpx.get(f"{server.management_url}/models", headers=headers).status_code in (400, 401)
    headers = {"Authorization": f"Bearer {new.key}"}
    assert httpx.get(f"{server.management_url}/models", headers=headers).status_code == 200
