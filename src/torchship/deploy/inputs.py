"""What rendering needs beyond the spec: the image to run and how long it takes to get ready.

Both are measured by earlier stages: `image` writes image.json (reference, digest, the UID it runs as,
its time to ready in a container); `verify` records how long TorchServe took to load the model. The
image contract (UID, ports, writable paths) is the constant set the image is built to; image.json records
it, and its values win.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torchship.deploy.errors import DeployError
from torchship.deploy.served_labels import read_verified_labels
from torchship.image.record import ImageRecord
from torchship.settings import Settings
from torchship.spec import ModelSpec
from torchship.tune.records import TuneResult

IMAGE_RECORD = Path("image") / "image.json"
VERIFY_RECORD = Path("verify") / "stage.json"
VERIFY_ANSWERS = Path("verify") / "answers.json"
TUNE_RECORD = Path("tune") / "tune.json"

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
    # verify's served p50 per request (ms), and its answer sheet's top labels (label -> texts), if measured.
    served_p50_ms: float | None = None
    verified_labels: dict[str, int] = field(default_factory=dict)
    # What `tune` measured on this machine (tune/tune.json), for the HPA's load targets (deploy/autoscale.py).
    tune: TuneResult | None = None


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


def read_image_record(path: Path) -> ImageRecord | None:
    """image.json as the image stage wrote it (its own pydantic model), or None before any image build.

    It describes an image built and checked by the torchship named in it; a record of another version is read
    as long as its format is one this torchship knows (a newer format is refused: versions.check_format)."""
    if not path.is_file():
        return None
    try:
        return ImageRecord.read_file(path)
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or pydantic's ValidationError
        raise DeployError(
            f"{path} is not a valid image record ({str(exc).splitlines()[0]})",
            hint="Re-run `torchship image SPEC` to write it again.",
        ) from None


def read_tune(path: Path) -> TuneResult | None:
    """tune.json as `tune` wrote it, or None when no tune ran."""
    if not path.is_file():
        return None
    try:
        return TuneResult.model_validate_json(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or pydantic's ValidationError
        raise DeployError(
            f"{path} is not a readable tune record ({str(exc).splitlines()[0]})",
            hint="Re-run `torchship tune SPEC`, or delete it to render without its measurements.",
        ) from None


def image_of(spec: ModelSpec, record: ImageRecord | None) -> tuple[str, str]:
    """The image reference to deploy: pinned by the registry digest once the image was pushed.

    image.json's `digest` is the local image ID (its config digest): a registry knows manifests by their
    own digest, so only `pushed` (repo@sha256:<manifest digest>) can pin a pull. Before a push the
    reference's tag (the model version) is the pin; `render --check` accepts a version tag, never latest.
    """
    if record is not None:
        if record.pushed and "@sha256:" in record.pushed:
            repo = spec.deploy.image or _repository(record.pushed)
            return f"{repo}@{record.pushed.split('@', 1)[1]}", "digest"
        return (f"{spec.deploy.image}:{spec.version}" if spec.deploy.image else record.reference), "tag"
    # No image built here yet: the model's own version is the (immutable by convention) tag.
    repo = spec.deploy.image or f"torchship/{spec.name}"
    return f"{repo}:{spec.version}", "tag"


def unmeasured_inputs(spec: ModelSpec) -> DeployInputs:
    """From the spec alone: reproducible anywhere (the committed k8s/ is rendered this way)."""
    image, pinned_by = image_of(spec, None)
    return DeployInputs(image, pinned_by, UNMEASURED_TIME_TO_READY_S, UNMEASURED)


def gather_inputs(spec: ModelSpec, settings: Settings) -> DeployInputs:
    root = settings.stage_root(spec.name, spec.version)
    record = read_image_record(root / IMAGE_RECORD)
    image, pinned_by = image_of(spec, record)
    ready_s, source = UNMEASURED_TIME_TO_READY_S, UNMEASURED
    verify = _read_json(root / VERIFY_RECORD)
    details = (verify or {}).get("details") or {}
    verify_ready = details.get("startup_s")
    if isinstance(verify_ready, int | float) and verify_ready > 0:
        ready_s, source = float(verify_ready), "verify"
    p50 = (details.get("latency_ms") or {}).get("p50")
    served_p50_ms = float(p50) if isinstance(p50, int | float) and p50 > 0 else None
    verified_labels = dict(read_verified_labels(spec.task, root / VERIFY_ANSWERS))
    tune = read_tune(root / TUNE_RECORD)
    if record is None:
        return DeployInputs(
            image,
            pinned_by,
            ready_s,
            source,
            served_p50_ms=served_p50_ms,
            verified_labels=verified_labels,
            tune=tune,
        )
    # The container's own time to ready (archive extraction, JVM start in the image) beats the host's.
    if record.time_to_ready_s > 0:
        ready_s, source = record.time_to_ready_s, "image.json"
    return DeployInputs(
        image=image,
        image_pinned_by=pinned_by,
        time_to_ready_s=ready_s,
        time_to_ready_source=source,
        uid=record.uid,
        writable_paths=tuple(record.writable_paths) or CONTRACT_WRITABLE_PATHS,
        ports=Ports(record.ports.inference, record.ports.management, record.ports.metrics),
        served_p50_ms=served_p50_ms,
        verified_labels=verified_labels,
        tune=tune,
    )
