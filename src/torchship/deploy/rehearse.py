"""`torchship rehearse`: the rendered Deployment and ConfigMap, played by `podman kube play` with the
image from image.json, waited on with the manifest's own probes, and checked for served parity.

What the rehearsal changes, and nothing else (recorded in the pod's `torchship.dev/rehearsal` annotation):
one replica (with host networking every replica would bind the same ports), the image by its local name
with pull policy IfNotPresent (there is no registry to pull from), no containerPort list (podman makes
port mappings of it, which host networking refuses), and in the ConfigMap the bind address 127.0.0.1 and
free ports (host networking shares the machine's loopback with everything else). The
security context, read-only root, emptyDir volumes, resources, probes and environment are the rendered ones.

podman does not enforce startup/readiness probes, so readiness is waited for here: the readiness probe's
exec command, run in the container every period, within the startup probe's budget.

With Prometheus installed (or `--prometheus`), a real Prometheus then scrapes the pod's metrics port while
counted good and bad requests go to it, and the rehearsal fails unless they arrive with the values sent
(deploy/metrics_proof.py).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from torchship.deploy.check import check_base
from torchship.deploy.errors import DeployError, RehearsalFailed
from torchship.deploy.inputs import IMAGE_RECORD, gather_inputs, read_image_record
from torchship.deploy.metrics_proof import MetricsProof, prove_metrics
from torchship.deploy.prometheus_local import prometheus_binary
from torchship.deploy.render import RenderedBase, render
from torchship.errors import ServedParityError
from torchship.image.record import ImageRecord
from torchship.serving.ports import HOST, free_ports
from torchship.settings import Settings
from torchship.spec import ModelSpec

REHEARSAL_ANNOTATION = "torchship.dev/rehearsal"
PORT_KEYS = (
    "TORCHSHIP_INFERENCE_PORT",
    "TORCHSHIP_MANAGEMENT_PORT",
    "TORCHSHIP_METRICS_PORT",
    "TORCHSHIP_GRPC_INFERENCE_PORT",
    "TORCHSHIP_GRPC_MANAGEMENT_PORT",
)


@dataclass
class Rehearsal:
    """A played pod: where it answers, and how to take it down."""

    manifest: Path
    container: str
    ports: dict[str, int]
    model: str
    ready_s: float = 0.0
    parity: dict = field(default_factory=dict)
    # Seconds per phase: play (kube play), ready (probe passing), parity (examples compared), metrics
    # (the Prometheus proof), down.
    timings: dict[str, float] = field(default_factory=dict)
    metrics: MetricsProof | None = None  # None: no Prometheus asked for or installed

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.ports['TORCHSHIP_INFERENCE_PORT']}"

    def client(self, timeout_s: float = 60.0) -> httpx.Client:
        """What validate/served.py's `query` needs of a server (no token: authorization is the
        NetworkPolicy's job in a cluster, see the image contract)."""
        return httpx.Client(base_url=self.url, timeout=timeout_s)


def podman(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    path = shutil.which("podman")
    if path is None:
        raise RehearsalFailed(
            "podman is not installed (not found on PATH): the rehearsal plays the manifests with podman kube play",
            hint="Install it (Debian/Ubuntu: apt-get install podman runc), or deploy without a rehearsal.",
        )
    try:
        return subprocess.run([path, *args], capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RehearsalFailed(
            f"`podman {' '.join(args[:2])}` did not finish within {timeout_s:.0f} s"
        ) from None


def image_record(spec: ModelSpec, settings: Settings) -> ImageRecord:
    path = settings.stage_root(spec.name, spec.version) / IMAGE_RECORD
    record = read_image_record(path)
    if record is None:
        raise RehearsalFailed(
            f"no image built for {spec.name} {spec.version} ({path} does not exist)",
            hint=f"Build it first: torchship image {spec.spec_path}",
        )
    return record


def rehearsal_documents(rendered: RenderedBase, local_image: str, ports: dict[str, int]) -> list[dict]:
    """The rendered ConfigMap and Deployment with only the rehearsal's changes (see the module doc)."""
    docs = {m.kind: m.doc for m in rendered.manifests if m.kind in ("ConfigMap", "Deployment")}
    return track_documents(docs["ConfigMap"], docs["Deployment"], local_image, ports)


def track_documents(config: dict, deployment: dict, local_image: str, ports: dict[str, int]) -> list[dict]:
    """One Deployment and its ConfigMap, copied, with only the rehearsal's changes (see the module doc)."""
    config, deployment = copy.deepcopy(config), copy.deepcopy(deployment)
    config["data"].update({key: str(port) for key, port in ports.items()})
    config["data"]["TORCHSHIP_BIND_ADDRESS"] = HOST
    deployment["spec"]["replicas"] = 1
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    changed = (
        f"replicas 1; image {container['image']} played as {local_image} (IfNotPresent); "
        f"bind {HOST}, free ports, no containerPort list (host network)"
    )
    container["image"] = local_image
    # podman turns containerPorts into port mappings, which host networking refuses.
    container.pop("ports", None)
    container["imagePullPolicy"] = "IfNotPresent"
    template["metadata"].setdefault("annotations", {})[REHEARSAL_ANNOTATION] = changed
    return [config, deployment]


def _container_of(play_output: str) -> str:
    """`podman kube play` prints the pod id under "Pod:" and container ids under "Container:"."""
    lines = [line.strip() for line in play_output.splitlines()]
    if "Container:" not in lines:
        raise RehearsalFailed(f"podman kube play reported no container: {play_output.strip()[-300:]}")
    return lines[lines.index("Container:") + 1]


def container_state(container: str) -> tuple[str, int]:
    result = podman(
        "inspect", "--type", "container", "--format", "{{.State.Status}} {{.State.ExitCode}}", container
    )
    if result.returncode != 0:
        return "missing", -1
    status, code = result.stdout.split()
    return status, int(code)


def logs_tail(container: str, lines: int = 15) -> str:
    result = podman("logs", "--tail", str(lines), container, timeout_s=30)
    return (result.stdout + result.stderr).strip()


def wait_ready(rehearsal: Rehearsal, deployment: dict, progress: Callable[[str], None]) -> float:
    """Run the readiness probe's command in the container until it passes, within the startup budget."""
    container_spec = deployment["spec"]["template"]["spec"]["containers"][0]
    readiness, startup = container_spec["readinessProbe"], container_spec["startupProbe"]
    budget_s = startup["periodSeconds"] * startup["failureThreshold"]
    command = readiness["exec"]["command"]
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < budget_s:
        status, code = container_state(rehearsal.container)
        if status != "running":
            raise RehearsalFailed(
                f"the container {status} (exit code {code}) before it got ready",
                details=logs_tail(rehearsal.container),
                hint="The log lines above come from the container; `podman kube play` ran the rendered Deployment.",
            )
        probe = podman("exec", rehearsal.container, *command, timeout_s=readiness["timeoutSeconds"] + 30)
        if probe.returncode == 0:
            return time.monotonic() - started
        last = (probe.stdout + probe.stderr).strip()
        progress(f"not ready yet ({last[-120:] or 'probe failed'})")
        time.sleep(startup["periodSeconds"])
    raise RehearsalFailed(
        f"not ready within the startup budget of {budget_s} s (readiness probe: {last[-200:]})",
        details=logs_tail(rehearsal.container),
        hint="The startup budget comes from the measured time to ready; re-run `torchship image` to re-measure.",
    )


def check_parity(rehearsal: Rehearsal, spec: ModelSpec, settings: Settings) -> dict:
    """The spec's examples through the played pod, against the source model in-process."""
    from torchship.examples import load_examples
    from torchship.reference import source_results
    from torchship.sources import MODEL_DIRNAME
    from torchship.tasks import task_definition
    from torchship.validate.precision import served_judge
    from torchship.validate.served import compare_served, query

    model_dir = settings.stage_root(spec.name, spec.version) / "fetch" / MODEL_DIRNAME
    if not model_dir.is_dir():
        raise RehearsalFailed(
            f"the source model is not fetched ({model_dir} does not exist), so there is nothing to compare with",
            hint=f"Run `torchship run {spec.spec_path}` first.",
        )
    bodies = load_examples(spec)
    if not bodies:
        raise RehearsalFailed(
            f"{spec.spec_path}: no examples to check served parity with (validate.examples)"
        )
    served = query(rehearsal, spec.name, bodies, task_definition(spec.task).runtime.request)
    expected = source_results(spec, model_dir, bodies)
    return compare_served(
        served, expected, bodies, spec.validate.atol, spec.validate.rtol, judge=served_judge(spec)
    )


def play(documents: list[dict], directory: Path, model: str, ports: dict[str, int]) -> Rehearsal:
    manifest = directory / "rehearsal.yaml"
    manifest.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    played = podman("kube", "play", "--network", "host", str(manifest), timeout_s=600)
    if played.returncode != 0:
        podman("kube", "down", str(manifest), timeout_s=120)
        raise RehearsalFailed(
            f"podman kube play failed: {(played.stderr.strip().splitlines() or ['(no output)'])[-1]}",
            details=played.stderr.strip()[-2000:],
            hint="Is the image in podman's storage (`podman images`)? CONTAINERS_CONF/CONTAINERS_STORAGE_CONF "
            "must name the same storage `torchship image` built into.",
        )
    return Rehearsal(manifest, _container_of(played.stdout), ports, model)


def same_image(rehearsal: Rehearsal, record: ImageRecord) -> None:
    """The played container runs the image image.json describes, not whatever the tag names today."""
    digest = record.digest
    result = podman("inspect", "--type", "container", "--format", "{{.Image}}", rehearsal.container)
    running = result.stdout.strip()
    if digest and running and digest.removeprefix("sha256:") != running.removeprefix("sha256:"):
        raise RehearsalFailed(
            f"{record.reference} now names image {running[:12]}, not the {digest[7:19]} that image.json "
            "records (and whose parity was checked)",
            hint="Rebuild with `torchship image SPEC`, or re-tag the recorded image.",
        )


def tear_down(rehearsal: Rehearsal) -> None:
    result = podman("kube", "down", str(rehearsal.manifest), timeout_s=180)
    if result.returncode != 0:
        raise DeployError(
            f"podman kube down failed: {result.stderr.strip()[-300:]}",
            hint=f"Remove the pod by hand: podman pod rm -f {rehearsal.model}-pod",
        )


def wants_prometheus(asked: bool | None) -> bool:
    """`--prometheus` (True) or `--no-prometheus` (False) decide; unsaid, whenever Prometheus is installed."""
    return asked if asked is not None else prometheus_binary() is not None


def check_metrics(rehearsal: Rehearsal, spec: ModelSpec, namespace: str) -> MetricsProof:
    """A real Prometheus scrapes the pod's metrics port; counted requests must arrive as sent."""
    from torchship.examples import load_examples

    metrics_address = f"{HOST}:{rehearsal.ports['TORCHSHIP_METRICS_PORT']}"
    proof = prove_metrics(
        rehearsal.url, metrics_address, spec.name, load_examples(spec)[0], labels={"namespace": namespace}
    )
    if not proof.ok:
        raise RehearsalFailed(
            f"the pod's metrics did not arrive in Prometheus as sent: {proof.summary()}",
            hint="The handler's metrics (README 'Metrics') or the image's metrics config are wrong.",
        )
    return proof


def rendered_for_rehearsal(spec: ModelSpec, settings: Settings) -> RenderedBase:
    rendered = render(spec, gather_inputs(spec, settings))
    check_base(rendered, spec).raise_if_failed()
    return rendered


def rehearse(
    spec: ModelSpec,
    settings: Settings,
    on_ready: Callable[[Rehearsal], None] = lambda rehearsal: None,
    progress: Callable[[str], None] = lambda message: None,
    prometheus: bool | None = None,
) -> Rehearsal:
    """Play, wait, compare, prove the metrics (`prometheus`: see wants_prometheus), then `on_ready` (e.g.
    keep serving until Ctrl-C); always tear down."""
    record = image_record(spec, settings)
    rendered = rendered_for_rehearsal(spec, settings)
    ports = dict(zip(PORT_KEYS, free_ports(len(PORT_KEYS)), strict=True))
    documents = rehearsal_documents(rendered, record.reference, ports)
    with tempfile.TemporaryDirectory(prefix="torchship-rehearse-") as tmp:
        progress(f"podman kube play {spec.name} ({record.reference}) on {HOST}")
        started = time.monotonic()
        rehearsal = play(documents, Path(tmp), spec.name, ports)
        rehearsal.timings["play"] = time.monotonic() - started
        try:
            same_image(rehearsal, record)
            rehearsal.ready_s = rehearsal.timings["ready"] = wait_ready(rehearsal, documents[1], progress)
            progress(f"ready after {rehearsal.ready_s:.1f} s; checking served parity on the spec's examples")
            started = time.monotonic()
            rehearsal.parity = check_parity(rehearsal, spec, settings)
            rehearsal.timings["parity"] = time.monotonic() - started
            if not rehearsal.parity["ok"]:
                failure = rehearsal.parity["failure"]
                raise ServedParityError(
                    f"served parity failed: {failure['request']} ({failure['mode']}) differs from the source "
                    f"model at {failure['mismatch']}",
                    hint="The image serves different answers than the verified package: rebuild it with torchship image.",
                )
            if wants_prometheus(prometheus):
                progress("a local Prometheus scrapes the pod's metrics port; counted good and bad requests")
                started = time.monotonic()
                rehearsal.metrics = check_metrics(rehearsal, spec, rendered.context.namespace)
                rehearsal.timings["metrics"] = time.monotonic() - started
            on_ready(rehearsal)
        finally:
            progress("podman kube down")
            started = time.monotonic()
            tear_down(rehearsal)
            rehearsal.timings["down"] = time.monotonic() - started
    return rehearsal
