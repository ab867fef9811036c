"""The image's environment contract, shared by the entrypoint and the probe (stdlib only).

Ports and the bind address come from the environment; the management API and the gRPC servers are always
on 127.0.0.1 (unreachable from outside the pod), whatever the environment says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ImageEnv:
    model_name: str
    bind_address: str
    inference_port: int
    management_port: int
    metrics_port: int
    grpc_inference_port: int
    grpc_management_port: int
    tmp_dir: str
    log_dir: str

    @staticmethod
    def from_environ(environ: dict[str, str] | None = None) -> ImageEnv:
        env = os.environ if environ is None else environ

        def port(name: str, default: int) -> int:
            value = env.get(name) or str(default)
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise SystemExit(f"error: {name}={value!r} is not a TCP port (1-65535)")
            return int(value)

        return ImageEnv(
            model_name=env.get("TORCHSHIP_MODEL_NAME", ""),
            bind_address=env.get("TORCHSHIP_BIND_ADDRESS") or "0.0.0.0",
            inference_port=port("TORCHSHIP_INFERENCE_PORT", 8080),
            management_port=port("TORCHSHIP_MANAGEMENT_PORT", 8081),
            metrics_port=port("TORCHSHIP_METRICS_PORT", 8082),
            grpc_inference_port=port("TORCHSHIP_GRPC_INFERENCE_PORT", 7070),
            grpc_management_port=port("TORCHSHIP_GRPC_MANAGEMENT_PORT", 7071),
            tmp_dir=env.get("TMPDIR") or "/tmp",
            log_dir=env.get("LOG_LOCATION") or "/var/log/torchship",
        )

    @property
    def local_address(self) -> str:
        """Where a process inside the container reaches the inference port."""
        return LOOPBACK if self.bind_address in ("0.0.0.0", "::", "") else self.bind_address

    def address_properties(self) -> dict[str, str]:
        """TorchServe's address settings; appended to the image's baked config.properties at start."""
        return {
            "inference_address": f"http://{self.bind_address}:{self.inference_port}",
            "management_address": f"http://{LOOPBACK}:{self.management_port}",
            "metrics_address": f"http://{self.bind_address}:{self.metrics_port}",
            "grpc_inference_address": LOOPBACK,
            "grpc_inference_port": str(self.grpc_inference_port),
            "grpc_management_address": LOOPBACK,
            "grpc_management_port": str(self.grpc_management_port),
        }
