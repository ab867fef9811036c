"""Run the built image as it will run in a pod — read-only root, UID 10001, only the writable paths as
tmpfs — on loopback ports, wait for the image's own readiness probe, and check served parity on the
spec's examples against the source model (the verify stage's comparison, reused)."""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from torchship.handlers.tasks import RequestSchema
from torchship.image.builders import Tool
from torchship.image.context import WRITABLE_PATHS
from torchship.image.dockerfile import UID
from torchship.image.errors import ImageServeError
from torchship.serving.ports import HOST, free_ports
from torchship.validate.served import Judge, compare_served, query

PROBE = "/opt/torchship/bin/probe"


@dataclass(frozen=True)
class ContainerPorts:
    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int

    @staticmethod
    def choose() -> ContainerPorts:
        return ContainerPorts(*free_ports(5))

    def env(self) -> dict[str, str]:
        return {
            "TORCHSHIP_BIND_ADDRESS": HOST,  # host networking: never listen beyond loopback in a check
            "TORCHSHIP_INFERENCE_PORT": str(self.inference),
            "TORCHSHIP_MANAGEMENT_PORT": str(self.management),
            "TORCHSHIP_METRICS_PORT": str(self.metrics),
            "TORCHSHIP_GRPC_INFERENCE_PORT": str(self.grpc_inference),
            "TORCHSHIP_GRPC_MANAGEMENT_PORT": str(self.grpc_management),
        }


@dataclass(frozen=True)
class ServedCheck:
    parity: dict[str, Any]
    served: dict[str, Any]
    time_to_ready_s: float
    time_to_first_200_s: float
    stop_s: float | None
    exit_code: int | None


class _Endpoint:
    """What validate.served.query needs from a server: a client for the inference port (no token: the
    image's authorization is the network's, see the README's Ship section)."""

    def __init__(self, url: str):
        self.url = url

    def client(self, timeout_s: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s)


class RunningImage:
    """`with RunningImage(runtime, ref, name) as c:` — started, READY (by the image's probe), always removed."""

    def __init__(self, runtime: Tool, reference: str, model_name: str, ready_timeout_s: float = 240.0,
                 env: dict[str, str] | None = None):  # fmt: skip
        self.runtime = runtime
        self.reference = reference
        self.model_name = model_name
        self.ready_timeout_s = ready_timeout_s
        self.ports = ContainerPorts.choose()
        self.extra_env = env or {}
        self.name = f"torchship-check-{uuid.uuid4().hex[:10]}"
        self.started_at = 0.0
        self.time_to_ready_s = 0.0
        self.stop_s: float | None = None
        self.exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.ports.inference}"

    def probe(self, kind: str) -> subprocess.CompletedProcess:
        return self.runtime.exec(self.name, [PROBE, kind])

    def start(self) -> RunningImage:
        self.started_at = time.perf_counter()
        self.runtime.run_detached(
            self.reference, self.name, {**self.ports.env(), **self.extra_env}, WRITABLE_PATHS, f"{UID}:{UID}"
        )
        try:
            self._wait_ready()
        except BaseException:
            self.remove()
            raise
        self.time_to_ready_s = time.perf_counter() - self.started_at
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        last = ""
        while time.monotonic() < deadline:
            if not self.runtime.is_running(self.name):
                raise ImageServeError(
                    f"the container of {self.reference} exited during start-up "
                    f"(exit code {self.runtime.exit_code(self.name)})",
                    hint="Its last log lines are below; run it by hand with the same flags to see more.",
                    details=self.runtime.logs(self.name),
                )
            try:
                done = self.probe("ready")
            except subprocess.TimeoutExpired:
                continue
            last = (done.stdout + done.stderr).strip()
            if done.returncode == 0:
                return
            time.sleep(1.0)
        raise ImageServeError(
            f"{self.reference} did not report {self.model_name} READY within {self.ready_timeout_s:.0f} s "
            f"(last probe: {last or 'no answer'})",
            hint="Raise TORCHSHIP_IMAGE_READY_TIMEOUT_S if the model is just slow to load.",
            details=self.runtime.logs(self.name),
        )

    def stop(self) -> None:
        """SIGTERM (the image's STOPSIGNAL), timed: a graceful image exits 0 well within the grace period."""
        if self.stop_s is not None:
            return
        started = time.perf_counter()
        self.runtime.stop(self.name, timeout_s=30)
        self.stop_s = time.perf_counter() - started
        self.exit_code = self.runtime.exit_code(self.name)

    def remove(self) -> None:
        self.runtime.remove_container(self.name)

    def __enter__(self) -> RunningImage:
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.remove()


def check_served(
    container: RunningImage,
    bodies: list[Any],
    schema: RequestSchema,
    expected: list[Any],
    atol: float,
    rtol: float,
    judge: Judge | None = None,
) -> ServedCheck:
    """Query the running image the way verify queries TorchServe, and compare with the source model."""
    endpoint = _Endpoint(container.url)
    with endpoint.client() as client:
        first = client.post(f"/predictions/{container.model_name}", json=bodies[0])
    time_to_first_200 = time.perf_counter() - container.started_at
    if first.status_code != 200:
        raise ImageServeError(
            f"the image answered {first.status_code} to a valid request: {first.text[:300]}",
            details=container.runtime.logs(container.name),
        )
    served = query(endpoint, container.model_name, bodies, schema)
    parity = compare_served(served, expected, bodies, atol, rtol, judge=judge)
    return ServedCheck(parity, served, container.time_to_ready_s, time_to_first_200, None, None)
