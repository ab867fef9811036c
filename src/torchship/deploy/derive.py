"""Numbers in the manifests that follow from measurements and limits, never typed in by hand.

- Startup budget: the measured time to ready, tripled, plus 30 s — a busy node loads slower than the
  idle machine that measured it, and a startup probe that gives up too early kills the pod in a loop.
- Threads: TorchServe's workers otherwise size their torch pools from the node's cores, not the pod's
  CPU limit, and throttle each other under CFS; each worker gets an equal share of the limit.
- Grace: a preStop sleep lets endpoint removal reach every proxy before SIGTERM; then a batch in flight
  may take up to serve.response_timeout_s; then TorchServe needs a few seconds to stop.
- Rollout timeout: pods roll one at a time (maxSurge 1, maxUnavailable 0), each within its startup
  budget, plus time to pull a ~2 GB image.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from torchship.deploy.inputs import DeployInputs
from torchship.spec import ModelSpec

STARTUP_HEADROOM_FACTOR = 3.0
STARTUP_HEADROOM_S = 30.0
STARTUP_PERIOD_S = 5
READINESS_PERIOD_S = 5
LIVENESS_PERIOD_S = 10
# The probe is a Python process in the container: a few hundred ms on a loaded node, not seconds.
PROBE_TIMEOUT_S = 5
STOP_MARGIN_S = 5
IMAGE_PULL_ALLOWANCE_S = 120
MAX_SURGE = 1

_CPU = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("2", "1.5", "500m") in cores."""
    match = _CPU.match(quantity)
    if match is None:
        raise ValueError(f"{quantity!r} is not a CPU quantity (e.g. 2, 1.5, 500m)")
    value = float(match.group(1))
    return value / 1000 if match.group(2) else value


@dataclass(frozen=True)
class Probe:
    command: tuple[str, ...]
    period_s: int
    timeout_s: int
    failure_threshold: int
    success_threshold: int = 1


@dataclass(frozen=True)
class Derived:
    startup: Probe
    readiness: Probe
    liveness: Probe
    startup_budget_s: int
    threads: int
    workers: int
    termination_grace_s: int
    progress_deadline_s: int
    rollout_timeout_s: int
    max_replicas: int


def startup_budget_s(time_to_ready_s: float) -> int:
    return math.ceil(time_to_ready_s * STARTUP_HEADROOM_FACTOR + STARTUP_HEADROOM_S)


def threads_per_worker(spec: ModelSpec) -> int:
    if spec.serve.threads is not None:
        return spec.serve.threads
    return max(1, math.floor(cpu_cores(spec.deploy.cpu_limit)) // spec.serve.workers)


def derive(spec: ModelSpec, inputs: DeployInputs, probe: str) -> Derived:
    budget = startup_budget_s(inputs.time_to_ready_s)
    startup = Probe((probe, "ready"), STARTUP_PERIOD_S, PROBE_TIMEOUT_S, math.ceil(budget / STARTUP_PERIOD_S))
    # Readiness asks for a READY worker of the model (/ping says Healthy before the model is loaded);
    # liveness only asks whether the frontend answers, so a slow model reload is not a restart.
    readiness = Probe((probe, "ready"), READINESS_PERIOD_S, PROBE_TIMEOUT_S, 2)
    liveness = Probe((probe, "live"), LIVENESS_PERIOD_S, PROBE_TIMEOUT_S, 3)
    per_pod_s = budget + READINESS_PERIOD_S * readiness.success_threshold
    waves = math.ceil(spec.deploy.replicas / MAX_SURGE)
    return Derived(
        startup=startup,
        readiness=readiness,
        liveness=liveness,
        startup_budget_s=budget,
        threads=threads_per_worker(spec),
        workers=spec.serve.workers,
        termination_grace_s=spec.deploy.prestop_sleep_s + spec.serve.response_timeout_s + STOP_MARGIN_S,
        progress_deadline_s=per_pod_s + IMAGE_PULL_ALLOWANCE_S,
        rollout_timeout_s=waves * per_pod_s + IMAGE_PULL_ALLOWANCE_S,
        max_replicas=spec.deploy.max_replicas or 2 * spec.deploy.replicas,
    )
