"""Running `kubectl`: one place that builds the command line and turns its failures into clear errors."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from torchship.deploy.errors import ClusterUnreachable, DeployError, KubectlMissing

# What kubectl prints when it never got an answer from an API server (as opposed to a refusal).
_UNREACHABLE = (
    "Unable to connect to the server",
    "connection refused",
    "was refused",
    "dial tcp",
    "no such host",
    "i/o timeout",
    "context deadline exceeded",
    "no configuration has been provided",
    "does not exist",  # error: context "x" does not exist
    "server could not find the requested resource (get version)",
)
FIELD_MANAGER = "torchship"


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass(frozen=True)
class Kubectl:
    context: str | None = None
    namespace: str | None = None
    binary: str = "kubectl"

    def command(self, *args: str) -> list[str]:
        path = shutil.which(self.binary)
        if path is None:
            raise KubectlMissing(
                f"{self.binary} is not installed (not found on PATH)",
                hint="Install kubectl (https://kubernetes.io/docs/tasks/tools/), or use `torchship render` and "
                "apply the manifests your own way.",
            )
        cmd = [path]
        if self.context:
            cmd += ["--context", self.context]
        if self.namespace:
            cmd += ["--namespace", self.namespace]
        return cmd + list(args)

    def run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = self.command(*args)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise DeployError(
                f"`kubectl {' '.join(args[:3])}` did not finish within {timeout_s:.0f} s",
                hint="Check the cluster's health and your connection to it, then try again.",
            ) from None

    def where(self) -> str:
        return f"context {self.context or '(current)'}, namespace {self.namespace or '(the context default)'}"

    def unreachable(self, result: subprocess.CompletedProcess[str]) -> bool:
        return result.returncode != 0 and any(marker in result.stderr for marker in _UNREACHABLE)

    def require_cluster(self) -> str:
        """The server's version; a clear error when there is no reachable cluster."""
        result = self.run("version", "--output=json", "--request-timeout=10s", timeout_s=30)
        if result.returncode != 0:
            raise ClusterUnreachable(
                f"no reachable Kubernetes cluster ({self.where()}): {last_line(result.stderr)}",
                hint="Check `kubectl config current-context` and your credentials, or pass --context.",
            )
        import json

        try:
            server = json.loads(result.stdout)["serverVersion"]["gitVersion"]
        except (ValueError, KeyError):
            raise ClusterUnreachable(
                f"kubectl could not read the server's version ({self.where()})",
                hint="Check `kubectl version` by hand.",
            ) from None
        return server
