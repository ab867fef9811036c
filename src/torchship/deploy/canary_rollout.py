"""`torchship deploy --canary PERCENT`, `--promote-canary`, `--abort-canary`: a canary's life in a cluster.

The stable is whatever the cluster runs now: its image and version are read from the live Deployment, never
re-rendered, so starting a canary never restarts a stable pod. What each step applies (server-side, as
`deploy` does) and removes:

- canary: the canary's ConfigMap, Deployment and HPA (gateway: and the two track Services); once its rollout
  completes and a smoke request through it answers, the traffic share: the stable HPA's smaller bounds
  (replicas), or the HTTPRoute (gateway). A canary that does not get ready is removed again; the stable has
  not been touched.
- promote: the stable base of the spec, with the image the canary runs (the image that was measured), then
  the stable's rollout; then the route's canary weight to 0, and the canary's objects removed. A stable that
  fails its rollout is undone and the canary left as it was.
- abort: the route's canary weight to 0 (gateway) or the stable HPA's full bounds (replicas), then the
  canary's objects removed. Safe to repeat.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchship.deploy.canary import (
    CANARY_SUFFIX,
    PERCENT_ANNOTATION,
    ROUTE_ANNOTATION,
    TRACK_LABEL,
    VERSION_LABEL,
    CanaryPlan,
    Route,
    TrackImage,
    check_percent,
    check_versions,
    gathered_canary,
)
from torchship.deploy.check import check_base
from torchship.deploy.errors import ClusterUnreachable, DeployError, RolloutFailed
from torchship.deploy.inputs import gather_inputs
from torchship.deploy.kubectl import Kubectl, last_line
from torchship.deploy.render import KUSTOMIZATION, RenderedBase, render, render_files, write_base
from torchship.deploy.rollout import (
    current_revision,
    dry_run_diff,
    pod_events,
    port_forward_smoke,
    roll_back,
    server_side_apply,
    with_namespace,
)
from torchship.examples import load_examples
from torchship.settings import Settings
from torchship.spec import ModelSpec

GATEWAY_RESOURCE = "httproutes.gateway.networking.k8s.io"
# Applied first (the canary itself), then once it is ready (its share of the traffic).
START = {
    "replicas": ("configmap-canary.yaml", "deployment-canary.yaml", "hpa-canary.yaml"),
    "gateway": ("configmap-canary.yaml", "deployment-canary.yaml", "hpa-canary.yaml", "service-tracks.yaml"),
}
SHARE = {"replicas": ("hpa.yaml",), "gateway": ("httproute.yaml",)}
DELETE_TIMEOUT_S = 300


@dataclass
class CanaryResult:
    action: str  # "canary", "promote", "abort"
    stable: TrackImage | None = None
    canary: TrackImage | None = None
    route: str = "replicas"
    applied: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    split: str = ""  # one line: the share the canary gets
    smoke: str = ""
    dry_run_output: str = ""


def live_deployment(kubectl: Kubectl, name: str) -> dict[str, Any] | None:
    result = kubectl.run("get", "deployment", name, "--output=json", timeout_s=30)
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise DeployError(f"kubectl could not read deployment/{name}: {last_line(result.stderr)}")
    return json.loads(result.stdout)


def running(deployment: dict[str, Any]) -> TrackImage:
    """The version (label) and image a live Deployment's pod template runs."""
    template = deployment.get("spec", {}).get("template", {})
    containers = template.get("spec", {}).get("containers") or [{}]
    container = next((c for c in containers if c.get("name") == "torchserve"), containers[0])
    image = str(container.get("image", ""))
    version = (template.get("metadata", {}).get("labels") or {}).get(VERSION_LABEL) or "(unlabelled)"
    return TrackImage(version, image, "digest" if "@sha256:" in image else "tag")


def _cluster(kubectl: Kubectl, progress: Callable[[str], None]) -> None:
    try:
        server = kubectl.require_cluster()
    except ClusterUnreachable as exc:
        raise ClusterUnreachable(
            f"{exc.message}; a canary is planned against the stable the cluster runs, so nothing was done",
            hint="Check the context; to see the manifests offline: torchship render SPEC --canary PERCENT "
            "--stable-version VERSION.",
        ) from None
    progress(f"cluster {server} ({kubectl.where()})")


def _stable(kubectl: Kubectl, name: str) -> tuple[dict[str, Any], TrackImage]:
    live = live_deployment(kubectl, name)
    if live is None:
        raise DeployError(
            f"no stable deployment/{name} ({kubectl.where()}): a canary runs beside the version serving now",
            hint="Deploy the stable version first: torchship deploy SPEC (without --canary).",
        )
    return live, running(live)


def _has_gateway_api(kubectl: Kubectl) -> bool:
    listed = kubectl.run(
        "api-resources", "--api-group=gateway.networking.k8s.io", "--output=name", timeout_s=60
    )
    return listed.returncode == 0 and GATEWAY_RESOURCE in listed.stdout.split()


def _apply(kubectl: Kubectl, base: Path, files: tuple[str, ...]) -> list[str]:
    return server_side_apply(kubectl, *(arg for file in files for arg in ("-f", str(base / file))))


def canary_objects(name: str, route: str) -> list[str]:
    """What a canary adds, in the order it is removed: the Deployment first (while the route, at weight 0,
    still keeps the model's Service from spreading requests over the pods going away), then the route and the
    track Services."""
    objects = [
        f"deployment/{name}{CANARY_SUFFIX}",
        f"horizontalpodautoscaler/{name}{CANARY_SUFFIX}",
        f"configmap/{name}{CANARY_SUFFIX}-env",
    ]
    if route == "gateway":
        objects += [
            f"{GATEWAY_RESOURCE}/{name}{CANARY_SUFFIX}",
            f"service/{name}-canary",
            f"service/{name}-stable",
        ]
    return objects


def _remove(kubectl: Kubectl, name: str, route: str, progress: Callable[[str], None]) -> list[str]:
    objects = canary_objects(name, route)
    progress(f"removing the canary: {', '.join(objects)}")
    deleted = kubectl.run(
        "delete", *objects, "--ignore-not-found", "--wait=true", f"--timeout={DELETE_TIMEOUT_S}s",
        timeout_s=DELETE_TIMEOUT_S + 30,
    )  # fmt: skip
    if deleted.returncode != 0:
        raise DeployError(
            f"kubectl delete failed: {last_line(deleted.stderr)}",
            details=deleted.stderr.strip(),
            hint=f"Remove what is left by hand: kubectl delete {' '.join(objects)} --ignore-not-found",
        )
    return [line.strip() for line in deleted.stdout.splitlines() if line.strip()]


def _rollout(kubectl: Kubectl, deployment: str, timeout_s: int) -> str | None:
    status = kubectl.run(
        "rollout", "status", f"deployment/{deployment}", f"--timeout={timeout_s}s", timeout_s=timeout_s + 30
    )
    return (
        None
        if status.returncode == 0
        else f"rollout did not complete: {last_line(status.stderr or status.stdout)}"
    )


def _split_line(rendered: RenderedBase) -> str:
    k = rendered.context.canary
    assert k is not None
    if k.route == "gateway":
        return f"HTTPRoute weights {k.weight} canary / {100 - k.weight} stable"
    return (
        f"{k.canary_replicas} canary + {k.stable_replicas} stable pod(s) at rest = {k.actual_percent:.1f}% of "
        f"requests to the canary (asked {k.percent}%)"
    )


def deploy_canary(
    spec: ModelSpec,
    settings: Settings,
    kubectl: Kubectl,
    percent: int,
    route: Route = "replicas",
    dry_run: bool = False,
    smoke: bool = True,
    progress: Callable[[str], None] = lambda message: None,
) -> CanaryResult:
    """Start a canary of the spec's version beside the stable the cluster runs (module doc)."""
    check_percent(percent)
    spec = with_namespace(spec, kubectl.namespace)
    name = spec.name
    _cluster(kubectl, progress)
    live, stable = _stable(kubectl, name)
    check_versions(spec, stable)
    if route == "gateway":
        if not _has_gateway_api(kubectl):
            raise DeployError(
                f"--canary-route gateway: the cluster serves no Gateway API HTTPRoute ({GATEWAY_RESOURCE})",
                hint="Install the Gateway API CRDs and a mesh that implements them, or split by pods: "
                "--canary-route replicas.",
            )
        labels = live.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
        if labels.get(TRACK_LABEL) != "stable":
            raise DeployError(
                f"deployment/{name}'s pods have no {TRACK_LABEL}: stable label, so the route's stable Service "
                "would select none of them",
                hint="Deploy the stable once with this torchship (torchship deploy SPEC_OF_THE_STABLE: its pods "
                "roll once to take the label), then start the canary.",
            )
    rendered = gathered_canary(spec, settings, CanaryPlan(percent, route, stable))
    check_base(rendered, spec).raise_if_failed()  # never apply what `render --check` would refuse
    canary_context = rendered.canary_context
    assert canary_context is not None
    result = CanaryResult(
        "canary", stable=stable, canary=TrackImage(spec.version, canary_context.image, rendered.inputs.image_pinned_by),
        route=route, split=_split_line(rendered),
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="torchship-canary-") as tmp:
        base = write_base(rendered.files, Path(tmp) / "k8s")
        if dry_run:
            files = (*START[route], *SHARE[route])
            result.dry_run_output = _dry_run(kubectl, spec, rendered, files, Path(tmp), progress)
            return result
        result.applied = _apply(kubectl, base, START[route])
        canary_name = f"{name}{CANARY_SUFFIX}"
        timeout_s = canary_context.derived.rollout_timeout_s
        progress(f"applied the canary; waiting up to {timeout_s} s for deployment/{canary_name}")
        failure = _rollout(kubectl, canary_name, timeout_s)
        if failure is None and smoke:
            try:
                progress("smoke request to the canary through kubectl port-forward")
                result.smoke = port_forward_smoke(
                    kubectl, name, canary_context.ports.inference, load_examples(spec)[0],
                    target=f"deployment/{canary_name}",
                )  # fmt: skip
            except DeployError as exc:
                failure = f"smoke request failed: {exc.message}"
        if failure is not None:
            events = pod_events(kubectl, canary_name)
            _remove(kubectl, name, route, progress)
            raise RolloutFailed(
                f"the canary {failure}; it was removed, and deployment/{name} ({stable.version}) was not touched",
                details="\n".join(
                    ["pod events:", *(f"  {e}" for e in events)] if events else ["(no pod events)"]
                ),
                hint="The events above say why the canary's pods failed; `torchship rehearse SPEC` reproduces a pod "
                "locally.",
            )
        progress(f"canary ready; giving it its share: {result.split}")
        result.applied += _apply(kubectl, base, SHARE[route])
    return result


def _dry_run(
    kubectl: Kubectl, spec: ModelSpec, rendered: RenderedBase, files: tuple[str, ...], tmp: Path, progress
) -> str:
    """`kubectl diff` of just `files`: a base of those and a kustomization listing only them."""
    subset = {file: rendered.files[file] for file in files}
    subset.update(
        render_files(spec, {KUSTOMIZATION: dataclasses.replace(rendered.context, resource_files=files)})
    )
    return dry_run_diff(kubectl, write_base(subset, tmp / "subset"), progress)


def _live_canary(kubectl: Kubectl, name: str) -> tuple[TrackImage, Route, int] | None:
    live = live_deployment(kubectl, f"{name}{CANARY_SUFFIX}")
    if live is None:
        return None
    annotations = live.get("metadata", {}).get("annotations") or {}
    route: Route = "gateway" if annotations.get(ROUTE_ANNOTATION) == "gateway" else "replicas"
    try:
        percent = int(annotations.get(PERCENT_ANNOTATION, "10"))
    except ValueError:
        percent = 10
    return running(live), route, percent


def _drain_route(
    spec: ModelSpec,
    settings: Settings,
    kubectl: Kubectl,
    base_dir: Path,
    canary: TrackImage,
    stable: TrackImage,
    percent: int,
) -> list[str]:
    """The HTTPRoute with the canary's weight at 0: the mesh stops sending it requests before its pods go."""
    as_canary = spec.model_copy(update={"version": canary.version})
    rendered = gathered_canary(as_canary, settings, CanaryPlan(percent, "gateway", stable), weight=0)
    base = write_base({"httproute.yaml": rendered.files["httproute.yaml"]}, base_dir)
    return _apply(kubectl, base, ("httproute.yaml",))


def promote_canary(
    spec: ModelSpec,
    settings: Settings,
    kubectl: Kubectl,
    progress: Callable[[str], None] = lambda message: None,
) -> CanaryResult:
    """Move the stable to the canary's version and image, wait for it, then remove the canary."""
    spec = with_namespace(spec, kubectl.namespace)
    name = spec.name
    _cluster(kubectl, progress)
    found = _live_canary(kubectl, name)
    if found is None:
        raise DeployError(
            f"no canary to promote: deployment/{name}{CANARY_SUFFIX} does not exist ({kubectl.where()})",
            hint="Start one with torchship deploy SPEC --canary PERCENT.",
        )
    canary, route, percent = found
    if canary.version != spec.version:
        raise DeployError(
            f"the canary runs version {canary.version}, but {spec.spec_path} is version {spec.version}",
            hint="Promote with the spec of the canary's version (the one `deploy --canary` was given).",
        )
    _, stable = _stable(kubectl, name)
    # The stable base of this version, with exactly the image the canary ran (and was measured on).
    inputs = gather_inputs(spec, settings)
    inputs = dataclasses.replace(inputs, image=canary.image, image_pinned_by=canary.image_pinned_by)
    rendered = render(spec, inputs)
    check_base(rendered, spec).raise_if_failed()
    result = CanaryResult("promote", stable=stable, canary=canary, route=route)
    previous = current_revision(kubectl, name)
    with tempfile.TemporaryDirectory(prefix="torchship-promote-") as tmp:
        base = write_base(rendered.files, Path(tmp) / "k8s")
        result.applied = server_side_apply(kubectl, "-k", str(base))
        timeout_s = rendered.context.derived.rollout_timeout_s
        progress(f"moving deployment/{name} to {canary.version}; waiting up to {timeout_s} s for its rollout")
        failure = _rollout(kubectl, name, timeout_s)
        if failure is not None:
            try:
                roll_back(kubectl, name, previous, failure, progress)
            except RolloutFailed as exc:
                raise RolloutFailed(
                    f"{exc.message}; the canary still runs beside it, with its share of the traffic",
                    details=exc.details,
                    hint="Fix the cause and promote again, or remove the canary: torchship deploy SPEC --abort-canary.",
                ) from None
        if route == "gateway":
            result.applied += _drain_route(
                spec, settings, kubectl, Path(tmp) / "route", canary, stable, percent
            )
        result.removed = _remove(kubectl, name, route, progress)
    return result


def abort_canary(
    spec: ModelSpec,
    settings: Settings,
    kubectl: Kubectl,
    progress: Callable[[str], None] = lambda message: None,
) -> CanaryResult:
    """Send everything back to the stable and remove the canary; a second abort finds nothing and says so."""
    spec = with_namespace(spec, kubectl.namespace)
    name = spec.name
    _cluster(kubectl, progress)
    found = _live_canary(kubectl, name)
    result = CanaryResult("abort")
    if found is None:
        progress(f"no deployment/{name}{CANARY_SUFFIX}; removing whatever a canary may have left")
        result.removed = _remove(
            kubectl, name, "gateway" if _has_gateway_api(kubectl) else "replicas", progress
        )
        return result
    canary, route, percent = found
    _, stable = _stable(kubectl, name)
    result.stable, result.canary, result.route = stable, canary, route
    with tempfile.TemporaryDirectory(prefix="torchship-abort-") as tmp:
        if route == "gateway":
            result.applied = _drain_route(
                spec, settings, kubectl, Path(tmp) / "route", canary, stable, percent
            )
        else:
            # The stable's autoscaler back to its full bounds, rendered for the version it runs.
            as_stable = spec.model_copy(update={"version": stable.version})
            inputs = dataclasses.replace(
                gather_inputs(spec, settings), image=stable.image, image_pinned_by=stable.image_pinned_by
            )
            hpa = render(as_stable, inputs).files["hpa.yaml"]
            result.applied = _apply(kubectl, write_base({"hpa.yaml": hpa}, Path(tmp) / "hpa"), ("hpa.yaml",))
        result.removed = _remove(kubectl, name, route, progress)
    return result
