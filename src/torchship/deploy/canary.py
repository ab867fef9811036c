"""A canary: the spec's version running beside the stable one, behind the same Service.

Two ways to split the traffic:
- `replicas` (any cluster): both Deployments' pods carry the model's labels, so the model's Service spreads
  requests over all ready pods; the split is the pod count. canary = max(1, round(total x percent)),
  stable = max(1, total - canary), total = deploy.replicas. Each track gets its own HorizontalPodAutoscaler
  within its share of deploy.max_replicas, so at the same CPU per pod both scale alike.
- `gateway` (clusters with the Gateway API and a mesh that implements it): a Gateway API v1 HTTPRoute whose
  parent is the model's Service sends `percent` of the requests to a canary-only Service and the rest to a
  stable-only one. The stable keeps all its replicas; the canary gets the same round(total x percent) pods.

Which image the stable runs: rendering needs to know, since the spec only describes the new version.
`render --canary` takes the stable version (`--stable-version`): its image is found the way a plain render
finds one (that version's image.json in outputs/, else deploy.image with the version as tag), or given
outright (`--stable-image`). `deploy --canary` never guesses: it reads the stable Deployment the cluster
runs (its image and version label) and applies only the canary's objects, so the stable is untouched.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from torchship.deploy.errors import DeployError
from torchship.deploy.inputs import IMAGE_RECORD, DeployInputs, gather_inputs, image_of, read_image_record
from torchship.deploy.render import (
    CANARY_FILES,
    CANARY_REPLICAS_FILES,
    KUSTOMIZATION,
    RESOURCE_FILES,
    CanaryView,
    RenderContext,
    RenderedBase,
    context_of,
    parse_manifests,
    render_files,
)
from torchship.settings import Settings
from torchship.spec import ModelSpec

Route = Literal["replicas", "gateway"]
ROUTES: tuple[Route, ...] = ("replicas", "gateway")
TRACK_LABEL = "torchship.dev/track"
CANARY_SUFFIX = "-canary"
# Annotations on the canary Deployment: what promote/abort read back from the cluster.
ROUTE_ANNOTATION = "torchship.dev/canary-route"
PERCENT_ANNOTATION = "torchship.dev/canary-percent"
VERSION_LABEL = "app.kubernetes.io/version"


@dataclass(frozen=True)
class TrackImage:
    """One track's version and the image that runs it: the stable's (given, or read from the cluster), or the
    canary's as the cluster runs it."""

    version: str
    image: str
    image_pinned_by: str  # "digest" or "tag"


@dataclass(frozen=True)
class CanaryPlan:
    percent: int
    route: Route
    stable: TrackImage


@dataclass(frozen=True)
class Split:
    """Pods per track at rest (the HPAs' minReplicas) and their ceilings (maxReplicas)."""

    total: int
    canary: int
    stable: int
    canary_max: int
    stable_max: int


def _round_half_up(numerator: int, denominator: int) -> int:
    """round(numerator / denominator) with halves up: Python's round() sends 0.5 to 0 and 2.5 to 2."""
    return (2 * numerator + denominator) // (2 * denominator)


def check_percent(percent: int) -> None:
    if not 1 <= percent <= 99:
        raise DeployError(
            f"--canary {percent}: a canary's share is a percentage from 1 to 99",
            hint="Pass e.g. --canary 10; to send everything to the new version, promote the canary "
            "(deploy --promote-canary) or deploy without --canary.",
        )


def split(spec: ModelSpec, percent: int, route: Route) -> Split:
    check_percent(percent)
    total = spec.deploy.replicas
    most = spec.deploy.max_replicas or 2 * total
    canary = max(1, _round_half_up(total * percent, 100))
    canary_max = max(canary, _round_half_up(most * percent, 100))
    if route == "gateway":
        # The weights split the traffic: the stable keeps the replicas and ceiling it has.
        return Split(total, canary, total, canary_max, max(total, most))
    stable = max(1, total - canary)
    return Split(total, canary, stable, canary_max, max(stable, most - canary_max))


def check_versions(spec: ModelSpec, stable: TrackImage) -> None:
    if stable.version == spec.version:
        raise DeployError(
            f"the canary would be version {spec.version}, the version the stable already runs "
            f"({stable.image})",
            hint="A canary compares two versions: bump the spec's version, or deploy without --canary.",
        )


def stable_ref(spec: ModelSpec, settings: Settings, version: str, image: str | None = None) -> TrackImage:
    """The stable for `render --canary`: `image` when given, else that version's image the way a plain render
    of it finds one (its image.json under outputs/, else deploy.image with the version as tag)."""
    if image:
        return TrackImage(version, image, "digest" if "@sha256:" in image else "tag")
    old = spec.model_copy(update={"version": version})
    found, pinned_by = image_of(
        old, read_image_record(settings.stage_root(spec.name, version) / IMAGE_RECORD)
    )
    return TrackImage(version, found, pinned_by)


def _track_spec(spec: ModelSpec, version: str, replicas: int, max_replicas: int) -> ModelSpec:
    deploy = spec.deploy.model_copy(update={"replicas": replicas, "max_replicas": max_replicas})
    return spec.model_copy(update={"version": version, "deploy": deploy})


def canary_files(route: Route) -> tuple[str, ...]:
    return CANARY_FILES if route == "gateway" else CANARY_REPLICAS_FILES


def render_canary(
    spec: ModelSpec, inputs: DeployInputs, plan: CanaryPlan, weight: int | None = None
) -> RenderedBase:
    """The stable base with the stable's image and version, plus the canary's ConfigMap, Deployment and HPA
    (and, for `gateway`, the two track Services and the HTTPRoute). `weight`: the route's canary weight
    (default the plan's percent; promote and abort set it to 0 before removing the canary)."""
    check_versions(spec, plan.stable)
    parts = split(spec, plan.percent, plan.route)
    actual = (
        100.0 * parts.canary / (parts.canary + parts.stable) if plan.route == "replicas" else plan.percent
    )
    view = CanaryView(
        percent=plan.percent,
        route=plan.route,
        weight=plan.percent if weight is None else weight,
        total=parts.total,
        canary_replicas=parts.canary,
        stable_replicas=parts.stable,
        actual_percent=actual,
        canary_version=spec.version,
        stable_version=plan.stable.version,
    )
    files = (*RESOURCE_FILES, *canary_files(plan.route))
    stable_inputs = dataclasses.replace(
        inputs, image=plan.stable.image, image_pinned_by=plan.stable.image_pinned_by
    )
    stable = dataclasses.replace(
        context_of(_track_spec(spec, plan.stable.version, parts.stable, parts.stable_max), stable_inputs),
        canary=view,
        resource_files=files,
    )
    canary = dataclasses.replace(
        context_of(_track_spec(spec, spec.version, parts.canary, parts.canary_max), inputs),
        suffix=CANARY_SUFFIX,
        track="canary",
        canary=view,
        resource_files=files,
    )
    contexts: dict[str, RenderContext] = dict.fromkeys(RESOURCE_FILES, stable)
    contexts.update(dict.fromkeys(canary_files(plan.route), canary))
    contexts[KUSTOMIZATION] = stable
    rendered = render_files(spec, contexts)
    return RenderedBase(rendered, stable, inputs, parse_manifests(rendered), canary_context=canary)


def gathered_canary(
    spec: ModelSpec, settings: Settings, plan: CanaryPlan, weight: int | None = None
) -> RenderedBase:
    return render_canary(spec, gather_inputs(spec, settings), plan, weight)
