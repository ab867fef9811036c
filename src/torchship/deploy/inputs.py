"""What rendering needs beyond the spec: the image to run and how long it takes to get ready.

Both are measured by earlier stages: `image` writes image.json (reference, digest, the UID it runs as,
its time to ready in a container); `verify` records how long TorchServe took to load the model. The
image contract (UID, ports, writable paths) is the same constant set the image work builds to; image.json
repeats it, and where it does its values win.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torchship.deploy.errors import DeployError
from torchship.settings import Settings
from torchship.spec import ModelSpec

IMAGE_RECORD = Path("image") / "image.json"
VERIFY_RECORD = Path("verify") / "stage.json"

# The image contract: TorchServe runs as this numeric UID/GID, writes only under these paths and answers
# on these ports; /opt/torchship/bin/probe tells readiness (a READY worker) from liveness (/ping).
CONTRACT_UID = 10001
CONTRACT_WRITABLE_PATHS = ("/tmp", "/var/log/torchship")
CONTRACT_PORTS = {"inference": 8080, "management": 8081, "metrics": 8082}
CONTRACT_GRPC_PORTS = {"inference": 7070, "management": 7071}
PROBE = "/opt/torchship/bin/probe"

# Without a measurement the startup budget is sized for a slow load; say so in the rendered manifest.
UNMEASURED_TIME_TO_READY_S = 60.0
UNMEASURED = "the default, nothing measured"


@dataclass(frozen=True)
class Ports:
    inference: int = CONTRACT_PORTS["inference"]
    management: int = CONTRACT_PORTS["management"]
    metrics: int = CONTRACT_PORTS["metrics"]


@dataclass(frozen=True)
class DeployInputs:
    image: str  # what the Deployment runs: repo@sha256:... when a digest is known, else repo:tag
    image_pinned_by: str  # "digest" or "tag"
    time_to_ready_s: float
    time_to_ready_source: str  # "image.json", "verify" or UNMEASURED
    uid: int = CONTRACT_UID
    writable_paths: tuple[str, ...] = CONTRACT_WRITABLE_PATHS
    ports: Ports = field(default_factory=Ports)


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DeployError(
            f"{path} is not readable JSON ({exc})",
            hint="Re-run the stage that writes it, or delete it to render without its measurements.",
        ) from None
    if not isinstance(data, dict):
        raise DeployError(f"{path} is not a JSON object", hint="Re-run the stage that writes it.")
    return data


def _repository(reference: str) -> str:
    """`registry:5000/team/model:1.0.0` → `registry:5000/team/model` (a ':' after the last '/' is a tag)."""
    repo = reference.split("@", 1)[0]
    slash = repo.rfind("/")
    colon = repo.rfind(":")
    return repo[:colon] if colon > slash else repo


def image_of(spec: ModelSpec, record: dict | None) -> tuple[str, str]:
    """The image reference to deploy: pinned by the registry digest once the image was pushed.

    image.json's `digest` is the local image ID (its config digest): a registry knows manifests by their
    own digest, so only `pushed` (repo@sha256:<manifest digest>) can pin a pull. Before a push the
    reference's tag (the model version) is the pin; `render --check` accepts a version tag, never latest.
    """
    if record is not None:
        pushed = record.get("pushed")
        if isinstance(pushed, str) and "@sha256:" in pushed:
            repo = spec.deploy.image or _repository(pushed)
            return f"{repo}@{pushed.split('@', 1)[1]}", "digest"
        reference = record.get("reference")
        if isinstance(reference, str) and reference:
            return (f"{spec.deploy.image}:{spec.version}" if spec.deploy.image else reference), "tag"
    # No image built here yet: the model's own version is the (immutable by convention) tag.
    repo = spec.deploy.image or f"torchship/{spec.name}"
    return f"{repo}:{spec.version}", "tag"


def unmeasured_inputs(spec: ModelSpec) -> DeployInputs:
    """From the spec alone: reproducible anywhere (the committed k8s/ is rendered this way)."""
    image, pinned_by = image_of(spec, None)
    return DeployInputs(image, pinned_by, UNMEASURED_TIME_TO_READY_S, UNMEASURED)


def gather_inputs(spec: ModelSpec, settings: Settings) -> DeployInputs:
    root = settings.stage_root(spec.name, spec.version)
    image_record = _read_json(root / IMAGE_RECORD)
    image, pinned_by = image_of(spec, image_record)
    ready_s, source = UNMEASURED_TIME_TO_READY_S, UNMEASURED
    verify = _read_json(root / VERIFY_RECORD)
    verify_ready = ((verify or {}).get("details") or {}).get("startup_s")
    if isinstance(verify_ready, int | float) and verify_ready > 0:
        ready_s, source = float(verify_ready), "verify"
    # The container's own time to ready (archive extraction, JVM start in the image) beats the host's.
    measured = (image_record or {}).get("time_to_ready_s")
    if isinstance(measured, int | float) and measured > 0:
        ready_s, source = float(measured), "image.json"
    if image_record is None:
        return DeployInputs(image, pinned_by, ready_s, source)
    ports = image_record.get("ports") or {}
    return DeployInputs(
        image=image,
        image_pinned_by=pinned_by,
        time_to_ready_s=ready_s,
        time_to_ready_source=source,
        uid=int(image_record.get("uid") or CONTRACT_UID),
        writable_paths=tuple(image_record.get("writable_paths") or CONTRACT_WRITABLE_PATHS),
        ports=Ports(**{k: int(v) for k, v in ports.items() if k in CONTRACT_PORTS}),
    )
