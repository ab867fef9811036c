"""The image's OCI labels: which model, which .mar, what the gate said, which torchship and commit.
No secrets: only values already in the stage records."""

from __future__ import annotations

import os
import subprocess

import torchship
from torchship.image.dockerfile import UID, variant_for
from torchship.spec import ModelSpec


def git_commit(explicit: str | None) -> str:
    """The commit being shipped: given, CodeBuild's resolved source version, or the checkout's HEAD."""
    if explicit:
        return explicit
    if os.environ.get("CODEBUILD_RESOLVED_SOURCE_VERSION"):
        return os.environ["CODEBUILD_RESOLVED_SOURCE_VERSION"]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def image_labels(spec: ModelSpec, mar_sha256: str, verdict: str, commit: str) -> dict[str, str]:
    """The labels the Dockerfile's LABEL instruction must produce from the build arguments (checked after
    every build, and by tests/test_image.py against the rendered Dockerfile's text)."""
    return {
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.version": spec.version,
        "org.opencontainers.image.description": (
            f"{variant_for(spec).serving} serving {spec.name} {spec.version}, built by torchship"
        ),
        "io.torchship.model.name": spec.name,
        "io.torchship.model.version": spec.version,
        "io.torchship.mar.sha256": mar_sha256,
        "io.torchship.gate.verdict": verdict,
        "io.torchship.version": torchship.__version__,
        "io.torchship.uid": str(UID),
        "org.opencontainers.image.revision": commit,
    }
