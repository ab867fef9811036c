"""Render the spec into a kustomize base (one file per resource) from the jinja2 templates.

The files are written atomically: into a hidden sibling directory that replaces the target only when
everything rendered (and, with --check, passed). A target holding files torchship did not write is
refused rather than overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

import torchship
from torchship.deploy.autoscale import Autoscaling, autoscaling
from torchship.deploy.derive import Derived, derive
from torchship.deploy.errors import DeployError
from torchship.deploy.inputs import CONTRACT_GRPC_PORTS, PROBE, DeployInputs, Ports
from torchship.deploy.monitoring import (
    ADAPTER_RULES,
    MonitoringContext,
    monitoring_context,
    render_monitoring,
)
from torchship.deploy.monitoring import FOLDER as MONITORING_FOLDER
from torchship.spec import ModelSpec

# Order matters for a reader only: what the Deployment needs comes before it.
RESOURCE_FILES = (
    "serviceaccount.yaml",
    "configmap.yaml",
    "deployment.yaml",
    "service.yaml",
    "hpa.yaml",
    "pdb.yaml",
    "networkpolicy.yaml",
)
KUSTOMIZATION = "kustomization.yaml"
RENDERED_FILES = (*RESOURCE_FILES, KUSTOMIZATION)
# A canary (deploy/canary.py) adds its own ConfigMap, Deployment and HPA; routed by a Gateway API HTTPRoute,
# also a Service per track and the route.
CANARY_REPLICAS_FILES = ("configmap-canary.yaml", "deployment-canary.yaml", "hpa-canary.yaml")
CANARY_FILES = (*CANARY_REPLICAS_FILES, "service-tracks.yaml", "httproute.yaml")
# Every file torchship may have written into a base: re-rendering replaces any of them (the monitoring
# folder, deploy/monitoring.py, as a whole).
KNOWN_FILES = (*RENDERED_FILES, *CANARY_FILES, MONITORING_FOLDER)
# A canary's files come from the stable's templates, rendered with the canary's context.
TEMPLATE_OF = {
    "configmap-canary.yaml": "configmap.yaml",
    "deployment-canary.yaml": "deployment.yaml",
    "hpa-canary.yaml": "hpa.yaml",
}
# The instance family each Neuron compile target runs on (node.kubernetes.io/instance-type).
NEURON_INSTANCE_TYPES = {"inf2": "inf2.xlarge", "trn1": "trn1.2xlarge", "inf1": "inf1.xlarge"}


@dataclass(frozen=True)
class Volume:
    name: str
    path: str


@dataclass(frozen=True)
class RenderContext:
    """Everything the templates see; the templates hold no logic beyond layout."""

    name: str
    version: str
    namespace: str
    image: str
    uid: int
    ports: Ports
    env: dict[str, str]
    config_sha256: str
    volumes: tuple[Volume, ...]
    replicas: int
    target_cpu_percent: int
    cpu_request: str
    cpu_limit: str
    memory: str
    ephemeral_storage: str
    client_labels: dict[str, str]
    monitoring_namespace: str
    prestop_sleep_s: int
    priority_class: str | None
    neuron: int
    node_selector: dict[str, str]
    derived: Derived
    time_to_ready_s: float
    time_to_ready_source: str
    resource_files: tuple[str, ...] = RESOURCE_FILES
    suffix: str = ""  # appended to the names of a track's own objects: "-canary"
    track: str = "stable"  # the pods' torchship.dev/track label
    canary: CanaryView | None = None  # the split, for the comments of a canary rendering
    autoscaling: Autoscaling | None = None  # the HPA's load metrics (deploy/autoscale.py); set by context_of


@dataclass(frozen=True)
class CanaryView:
    """A canary's split as the rendered comments and the route state it."""

    percent: int  # asked for
    route: str  # "replicas" or "gateway"
    weight: int  # the HTTPRoute's canary weight (0 while promote/abort drain it)
    total: int  # deploy.replicas
    canary_replicas: int
    stable_replicas: int
    actual_percent: float  # of requests to the canary at rest
    canary_version: str
    stable_version: str


@dataclass(frozen=True)
class Manifest:
    file: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind"))

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name"))


@dataclass(frozen=True)
class RenderedBase:
    files: dict[str, str]  # file name -> text, kustomization.yaml included
    context: RenderContext
    inputs: DeployInputs
    manifests: list[Manifest] = field(default_factory=list)
    canary_context: RenderContext | None = None  # set when the base holds a canary beside the stable
    monitoring: MonitoringContext | None = None  # set when the base holds the monitoring folder


def _volume_name(path: str) -> str:
    return "-".join(part for part in path.strip("/").split("/") if part).replace("_", "-") or "root"


def environment(spec: ModelSpec, inputs: DeployInputs, derived: Derived) -> dict[str, str]:
    """The image contract's variables; all strings, as a ConfigMap's data must be."""
    return {
        "TORCHSHIP_MODEL_NAME": spec.name,
        "TORCHSHIP_BIND_ADDRESS": "0.0.0.0",
        "TORCHSHIP_INFERENCE_PORT": str(inputs.ports.inference),
        "TORCHSHIP_MANAGEMENT_PORT": str(inputs.ports.management),
        "TORCHSHIP_METRICS_PORT": str(inputs.ports.metrics),
        "TORCHSHIP_GRPC_INFERENCE_PORT": str(CONTRACT_GRPC_PORTS["inference"]),
        "TORCHSHIP_GRPC_MANAGEMENT_PORT": str(CONTRACT_GRPC_PORTS["management"]),
        "TORCHSHIP_WORKERS": str(derived.workers),
        "TORCHSHIP_THREADS": str(derived.threads),
        # Native libraries (OpenMP, MKL) size their own pools from the node's cores without this.
        "OMP_NUM_THREADS": str(derived.threads),
        # Sleeping, not spinning, OpenMP threads between runs (serve.omp_wait_policy; spec.py says why).
        "OMP_WAIT_POLICY": spec.serve.omp_wait_policy.upper(),
        # On SIGTERM the image's PID 1 waits for requests in flight (up to the longest a batch may take),
        # then stops TorchServe, and SIGKILLs it only just before the kubelet would.
        "TORCHSHIP_DRAIN_TIMEOUT_S": str(spec.serve.response_timeout_s),
        "TORCHSHIP_STOP_TIMEOUT_S": str(derived.termination_grace_s - spec.deploy.prestop_sleep_s - 1),
    }


def node_selector_of(spec: ModelSpec) -> dict[str, str]:
    if not spec.deploy.neuron:
        return dict(spec.deploy.node_selector)
    if spec.compile.backend != "neuron":
        raise DeployError(
            f"{spec.spec_path}: deploy.neuron asks for {spec.deploy.neuron} Neuron device(s), but "
            f"compile.backend is {spec.compile.backend!r}: the model would not use them",
            hint="Set compile.backend: neuron (and compile.neuron.target), or deploy.neuron: 0.",
        )
    default = {"node.kubernetes.io/instance-type": NEURON_INSTANCE_TYPES[spec.compile.neuron.target]}
    return {**default, **spec.deploy.node_selector}


def namespace_of(spec: ModelSpec) -> str:
    """Where every object goes: deploy.namespace (an environment's namespace lands there), else the model's
    name. Never none: objects without one land in whatever namespace the kubectl context says, usually
    `default`, shared with everything else there (checkov CKV_K8S_21). One namespace per model keeps its
    NetworkPolicy, PodDisruptionBudget and ServiceAccount from meeting another model's pods."""
    return spec.deploy.namespace or spec.name


def default_out_dir(stage_root: Path, env: str | None, canary: bool = False) -> Path:
    """`render`'s default target: one directory per environment, so rendering production never replaces
    the staging rendering (k8s/ without an environment); a canary rendering beside them (k8s-canary)."""
    return stage_root / ("-".join(["k8s", *([env] if env else []), *(["canary"] if canary else [])]))


def context_of(spec: ModelSpec, inputs: DeployInputs) -> RenderContext:
    derived = derive(spec, inputs, PROBE)
    env = environment(spec, inputs, derived)
    return RenderContext(
        name=spec.name,
        version=spec.version,
        namespace=namespace_of(spec),
        image=inputs.image,
        uid=inputs.uid,
        ports=inputs.ports,
        env=env,
        config_sha256=hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest(),
        volumes=tuple(Volume(_volume_name(p), p) for p in inputs.writable_paths),
        replicas=spec.deploy.replicas,
        target_cpu_percent=spec.deploy.target_cpu_percent,
        cpu_request=spec.deploy.cpu_request,
        cpu_limit=spec.deploy.cpu_limit,
        memory=spec.deploy.memory,
        ephemeral_storage=spec.deploy.ephemeral_storage,
        client_labels=dict(spec.deploy.client_labels) or {"torchship/client-of": spec.name},
        monitoring_namespace=spec.deploy.monitoring_namespace,
        prestop_sleep_s=spec.deploy.prestop_sleep_s,
        priority_class=spec.deploy.priority_class,
        neuron=spec.deploy.neuron,
        node_selector=node_selector_of(spec),
        derived=derived,
        time_to_ready_s=inputs.time_to_ready_s,
        time_to_ready_source=inputs.time_to_ready_source,
        autoscaling=autoscaling(spec, derived, inputs.tune),
    )


def _jinja() -> jinja2.Environment:
    return jinja2.Environment(
        # The templates ship inside the installed package (torchship/templates/k8s), found through it.
        loader=jinja2.PackageLoader("torchship", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        autoescape=False,  # YAML, not HTML; values are quoted with tojson instead
    )


def parse_manifests(files: dict[str, str]) -> list[Manifest]:
    """The Kubernetes objects of the YAML files (not the kustomizations nor prometheus-adapter's rules; the
    dashboard is JSON)."""
    manifests = []
    for file in files:
        if Path(file).name == KUSTOMIZATION or file == ADAPTER_RULES or not file.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(files[file]):
            if doc:
                manifests.append(Manifest(file, doc))
    return manifests


def render_files(spec: ModelSpec, contexts: dict[str, RenderContext]) -> dict[str, str]:
    """Each file from its template with its own context (a canary's files with the canary's)."""
    env = _jinja()
    spec_file = f"{spec.spec_dir.name}/{spec.spec_path.name}"
    files = {}
    for file, context in contexts.items():
        template = env.get_template(f"k8s/{TEMPLATE_OF.get(file, file)}.j2")
        text = template.render(c=context, torchship_version=torchship.__version__, spec_file=spec_file)
        files[file] = text.rstrip("\n") + "\n"
    return files


def render(spec: ModelSpec, inputs: DeployInputs) -> RenderedBase:
    """The model's base and, in its monitoring/ folder, its ServiceMonitor, alert rules and dashboard."""
    context = context_of(spec, inputs)
    files = render_files(spec, dict.fromkeys(RENDERED_FILES, context))
    monitoring = monitoring_context(spec, inputs, context.namespace)
    files.update(render_monitoring(monitoring, f"{spec.spec_dir.name}/{spec.spec_path.name}"))
    return RenderedBase(files, context, inputs, parse_manifests(files), monitoring=monitoring)


def write_base(files: dict[str, str], out_dir: Path) -> Path:
    """Replace `out_dir` with the rendered files, all at once; refuse to clobber files we did not write."""
    out_dir = out_dir.resolve()
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DeployError(f"{out_dir} exists and is not a directory", hint="Choose another --out.")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in KNOWN_FILES)
        if foreign:
            raise DeployError(
                f"{out_dir} holds files torchship did not render ({', '.join(foreign[:5])}); not overwriting it",
                hint="Render into an empty or new directory, and put your own changes in a kustomize overlay.",
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text, encoding="utf-8")
        if out_dir.exists():
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
    except BaseException:
        if old.exists() and not out_dir.exists():
            os.rename(old, out_dir)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out_dir
