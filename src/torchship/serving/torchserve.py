"""The real TorchServe 0.12.0, started on 127.0.0.1 with a work dir of its own, always stopped.

Hardened as the architecture page says (TorchServe gets no upstream security patches any more): token
authorization on, the model register API off, every address on loopback, no per-model pip installs,
URLs and workflows limited to the model store, an allow-listed environment (serving.environment), and a
config.properties written only from validated values (serving.config). TorchServe writes logs/ and
key_file.json into its working directory and keeps a pid file and the extracted archives under the temp
dir, so each instance gets a private work dir and TMPDIR, created on start and removed on every stop.
SIGTERM and SIGHUP stop it like Ctrl-C, also while it starts (serving.signals).
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from torchship.errors import ServingError
from torchship.serving.config import (
    ServerLimits,
    ServerPorts,
    build_config,
    render_config,
    render_log_config,
)
from torchship.serving.environment import omp_environment, torchserve_environment
from torchship.serving.metrics_config import FILE_NAME as METRICS_CONFIG
from torchship.serving.metrics_config import render_metrics_config
from torchship.serving.ports import HOST, ensure_port_free, free_ports
from torchship.serving.signals import install_stop_handlers, restore_handlers, signals_held
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


LOG_CONFIG = "log4j2.xml"


def config_properties(
    ports: Ports,
    model_store: Path,
    settings: Settings,
    limits: ServerLimits | None = None,
    metrics_config: Path | None = None,
) -> str:
    """config.properties for one TorchServe; raises ServingError naming any value that cannot be written.
    `metrics_config`: the metrics file (default: beside the model store)."""
    limits = limits or ServerLimits.for_archives([])
    config = build_config(
        host=HOST,
        ports=ServerPorts(**ports.__dict__),
        model_store=model_store,
        log_config=model_store.parent / LOG_CONFIG,
        metrics_config=metrics_config or model_store.parent / METRICS_CONFIG,
        heap=settings.torchserve_heap,
        token_expiration_min=settings.token_expiration_min,
        max_request_size=limits.max_request_size,
        max_response_size=limits.max_response_size,
        default_response_timeout=limits.default_response_timeout,
    )
    return render_config(config)


@dataclass(frozen=True)
class Token:
    key: str
    expires: datetime | None  # None: never (the token API's own key)

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and (now or datetime.now(UTC)) >= self.expires


def read_tokens(key_file: Path) -> dict[str, Token]:
    """key_file.json as {"inference"|"management"|"API": Token}; ValueError/KeyError while it is written."""
    data = json.loads(key_file.read_text())
    tokens = {}
    for kind in ("inference", "management", "API"):
        if kind in data:
            expires = data[kind].get("expiration time")
            when = datetime.fromisoformat(expires.replace("Z", "+00:00")) if expires else None
            tokens[kind] = Token(data[kind]["key"], when)
    return tokens


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
        omp_wait_policy: str | None = None,
    ):
        """`omp_wait_policy`: serve.omp_wait_policy of the models served (None: the user's environment's
        OMP_WAIT_POLICY, else passive)."""
        missing = [str(p) for p in mars.values() if not Path(p).is_file()]
        if missing:
            raise ServingError(f"model archive {', '.join(missing)} does not exist")
        self.mars = {name: Path(p).resolve() for name, p in mars.items()}
        self.settings = settings
        self.requested_port = port
        self.omp_wait_policy = omp_wait_policy
        self._own_workdir = workdir is None
        # Made by start() (a TorchServe that never starts leaves no /tmp/torchship-ts-* behind).
        self.workdir: Path | None = Path(workdir).resolve() if workdir is not None else None
        self.process: subprocess.Popen | None = None
        self.ports: Ports | None = None
        self._previous_handlers: dict = {}

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout_s: float | None = None) -> TorchServe:
        # Checks that need no files first: a missing JDK or a taken port leaves nothing behind.
        java = java_executable(self.settings)
        self.ports = Ports.choose(self.requested_port)
        limits = ServerLimits.for_archives(list(self.mars.values()))
        self._previous_handlers = install_stop_handlers()
        try:
            if self.workdir is None:
                with signals_held() as arrived:  # made and recorded at once, or not at all
                    self.workdir = Path(tempfile.mkdtemp(prefix="torchship-ts-")).resolve()
                if arrived:
                    raise KeyboardInterrupt("stop signal while TorchServe's work dir was made")
            self._launch(java, limits)
            self._wait_ready(timeout_s or self.settings.torchserve_start_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, java: str, limits: ServerLimits) -> None:
        assert self.workdir is not None and self.ports is not None
        store = self.workdir / "model-store"
        tmp = self.workdir / "tmp"
        logs = self.workdir / "logs"
        for d in (store, tmp, logs):
            d.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.properties"
        metrics = self.workdir / METRICS_CONFIG
        metrics.write_text(render_metrics_config())
        config.write_text(config_properties(self.ports, store, self.settings, limits, metrics))
        # Beside the model store, where config_properties points the JVM; local servers keep no access log.
        (store.parent / LOG_CONFIG).write_text(render_log_config(access_log=False))
        for mar in self.mars.values():
            # A copy, not a symlink: TorchServe resolves archives inside its model store only.
            if not (store / mar.name).exists():
                shutil.copy2(mar, store / mar.name)
        env = torchserve_environment(
            os.environ,
            {
                "TMPDIR": str(tmp),
                "TEMP": str(tmp),
                "LOG_LOCATION": str(logs),
                "METRICS_LOCATION": str(logs),
                "JAVA_HOME": str(Path(java).resolve().parent.parent),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                **(omp_environment(self.omp_wait_policy) if self.omp_wait_policy else {}),
            },
        )
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
            "--workflow-store",
            str(store),
            "--models",
            *models,
        ]
        # Signals wait until the Popen object is ours: one arriving between the fork and the assignment
        # would otherwise leave a TorchServe that stop() does not know about.
        with (logs / "console.log").open("wb") as console, signals_held() as arrived:
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
        if arrived:
            raise KeyboardInterrupt("stop signal while TorchServe was being launched")

    def stop(self) -> None:
        """Stop the whole process group and remove the work dir; Ctrl-C, SIGTERM and SIGHUP wait until
        that is done (then count as an interrupt)."""
        with signals_held() as arrived:
            self._stop_group()
            if self._own_workdir and self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
            restore_handlers(self._previous_handlers)
            self._previous_handlers = {}
        if arrived:
            raise KeyboardInterrupt("stop signal during TorchServe's shutdown")

    def _stop_group(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # The launcher may be gone while the JVM or workers linger: sweep the whole group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

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
        assert self.workdir is not None, "TorchServe has not been started"
        return self.workdir / "key_file.json"

    def tokens(self) -> dict[str, Token]:
        return read_tokens(self.key_file)

    def keys(self) -> dict[str, str]:
        return {kind: token.key for kind, token in self.tokens().items() if kind != "API"}

    @property
    def inference_token(self) -> str:
        return self.keys()["inference"]

    def renew_token(self, kind: str) -> Token:
        """A new `kind` ("inference" or "management") token through TorchServe's token API (its API key
        never expires); the old token stops working at once."""
        api_key = self.tokens()["API"].key
        response = httpx.get(
            f"{self.management_url}/token",
            params={"type": kind},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=10.0,
        )
        if response.status_code != 200:
            raise ServingError(
                f"TorchServe refused to issue a new {kind} token ({response.status_code}: {response.text.strip()})",
                hint="Restart `torchship serve`.",
            )
        return self.tokens()[kind]

    def fresh_token(self, kind: str) -> str:
        """The `kind` token, renewed first when it has expired (TORCHSHIP_TOKEN_EXPIRATION_MIN)."""
        token = self.tokens()[kind]
        return (self.renew_token(kind) if token.expired() else token).key

    def run_until_exit(self, on_renewed: Callable[[Token], None], poll_s: float = 0.5) -> int:
        """Block while TorchServe runs; each time the inference token expires, issue a new one and hand it
        to `on_renewed` (so a long `serve` never stops answering without saying why). Returns TorchServe's
        exit code."""
        assert self.process is not None
        while self.process.poll() is None:
            try:
                token = self.tokens()["inference"]
            except (OSError, ValueError, KeyError):
                token = None  # being rewritten
            if token is not None and token.expired():
                on_renewed(self.renew_token("inference"))
            time.sleep(poll_s)
        return self.process.returncode

    def client(self, timeout_s: float = 60.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.inference_url,
            headers={"Authorization": f"Bearer {self.inference_token}"},
            timeout=timeout_s,
        )

    # --- readiness and diagnostics -----------------------------------------------------------------

    def log_lines(self) -> list[str]:
        lines: list[str] = []
        if self.workdir is None:
            return lines
        for name in ("console.log", "ts_log.log", "model_log.log"):
            path = self.workdir / "logs" / name
            if path.is_file():
                lines += path.read_text(errors="replace").splitlines()
        return lines

    def telling_log_lines(self, limit: int = 25) -> str:
        lines = [line for line in self.log_lines() if any(mark in line for mark in _TELLING)]
        return "\n".join(lines[-limit:]) or "\n".join(self.log_lines()[-limit:])

    def _fail(self, message: str, hint: str) -> ServingError:
        logs = self.workdir / "logs" if self.workdir is not None else "none (TorchServe was not started)"
        return ServingError(message, hint=f"{hint} Logs: {logs}", details=self.telling_log_lines())

    def _models_ready(self) -> bool:
        if not self.key_file.is_file():
            return False
        try:
            token = self.fresh_token("management")
        except (ValueError, KeyError):
            return False  # being written
        except (httpx.TransportError, ServingError):
            return False  # expired during a slow start, and the token API is not up yet
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
