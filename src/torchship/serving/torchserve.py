"""The real TorchServe 0.12.0, started on 127.0.0.1 with a work dir of its own, always stopped.

Hardened as the architecture page says (TorchServe gets no upstream security patches any more): token
authorization on, the model register API off, every address on loopback, no per-model pip installs.
TorchServe writes logs/ and key_file.json into its working directory and keeps a pid file and the
extracted archives under the temp dir, so each instance gets a private work dir and TMPDIR.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from torchship.errors import ServingError
from torchship.serving.ports import HOST, ensure_port_free, free_ports
from torchship.settings import Settings

# Log lines worth showing when a start fails: the cause is usually among them.
_TELLING = ("ERROR", "Exception", "Error:", "Traceback", "died", "failed", "Failed", "Address already in use")
_WORKER_DIED = ("Backend worker process died", "Load model failed", "Failed to load model")


@dataclass(frozen=True)
class Ports:
    inference: int
    management: int
    metrics: int
    # TorchServe always starts its gRPC servers too (default 7070/7071): they need free ports as well.
    grpc_inference: int
    grpc_management: int

    @staticmethod
    def choose(inference: int | None = None) -> Ports:
        if inference is not None:
            ensure_port_free(inference)
        chosen = free_ports(5)
        return Ports(inference or chosen[0], *chosen[1:])


def java_executable(settings: Settings) -> str:
    home = settings.java_home or (Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else None)
    java = str(home / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).is_file():
        raise ServingError(
            "Java was not found: TorchServe's frontend needs Java 11 or newer (17 recommended)",
            hint="Install it (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME / TORCHSHIP_JAVA_HOME.",
        )
    return java


def config_properties(ports: Ports, model_store: Path, settings: Settings) -> str:
    lines = {
        "inference_address": f"http://{HOST}:{ports.inference}",
        "management_address": f"http://{HOST}:{ports.management}",
        "metrics_address": f"http://{HOST}:{ports.metrics}",
        "grpc_inference_address": HOST,
        "grpc_inference_port": str(ports.grpc_inference),
        "grpc_management_address": HOST,
        "grpc_management_port": str(ports.grpc_management),
        "model_store": str(model_store),
        "disable_token_authorization": "false",
        "enable_model_api": "false",
        "token_expiration_min": "1440",
        "install_py_dep_per_model": "false",
        "disable_system_metrics": "true",
        # Only archives already in the model store may be loaded; no URLs.
        "allowed_urls": r"^file://.*",
        "vmargs": f"-Xmx{settings.torchserve_heap} -XX:+ExitOnOutOfMemoryError",
        "default_response_timeout": "120",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def _torchserve_command() -> list[str]:
    script = Path(sys.executable).with_name("torchserve")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ts.model_server"]


class TorchServe:
    """`with TorchServe(mars, settings) as ts:` starts, waits for every model's workers, and stops."""

    def __init__(
        self,
        mars: dict[str, Path],
        settings: Settings,
        port: int | None = None,
        workdir: Path | None = None,
    ):
        missing = [str(p) for p in mars.values() if not Path(p).is_file()]
        if missing:
            raise ServingError(f"model archive {', '.join(missing)} does not exist")
        self.mars = {name: Path(p).resolve() for name, p in mars.items()}
        self.settings = settings
        self.requested_port = port
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="torchship-ts-")).resolve()
        self.process: subprocess.Popen | None = None
        self.ports: Ports | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout_s: float | None = None) -> TorchServe:
        java = java_executable(self.settings)
        self.ports = Ports.choose(self.requested_port)
        store = self.workdir / "model-store"
        tmp = self.workdir / "tmp"
        logs = self.workdir / "logs"
        for d in (store, tmp, logs):
            d.mkdir(parents=True, exist_ok=True)
        for mar in self.mars.values():
            # A copy, not a symlink: TorchServe resolves archives inside its model store only.
            if not (store / mar.name).exists():
                shutil.copy2(mar, store / mar.name)
        config = self.workdir / "config.properties"
        config.write_text(config_properties(self.ports, store, self.settings))
        env = {
            **os.environ,
            "TMPDIR": str(tmp),
            "TEMP": str(tmp),
            "LOG_LOCATION": str(logs),
            "METRICS_LOCATION": str(logs),
            "JAVA_HOME": str(Path(java).resolve().parent.parent),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        models = [f"{name}={mar.name}" for name, mar in self.mars.items()]
        command = [
            *_torchserve_command(),
            "--start",
            "--foreground",
            "--ncs",
            "--ts-config",
            str(config),
            "--model-store",
            str(store),
            "--models",
            *models,
        ]
        console = (logs / "console.log").open("wb")
        # A session of its own: stop() signals the launcher, the Java frontend and every Python worker.
        self.process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=env,
            stdout=console,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        console.close()
        try:
            self._wait_ready(timeout_s or self.settings.torchserve_start_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process is not None:
            # The launcher may be gone while the JVM or workers linger: sweep the whole group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> TorchServe:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- access ------------------------------------------------------------------------------------

    @property
    def inference_url(self) -> str:
        assert self.ports is not None
        return f"http://{HOST}:{self.ports.inference}"

    @property
    def management_url(self) -> str:
        assert self.ports is not None
        return f"http://{HOST}:{self.ports.management}"

    @property
    def key_file(self) -> Path:
        return self.workdir / "key_file.json"

    def keys(self) -> dict[str, str]:
        data = json.loads(self.key_file.read_text())
        return {kind: data[kind]["key"] for kind in ("inference", "management") if kind in data}

    @property
    def inference_token(self) -> str:
        return self.keys()["inference"]

    def client(self, timeout_s: float = 60.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.inference_url,
            headers={"Authorization": f"Bearer {self.inference_token}"},
            timeout=timeout_s,
        )

    # --- readiness and diagnostics -----------------------------------------------------------------

    def log_lines(self) -> list[str]:
        lines: list[str] = []
        for name in ("console.log", "ts_log.log", "model_log.log"):
            path = self.workdir / "logs" / name
            if path.is_file():
                lines += path.read_text(errors="replace").splitlines()
        return lines

    def telling_log_lines(self, limit: int = 25) -> str:
        lines = [line for line in self.log_lines() if any(mark in line for mark in _TELLING)]
        return "\n".join(lines[-limit:]) or "\n".join(self.log_lines()[-limit:])

    def _fail(self, message: str, hint: str) -> ServingError:
        return ServingError(
            message, hint=f"{hint} Logs: {self.workdir / 'logs'}", details=self.telling_log_lines()
        )

    def _models_ready(self) -> bool:
        if not self.key_file.is_file():
            return False
        try:
            token = self.keys()["management"]
        except (ValueError, KeyError):
            return False  # being written
        with httpx.Client(
            base_url=self.management_url, timeout=5.0, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            for name in self.mars:
                try:
                    response = client.get(f"/models/{name}")
                except httpx.TransportError:
                    return False
                if response.status_code != 200:
                    return False
                workers = response.json()[0].get("workers", [])
                if not workers or any(w.get("status") != "READY" for w in workers):
                    return False
        return True

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._fail(
                    f"TorchServe exited during start-up (exit code {self.process.returncode})",
                    "See the log lines above.",
                )
            if self._models_ready():
                return
            if any(mark in line for line in self.log_lines() for mark in _WORKER_DIED):
                raise self._fail(
                    f"TorchServe could not load {', '.join(self.mars)}: the model's worker failed",
                    "The handler raised while loading the model; see the log lines above.",
                )
            time.sleep(0.5)
        raise self._fail(
            f"TorchServe did not get {', '.join(self.mars)} ready within {timeout_s:.0f} s",
            "Raise TORCHSHIP_TORCHSERVE_START_TIMEOUT_S if the model is just slow to load.",
        )
