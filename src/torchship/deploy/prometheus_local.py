"""A real Prometheus on 127.0.0.1, scraping one or more local targets: the proof that the metrics a
TorchServe (or a rehearsed pod) serves arrive in Prometheus with the values sent.

Debian's `prometheus` package installs `/usr/bin/prometheus` (2.42 here). Its config is rendered from
templates/prometheus/local.yml.j2, its data lives in a temporary directory removed on stop, it listens on a
free loopback port and is stopped by its own pid. Used by the tests, `torchship rehearse --prometheus` and
bench/drills.py.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import torchship
from torchship.deploy.errors import DeployError
from torchship.rendering import render_template
from torchship.serving.ports import HOST, free_port

DEFAULT_BINARY = "/usr/bin/prometheus"
# A proof waits for scrapes: every 2 s keeps it short and leaves a busy TorchServe time to answer one.
SCRAPE_INTERVAL_S = 2
START_TIMEOUT_S = 30.0


class PrometheusUnavailable(DeployError):
    """No Prometheus binary, or it did not start."""


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str  # host:port
    path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)  # added to every series (e.g. namespace)


@dataclass(frozen=True)
class TargetHealth:
    health: str  # "up", "down" or "unknown" (not scraped yet)
    last_error: str
    last_scrape: str  # RFC 3339 time of the last scrape


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


def prometheus_binary() -> str | None:
    """The Prometheus to run: /usr/bin/prometheus, else `prometheus` on PATH; None when neither exists."""
    if Path(DEFAULT_BINARY).is_file():
        return DEFAULT_BINARY
    return shutil.which("prometheus")


def render_local_config(targets: list[ScrapeTarget], scrape_interval_s: int = SCRAPE_INTERVAL_S) -> str:
    return render_template(
        "prometheus/local.yml.j2",
        targets=targets,
        scrape_interval_s=scrape_interval_s,
        torchship_version=torchship.__version__,
    )


class LocalPrometheus:
    """`with LocalPrometheus([ScrapeTarget(...)]) as prometheus:` starts it, `query()` asks its HTTP API."""

    def __init__(
        self,
        targets: list[ScrapeTarget],
        scrape_interval_s: int = SCRAPE_INTERVAL_S,
        binary: str | None = None,
    ):
        self.targets = targets
        self.scrape_interval_s = scrape_interval_s
        self.binary = binary or prometheus_binary()
        self.port: int | None = None
        self.directory: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "Prometheus has not been started"
        return f"http://{HOST}:{self.port}"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> LocalPrometheus:
        if self.binary is None:
            raise PrometheusUnavailable(
                "Prometheus is not installed (no /usr/bin/prometheus, none on PATH)",
                hint="Install it (Debian/Ubuntu: apt-get install prometheus), or leave out --prometheus.",
            )
        self.directory = Path(tempfile.mkdtemp(prefix="torchship-prometheus-"))
        config = self.directory / "prometheus.yml"
        config.write_text(render_local_config(self.targets, self.scrape_interval_s))
        self.port = free_port()
        log = (self.directory / "prometheus.log").open("wb")
        try:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--web.listen-address={HOST}:{self.port}",
                    "--log.level=warn",
                ],
                cwd=self.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusUnavailable(
                    f"Prometheus exited during start-up (exit code {self.process.returncode}): {self.log_tail()}",
                    hint="Its config is rendered from templates/prometheus/local.yml.j2; see the log above.",
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise PrometheusUnavailable(
            f"Prometheus did not get ready within {timeout_s:.0f} s: {self.log_tail()}",
            hint="Is the machine very busy? See the log above.",
        )

    def log_tail(self, lines: int = 5) -> str:
        path = self.directory / "prometheus.log" if self.directory else None
        if path is None or not path.is_file():
            return "(no log)"
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:]) or "(empty log)"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the HTTP API ----------------------------------------------------------------------------------

    def query(self, promql: str) -> list[Sample]:
        """An instant query (/api/v1/query); a vector result as samples, a scalar as one unlabelled sample."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise DeployError(
                f"Prometheus refused the query {promql!r}: {body.get('error', response.text[:200])}",
                hint="The query is torchship's own; this is a bug, please report it.",
            )
        data = body["data"]
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        return [Sample(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]

    def target_health(self) -> dict[str, TargetHealth]:
        """job -> its last scrape, from /api/v1/targets."""
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=10)
        active = response.json()["data"]["activeTargets"]
        return {
            t["labels"]["job"]: TargetHealth(t["health"], t.get("lastError", ""), t.get("lastScrape", ""))
            for t in active
        }

    def wait_for_scrape(self, job: str, timeout_s: float = 30.0) -> bool:
        """True once a scrape of `job` succeeded (`up` is 1); False when none did within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(s.value == 1 for s in self.query(f'up{{job="{job}"}}')):
                return True
            time.sleep(self.scrape_interval_s / 2)
        return False

    def wait_until(
        self, promql: str, accept: Callable[[list[Sample]], bool], timeout_s: float = 30.0
    ) -> list[Sample]:
        """Query until `accept(samples)` holds or `timeout_s` passes; the last answer either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            samples = self.query(promql)
            if accept(samples) or time.monotonic() > deadline:
                return samples
            time.sleep(self.scrape_interval_s / 2)
