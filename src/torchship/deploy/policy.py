"""Named policy rules over the parsed manifests: the restricted Pod Security Standard and the Deployment
checks that kube-score, checkov and polaris apply, re-implemented in Python so `render --check` runs
offline with nothing else installed. Each rule names where it comes from; each is tested both ways.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from torchship.deploy.derive import cpu_cores
from torchship.deploy.inputs import CONTRACT_PORTS
from torchship.deploy.render import Manifest

# Workload kinds whose pod template we check (torchship renders a Deployment; overlays may add others).
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Pod Security Standard "restricted": the only volume types allowed.
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
MIN_UID = 10000  # checkov CKV_K8S_40, kube-score: avoid colliding with host users
SENSITIVE_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
# Namespaces every cluster has and shares: a model's objects do not belong there.
SHARED_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Finding:
    rule: str
    resource: str
    message: str


@dataclass(frozen=True)
class Workload:
    """One pod template (the pod spec, its labels) and where it lives."""

    manifest: Manifest
    pod: dict[str, Any]
    labels: dict[str, str]

    @property
    def resource(self) -> str:
        return f"{self.manifest.kind}/{self.manifest.name}"

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.pod.get("containers") or []) + list(self.pod.get("initContainers") or [])


@dataclass(frozen=True)
class PolicyInputs:
    manifests: list[Manifest]
    # The spec's bound on in-flight work: terminationGracePeriodSeconds must cover preStop + this.
    response_timeout_s: int

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m.kind == kind]

    def workloads(self) -> list[Workload]:
        found = []
        for m in self.manifests:
            if m.kind == "Pod":
                found.append(
                    Workload(m, m.doc.get("spec") or {}, (m.doc.get("metadata") or {}).get("labels") or {})
                )
            elif m.kind in POD_TEMPLATE_KINDS:
                template = (m.doc.get("spec") or {}).get("template") or {}
                labels = (template.get("metadata") or {}).get("labels") or {}
                found.append(Workload(m, template.get("spec") or {}, labels))
        return found

    def config_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for m in self.of_kind("ConfigMap"):
            env.update({str(k): str(v) for k, v in (m.doc.get("data") or {}).items()})
        return env


@dataclass(frozen=True)
class Rule:
    name: str
    source: str  # which standard or checker asks for it
    check: Callable[[PolicyInputs], Iterator[Finding]]


RULES: list[Rule] = []


def rule(name: str, source: str):
    def register(fn: Callable[[PolicyInputs], Iterator[tuple[str, str]]]):
        def check(inputs: PolicyInputs) -> Iterator[Finding]:
            for resource, message in fn(inputs):
                yield Finding(name, resource, message)

        RULES.append(Rule(name, source, check))
        return fn

    return register


def _sc(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("securityContext") or {}


def _effective(w: Workload, c: dict[str, Any], key: str) -> Any:
    """A container's security setting, falling back to the pod's (as the kubelet resolves it)."""
    value = _sc(c).get(key)
    return _sc(w.pod).get(key) if value is None else value


def _per_container(
    inputs: PolicyInputs, *, serving_only: bool = False
) -> Iterator[tuple[Workload, dict[str, Any], str]]:
    """Every container of every workload, init containers too unless `serving_only` (probes and preStop
    hooks belong to the containers that serve; init containers have neither)."""
    for w in inputs.workloads():
        containers = (w.pod.get("containers") or []) if serving_only else w.containers
        for c in containers:
            yield w, c, f"{w.resource} container {c.get('name')}"


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """matchLabels only (what torchship renders); an empty selector selects everything."""
    match = (selector or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in match.items()) and not (selector or {}).get("matchExpressions")


# --- Pod Security Standard: restricted ------------------------------------------------------------


@rule("host-namespaces", "PSS restricted; kube-score, checkov CKV_K8S_17/18/19")
def _host_namespaces(inputs: PolicyInputs):
    for w in inputs.workloads():
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if w.pod.get(key):
                yield w.resource, f"{key}: true shares the node's namespace with the pod"


@rule("host-ports", "PSS restricted")
def _host_ports(inputs: PolicyInputs):
    for _, c, where in _per_container(inputs):
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                yield where, f"hostPort {port['hostPort']} binds a port on the node"


@rule("volume-types", "PSS restricted (no hostPath and other node-level volumes)")
def _volume_types(inputs: PolicyInputs):
    for w in inputs.workloads():
        for volume in w.pod.get("volumes") or []:
            kinds = set(volume) - {"name"}
            bad = kinds - RESTRICTED_VOLUME_TYPES
            if bad:
                yield w.resource, f"volume {volume.get('name')} is of type {', '.join(sorted(bad))}"


@rule("privileged", "PSS restricted; checkov CKV_K8S_16; kube-score")
def _privileged(inputs: PolicyInputs):
    for _, c, where in _per_container(inputs):
        if _sc(c).get("privileged"):
            yield where, "privileged: true"


@rule("privilege-escalation", "PSS restricted; checkov CKV_K8S_20")
def _privilege_escalation(inputs: PolicyInputs):
    for _, c, where in _per_container(inputs):
        if _sc(c).get("allowPrivilegeEscalation") is not False:
            yield where, "allowPrivilegeEscalation must be set to false"


@rule("run-as-non-root", "PSS restricted; checkov CKV_K8S_23")
def _non_root(inputs: PolicyInputs):
    for w, c, where in _per_container(inputs):
        if _effective(w, c, "runAsNonRoot") is not True:
            yield where, "runAsNonRoot must be true (pod or container)"
        if _effective(w, c, "runAsUser") == 0:
            yield where, "runAsUser is 0 (root)"


@rule("seccomp", "PSS restricted; checkov CKV_K8S_31")
def _seccomp(inputs: PolicyInputs):
    for w, c, where in _per_container(inputs):
        profile = (_effective(w, c, "seccompProfile") or {}).get("type")
        if profile not in ("RuntimeDefault", "Localhost"):
            yield where, f"seccompProfile.type is {profile or 'unset'}; use RuntimeDefault"


@rule("capabilities", "PSS restricted; checkov CKV_K8S_28/37; kube-score")
def _capabilities(inputs: PolicyInputs):
    for _, c, where in _per_container(inputs):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield where, "capabilities.drop must include ALL"
        added = [a for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"]
        if added:
            yield where, f"capabilities.add {added}: only NET_BIND_SERVICE is allowed"


# --- kube-score / checkov / polaris Deployment checks ----------------------------------------------


@rule("resources", "kube-score container-resources; checkov CKV_K8S_10/11/12/13")
def _resources(inputs: PolicyInputs):
    for _, c, where in _per_container(inputs):
        resources = c.get("resources") or {}
        for part in ("requests", "limits"):
            for name in ("cpu", "memory"):
                if name not in (resources.get(part) or {}):
                    yield where, f"no {name} {part[:-1]}"


@rule("ephemeral-storage", "kube-score container-ephemeral-storage-request-and-limit")
def _ephemeral(inputs: PolicyInputs):
    for _, c, where in _per_container(inputs):
        resources = c.get("resources") or {}
        for part in ("requests", "limits"):
            if "ephemeral-storage" not in (resources.get(part) or {}):
                yield where, f"no ephemeral-storage {part[:-1]} (/tmp and logs are emptyDirs)"


@rule("image-pinned", "kube-score container-image-tag; checkov CKV_K8S_14/43")
def _image_pinned(inputs: PolicyInputs):
    for _, c, where in _per_container(inputs):
        image = str(c.get("image") or "")
        if _DIGEST.search(image):
            continue
        name = image.rsplit("/", 1)[-1]
        tag = name.split(":", 1)[1] if ":" in name else ""
        if not tag or tag == "latest":
            yield where, f"image {image!r} is neither pinned by digest nor by a version tag"


@rule("image-pull-policy", "kube-score container-image-pull-policy; checkov CKV_K8S_15")
def _pull_policy(inputs: PolicyInputs):
    for _, c, where in _per_container(inputs):
        if c.get("imagePullPolicy") != "Always":
            yield where, f"imagePullPolicy is {c.get('imagePullPolicy') or 'unset'}; use Always"


@rule("probes", "kube-score pod-probes; checkov CKV_K8S_8/9; a model server needs a startup probe")
def _probes(inputs: PolicyInputs):
    for _, c, where in _per_container(inputs, serving_only=True):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if not c.get(probe):
                yield where, f"no {probe}"
        if c.get("readinessProbe") and c.get("readinessProbe") == c.get("livenessProbe"):
            yield where, "readinessProbe and livenessProbe are identical: a busy pod would be restarted"


@rule("read-only-root-filesystem", "kube-score; checkov CKV_K8S_22; polaris")
def _read_only_root(inputs: PolicyInputs):
    for _, c, where in _per_container(inputs):
        if _sc(c).get("readOnlyRootFilesystem") is not True:
            yield where, "readOnlyRootFilesystem must be true (writable paths are emptyDir volumes)"


@rule("high-uid-gid", "kube-score container-security-context-user-group-id; checkov CKV_K8S_40")
def _high_ids(inputs: PolicyInputs):
    for w, c, where in _per_container(inputs):
        for key in ("runAsUser", "runAsGroup"):
            value = _effective(w, c, key)
            if not isinstance(value, int) or value < MIN_UID:
                yield where, f"{key} is {value}; use a numeric id >= {MIN_UID}"


@rule("pod-disruption-budget", "kube-score deployment-has-poddisruptionbudget")
def _pdb(inputs: PolicyInputs):
    pdbs = inputs.of_kind("PodDisruptionBudget")
    for w in inputs.workloads():
        if not any(_selects((p.doc.get("spec") or {}).get("selector"), w.labels) for p in pdbs):
            yield w.resource, "no PodDisruptionBudget selects its pods"


@rule("network-policy", "kube-score pod-networkpolicy; checkov CKV2_K8S_6")
def _network_policy(inputs: PolicyInputs):
    for w in inputs.workloads():
        covered: set[str] = set()
        for p in inputs.of_kind("NetworkPolicy"):
            spec = p.doc.get("spec") or {}
            if _selects(spec.get("podSelector"), w.labels):
                covered |= set(spec.get("policyTypes") or ["Ingress"])
        for direction in ("Ingress", "Egress"):
            if direction not in covered:
                yield w.resource, f"no NetworkPolicy restricts {direction.lower()} of its pods"


def _shared_pods(inputs: PolicyInputs, at_rest: dict[str, int]) -> dict[str, int]:
    """Per Deployment, the most pods at rest behind one Service that routes to it and to another Deployment.

    A canary's one pod is no single point of failure while the model's Service also routes to the stable's
    pods: a request finds a pod as long as either track has one."""
    shared: dict[str, int] = {}
    deployments = inputs.of_kind("Deployment")
    for service in inputs.of_kind("Service"):
        selector = (service.doc.get("spec") or {}).get("selector") or {}
        if not selector:  # a Service without a selector gets no endpoints from any Deployment
            continue
        selected = [
            d.name
            for d in deployments
            if _selects(
                {"matchLabels": selector},
                (
                    (((d.doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")
                    or {}
                ),
            )
        ]
        if len(selected) > 1:
            total = sum(at_rest[name] for name in selected)
            for name in selected:
                shared[name] = max(shared.get(name, 0), total)
    return shared


@rule(
    "replicas",
    "kube-score deployment-replicas (an HPA's minReplicas where it owns the scale; a canary counts with the "
    "stable behind their shared Service)",
)
def _replicas(inputs: PolicyInputs):
    autoscaled = {
        ((m.doc.get("spec") or {}).get("scaleTargetRef") or {}).get("name"): m
        for m in inputs.of_kind("HorizontalPodAutoscaler")
    }
    at_rest = {}
    for m in inputs.of_kind("Deployment"):
        replicas = (m.doc.get("spec") or {}).get("replicas")
        hpa = autoscaled.get(m.name)
        minimum = (hpa.doc.get("spec") or {}).get("minReplicas", 1) if hpa is not None else 1
        at_rest[m.name] = replicas if replicas is not None else minimum
    shared = _shared_pods(inputs, at_rest)
    for m in inputs.of_kind("Deployment"):
        replicas = (m.doc.get("spec") or {}).get("replicas")
        hpa = autoscaled.get(m.name)
        if replicas is not None and replicas < 2 and shared.get(m.name, 0) < 2:
            yield f"Deployment/{m.name}", f"replicas {replicas}: one pod is a single point of failure"
        elif replicas is None and hpa is None:
            yield f"Deployment/{m.name}", "no replicas and no HorizontalPodAutoscaler: it runs a single pod"
    for name, m in autoscaled.items():
        if (m.doc.get("spec") or {}).get("minReplicas", 1) < 2 and shared.get(str(name), 0) < 2:
            yield (
                f"HorizontalPodAutoscaler/{m.name}",
                f"minReplicas below 2 scales deployment/{name} to a single pod",
            )


@rule("topology-spread", "kube-score pod-topology-spread-constraints / deployment-pod-anti-affinity")
def _spread(inputs: PolicyInputs):
    for w in inputs.workloads():
        constraints = w.pod.get("topologySpreadConstraints") or []
        by_host = any(c.get("topologyKey") == "kubernetes.io/hostname" for c in constraints)
        anti = ((w.pod.get("affinity") or {}).get("podAntiAffinity")) is not None
        if not (by_host or anti):
            yield (
                w.resource,
                "no topology spread over nodes (or pod anti-affinity): replicas may share a node",
            )


@rule("service-account-token", "polaris automountServiceAccountToken; checkov CKV_K8S_38")
def _sa_token(inputs: PolicyInputs):
    accounts = {m.name: m.doc for m in inputs.of_kind("ServiceAccount")}
    for w in inputs.workloads():
        account = accounts.get(w.pod.get("serviceAccountName") or "default", {})
        if w.pod.get("automountServiceAccountToken") is False:
            continue
        if (
            w.pod.get("automountServiceAccountToken") is None
            and account.get("automountServiceAccountToken") is False
        ):
            continue
        yield w.resource, "a service account token is mounted; the model server never calls the API"


@rule("default-service-account", "checkov CKV_K8S_41")
def _default_sa(inputs: PolicyInputs):
    for w in inputs.workloads():
        if (w.pod.get("serviceAccountName") or "default") == "default":
            yield w.resource, "runs as the namespace's default service account"


@rule(
    "namespace", "checkov CKV_K8S_21; one namespace, as selectors and service accounts only reach within it"
)
def _namespace(inputs: PolicyInputs):
    namespaces = {}
    for m in inputs.manifests:
        namespace = (m.doc.get("metadata") or {}).get("namespace")
        resource = f"{m.kind}/{m.name}"
        if not namespace:
            yield (
                resource,
                "no metadata.namespace: it lands in the kubectl context's namespace, often `default`",
            )
        elif namespace in SHARED_NAMESPACES:
            yield resource, f"namespace {namespace!r} is shared with everything else in the cluster"
        else:
            namespaces[resource] = namespace
    if len(set(namespaces.values())) > 1:
        # A NetworkPolicy, PodDisruptionBudget or serviceAccountName only reaches objects of its own namespace.
        spread = ", ".join(f"{r} in {n}" for r, n in sorted(namespaces.items()))
        yield "all objects", f"split over several namespaces ({spread}); they only work together in one"


@rule("sensitive-env", "polaris sensitiveContainerEnvVar")
def _sensitive_env(inputs: PolicyInputs):
    for _, c, where in _per_container(inputs):
        for var in c.get("env") or []:
            if "value" in var and SENSITIVE_NAME.search(str(var.get("name"))):
                yield where, f"env {var['name']} holds a literal value; take it from a Secret"
    for m in inputs.of_kind("ConfigMap"):
        for key in m.doc.get("data") or {}:
            if SENSITIVE_NAME.search(str(key)):
                yield f"ConfigMap/{m.name}", f"{key} looks like a secret; ConfigMaps are not secret"


@rule("management-port-private", "torchship image contract (the management API stays on 127.0.0.1)")
def _management_private(inputs: PolicyInputs):
    port = int(inputs.config_env().get("TORCHSHIP_MANAGEMENT_PORT", CONTRACT_PORTS["management"]))
    for _, c, where in _per_container(inputs):
        for p in c.get("ports") or []:
            if p.get("containerPort") == port:
                yield where, f"declares the management port {port} as a container port"
    for m in inputs.of_kind("Service"):
        for p in (m.doc.get("spec") or {}).get("ports") or []:
            if port in (p.get("port"), p.get("targetPort")):
                yield f"Service/{m.name}", f"exposes the management port {port}"
    if inputs.config_env().get("TORCHSHIP_MANAGEMENT_ADDRESS", "127.0.0.1") != "127.0.0.1":
        yield "ConfigMap", "TORCHSHIP_MANAGEMENT_ADDRESS must stay 127.0.0.1"


@rule("graceful-shutdown", "DELIVERY-NOTES: endpoints are removed independently of SIGTERM")
def _graceful(inputs: PolicyInputs):
    for w, c, where in _per_container(inputs, serving_only=True):
        grace = w.pod.get("terminationGracePeriodSeconds", 30)
        command = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command")
        sleep = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep")
        if sleep:
            seconds = int(sleep.get("seconds", 0))
        elif command and command[0].endswith("sleep") and len(command) == 2 and str(command[1]).isdigit():
            seconds = int(command[1])
        else:
            yield where, "no preStop sleep: requests still routed to a stopping pod fail"
            continue
        needed = seconds + inputs.response_timeout_s
        if grace < needed:
            yield (
                where,
                (
                    f"terminationGracePeriodSeconds {grace} < preStop {seconds} s + response timeout "
                    f"{inputs.response_timeout_s} s: in-flight requests are killed"
                ),
            )


@rule("cpu-threads", "torchship: torch threads x workers must fit the CPU limit (no CFS throttling)")
def _threads(inputs: PolicyInputs):
    env = inputs.config_env()
    if "TORCHSHIP_THREADS" not in env:
        return
    used = int(env["TORCHSHIP_THREADS"]) * int(env.get("TORCHSHIP_WORKERS", "1"))
    for _, c, where in _per_container(inputs):
        limit = ((c.get("resources") or {}).get("limits") or {}).get("cpu")
        if limit is not None and used > math.ceil(cpu_cores(str(limit))):
            yield where, f"{used} torch threads (threads x workers) on a CPU limit of {limit}"


def check_policy(inputs: PolicyInputs) -> list[Finding]:
    return [finding for r in RULES for finding in r.check(inputs)]
