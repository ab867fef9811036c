"""Specs and renderings shared by the deploy tests (render, policy, deploy, rehearse)."""

from __future__ import annotations

import json
from pathlib import Path

from torchship.deploy.inputs import DeployInputs, unmeasured_inputs
from torchship.deploy.render import RenderedBase, render
from torchship.image.record import ImageRecord
from torchship.project import load_effective_spec
from torchship.spec import ModelSpec

REPO = Path(__file__).resolve().parent.parent
DEMO_SPEC = REPO / "models" / "minilm-embeddings" / "model.yaml"
# Installs podman, buildah, runc, debootstrap (root, Debian) when LocalContainers.require finds them missing.
CONTAINER_TOOLS_INSTALLER = REPO / "scripts" / "install-container-tools.sh"

SPEC = """name: tiny-embeddings
version: 0.1.0
task: embeddings
source: ./model
serve: {{workers: {workers}, response_timeout_s: {timeout}}}
compile: {{backend: {backend}}}
deploy: {deploy}
"""


def spec_file(
    tmp_path: Path, deploy: str = "{}", workers: int = 1, timeout: int = 120, backend="torchscript"
) -> Path:
    path = tmp_path / "spec" / "model.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SPEC.format(deploy=deploy, workers=workers, timeout=timeout, backend=backend))
    (path.parent / "examples.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    return path


def rendered_for(spec: ModelSpec, inputs: DeployInputs | None = None) -> RenderedBase:
    return render(spec, inputs or unmeasured_inputs(spec))


def demo() -> tuple[ModelSpec, RenderedBase]:
    spec = load_effective_spec(DEMO_SPEC)  # as `torchship render` sees it: torchship.toml laid over it
    return spec, rendered_for(spec)


def doc(rendered: RenderedBase, kind: str) -> dict:
    return next(m.doc for m in rendered.manifests if m.kind == kind)


def container(rendered: RenderedBase) -> dict:
    return doc(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def write_image_record(outputs: Path, spec: ModelSpec, **fields) -> Path:
    path = outputs / spec.name / spec.version / "image" / "image.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = ImageRecord(
        **{
            "reference": f"localhost/torchship/{spec.name}:{spec.version}",
            "digest": "sha256:" + "ab" * 32,
            "pushed": None,
            "size_bytes": 1_770_264_575,
            "labels": {},
            "served_parity": {"ok": True, "max_abs": 1.3e-7, "compared": 17},
            "time_to_ready_s": 19.2,
            "time_to_first_200_s": 19.6,
            "build_s": 430.0,
            "uid": 10001,
            "writable_paths": ["/tmp", "/var/log/torchship"],
            "ports": {"inference": 8080, "management": 8081, "metrics": 8082},
            "model_name": spec.name,
            "model_version": spec.version,
            "builder": "podman",
            "base_image": "localhost/debian:bookworm-slim",
            **fields,
        }
    )
    record.write(path.parent)
    return path
