"""The serving image's Dockerfile: rendered from the templates shipped inside the package
(templates/image/Dockerfile.j2, or Dockerfile.neuron.j2 for a Neuron-compiled model), never read from a
checkout, so `torchship image` works the same from any directory."""

from __future__ import annotations

from dataclasses import dataclass

from torchship.rendering import render_template
from torchship.spec import ModelSpec

# The image's user: numeric and >= 10000 so Kubernetes can verify runAsNonRoot (the label and the manifests
# carry the same number).
UID = 10001


@dataclass(frozen=True)
class DockerfileVariant:
    """One serving image recipe: its template and the base image its BASE_IMAGE argument defaults to."""

    name: str
    template: str
    default_base_image: str
    # What the image's description label says it serves with (labels.py compares it after every build).
    serving: str


CPU = DockerfileVariant(
    name="cpu",
    template="image/Dockerfile.j2",
    default_base_image="debian:bookworm-slim",
    serving="TorchServe 0.12.0",
)
NEURON = DockerfileVariant(
    name="neuron",
    template="image/Dockerfile.neuron.j2",
    default_base_image="public.ecr.aws/neuron/pytorch-inference-neuronx:2.1.2-neuronx-py310-sdk2.20.2-ubuntu20.04",
    serving="TorchServe 0.12.0 (Neuron)",
)
VARIANTS = (CPU, NEURON)


def variant_for(spec: ModelSpec) -> DockerfileVariant:
    """A Neuron-compiled .mar needs the Neuron runtime and torch-neuronx of AWS's base; every other
    backend runs on the Debian CPU image."""
    return NEURON if spec.compile.backend == "neuron" else CPU


def render_dockerfile(variant: DockerfileVariant) -> str:
    return render_template(variant.template, uid=UID)
