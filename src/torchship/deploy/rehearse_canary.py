"""`torchship rehearse SPEC --canary PERCENT --stable-version V`: the canary rendering's two Deployments —
the stable (the image of V's image.json) and the canary (the spec's) — played side by side by
`podman kube play`, each waited on with its own readiness probe, and each asked to answer.

Each track is played from its own manifest (its ConfigMap and Deployment, with the rehearsal's changes of
rehearse.py: one replica, the local image, free ports on 127.0.0.1), so the two pods run at once on the
host network without sharing a port. The canary is checked for served parity against its source model, as
a plain rehearsal is; the stable too when its source model is fetched under outputs/, else it must answer
the spec's first example with a 200 and JSON. The split itself (pods behind a Service, or an HTTPRoute)
needs a cluster: there is no Service here.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torchship.deploy.canary import CanaryPlan, TrackImage, render_canary
from torchship.deploy.check import check_base
from torchship.deploy.errors import DeployError
from torchship.deploy.inputs import gather_inputs, image_of
from torchship.deploy.rehearse import (
    PORT_KEYS,
    Rehearsal,
    check_parity,
    image_record,
    play,
    same_image,
    tear_down,
    track_documents,
    wait_ready,
)
from torchship.deploy.render import RenderedBase
from torchship.deploy.rollout import smoke_request
from torchship.errors import ServedParityError
from torchship.image.record import ImageRecord
from torchship.serving.ports import HOST, free_ports
from torchship.settings import Settings
from torchship.sources import MODEL_DIRNAME
from torchship.spec import ModelSpec

# Which rendered files make each track's pod.
TRACK_FILES = {
    "stable": ("configmap.yaml", "deployment.yaml"),
    "canary": ("configmap-canary.yaml", "deployment-canary.yaml"),
}


@dataclass
class TrackRehearsal:
    track: str
    version: str
    rehearsal: Rehearsal
    checked: str = ""  # what was asked of it: "served parity ok (…)" or "answered …"


@dataclass
class CanaryRehearsal:
    tracks: dict[str, TrackRehearsal] = field(default_factory=dict)
    split: str = ""


def _doc(rendered: RenderedBase, file: str) -> dict:
    return next(m.doc for m in rendered.manifests if m.file == file)


def _check(track: TrackRehearsal, spec: ModelSpec, settings: Settings) -> str:
    fetched = settings.stage_root(spec.name, spec.version) / "fetch" / MODEL_DIRNAME
    if track.track == "stable" and not fetched.is_dir():
        from torchship.examples import load_examples

        answer = smoke_request(track.rehearsal.url, spec.name, load_examples(spec)[0])
        return f"answered: {answer} (no source model of {spec.version} under outputs/ to compare with)"
    parity = check_parity(track.rehearsal, spec, settings)
    track.rehearsal.parity = parity
    if not parity["ok"]:
        failure = parity["failure"]
        raise ServedParityError(
            f"served parity failed for the {track.track} ({spec.version}): {failure['request']} ({failure['mode']}) "
            f"differs from the source model at {failure['mismatch']}",
            hint="The image serves different answers than the verified package: rebuild it with torchship image.",
        )
    return f"served parity ok (max |Δ| {parity['max_abs']:.2e} over {parity['compared']} results)"


def rehearse_canary(
    spec: ModelSpec,
    settings: Settings,
    percent: int,
    stable_version: str,
    on_ready: Callable[[CanaryRehearsal], None] = lambda rehearsal: None,
    progress: Callable[[str], None] = lambda message: None,
) -> CanaryRehearsal:
    """Play both tracks, wait for both, check both answer; always tear both down."""
    stable_spec = spec.model_copy(update={"version": stable_version})
    records: dict[str, ImageRecord] = {
        "stable": image_record(stable_spec, settings),
        "canary": image_record(spec, settings),
    }
    specs = {"stable": stable_spec, "canary": spec}
    image, pinned_by = image_of(stable_spec, records["stable"])
    plan = CanaryPlan(percent, "replicas", TrackImage(stable_version, image, pinned_by))
    rendered = render_canary(spec, gather_inputs(spec, settings), plan)
    check_base(rendered, spec).raise_if_failed()
    k = rendered.context.canary
    assert k is not None
    result = CanaryRehearsal(
        split=f"in a cluster: {k.canary_replicas} canary + {k.stable_replicas} stable pod(s) = "
        f"{k.actual_percent:.1f}% to the canary; here one pod each"
    )
    all_ports = free_ports(2 * len(PORT_KEYS))  # one call: the two tracks never get the same port
    with tempfile.TemporaryDirectory(prefix="torchship-rehearse-canary-") as tmp:
        documents: dict[str, list[dict]] = {}
        try:
            for i, (track, (config, deployment)) in enumerate(TRACK_FILES.items()):
                ports = dict(
                    zip(PORT_KEYS, all_ports[i * len(PORT_KEYS) : (i + 1) * len(PORT_KEYS)], strict=True)
                )
                documents[track] = track_documents(
                    _doc(rendered, config), _doc(rendered, deployment), records[track].reference, ports
                )
                directory = Path(tmp) / track
                directory.mkdir()
                progress(
                    f"podman kube play {track} {specs[track].version} ({records[track].reference}) on {HOST}"
                )
                started = time.monotonic()
                played = play(documents[track], directory, spec.name, ports)
                played.timings["play"] = time.monotonic() - started
                result.tracks[track] = TrackRehearsal(track, specs[track].version, played)
            for track, played_track in result.tracks.items():
                same_image(played_track.rehearsal, records[track])
            for track, played_track in result.tracks.items():
                ready = wait_ready(played_track.rehearsal, documents[track][1], progress)
                played_track.rehearsal.ready_s = played_track.rehearsal.timings["ready"] = ready
                progress(f"{track} ready after {ready:.1f} s")
            for track, played_track in result.tracks.items():
                played_track.checked = _check(played_track, specs[track], settings)
            on_ready(result)
        finally:
            progress("podman kube down (both tracks)")
            failures = []
            for played_track in result.tracks.values():
                try:
                    tear_down(played_track.rehearsal)
                except DeployError as exc:  # take the other track down too, then report
                    failures.append(exc)
            if failures:
                raise failures[0]
    return result
