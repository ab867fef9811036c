"""The HPA's load signals and their targets, derived from what `tune` measured (or the spec), never typed in.

CPU alone is a poor signal for a batching server: a pod whose workers wait for batches shows little CPU while
requests queue, and TorchServe's own example scales on a counter that never goes down (pytorch/serve#3286).
So the HPA also scales on two per-pod signals that prometheus-adapter serves from TorchServe's metrics
(the rules are rendered into monitoring/prometheus-adapter-rules.yaml):

- **in-flight requests per pod** (`torchship_inflight_requests`): by Little's law, the summed time requests
  spent in the pod per second, `rate(ts_inference_latency_microseconds[1m]) / 1e6`, is the mean number of
  requests in it (waiting in the queue or being run) over the last minute. It rises as soon as requests
  queue and falls back when the load does. A pod runs at most `workers × batch_size` requests at once (each
  worker takes one batch); the target is LOAD_TARGET_SHARE of those slots, so the HPA adds pods before
  requests wait for a free worker.
- **requests per second per pod** (`torchship_requests_per_second`, `rate(ts_inference_requests_total[1m])`):
  only when `tune.json` holds a measurement of the deployed configuration (engine, workers, threads, batch,
  delay); the target is LOAD_TARGET_SHARE of that measured throughput.

The HPA takes the largest replica count any of its metrics asks for, and CPU stays among them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torchship.deploy.derive import Derived
from torchship.spec import ModelSpec
from torchship.tune.plan import FP32, ServeConfig
from torchship.tune.records import Measurement, TuneResult

# Scale out at 70% of what a pod can take: the headroom absorbs the minute the signal averages over and the
# start of a new pod (its startup budget), the same margin as the CPU target's default.
LOAD_TARGET_SHARE = 0.7
INFLIGHT_METRIC = "torchship_inflight_requests"
RPS_METRIC = "torchship_requests_per_second"
SIGNAL_WINDOW = "1m"


@dataclass(frozen=True)
class LoadMetrics:
    """The names and window the HPA and prometheus-adapter's rules share."""

    inflight_metric: str = INFLIGHT_METRIC
    rps_metric: str = RPS_METRIC
    window: str = SIGNAL_WINDOW


@dataclass(frozen=True)
class Measured:
    """The tune measurement of the deployed configuration."""

    throughput_rps: float
    p50_ms: float
    p95_ms: float
    concurrency: int
    machine: str
    started: str
    config_label: str


@dataclass(frozen=True)
class Autoscaling:
    """The HPA's load metrics with their targets, and the derivation the rendered comments state."""

    slots: int  # requests a pod runs at once: workers × batch_size
    inflight_target: float  # mean requests in a pod
    rps_target: float | None  # requests/s per pod; None without a tune measurement
    measured: Measured | None
    source: str  # where workers and batch_size come from, and the throughput when measured
    why_no_rps: str | None  # said in the comments when rps_target is None

    # The names and window the rendered HPA shares with the adapter rules (LoadMetrics).
    inflight_metric: str = INFLIGHT_METRIC
    rps_metric: str = RPS_METRIC
    window: str = SIGNAL_WINDOW
    share: float = LOAD_TARGET_SHARE

    @property
    def inflight_milli(self) -> str:
        """The target as a Kubernetes quantity (milli-units keep one decimal exact)."""
        return f"{round(self.inflight_target * 1000)}m"

    @property
    def rps_milli(self) -> str | None:
        return None if self.rps_target is None else f"{round(self.rps_target * 1000)}m"


def deployed_config(spec: ModelSpec, derived: Derived) -> ServeConfig:
    """The serve configuration the rendered pods run: the spec's, with the threads the manifests give."""
    return ServeConfig(
        workers=spec.serve.workers,
        threads=derived.threads,
        batch_size=spec.serve.batch_size,
        max_batch_delay_ms=spec.serve.max_batch_delay_ms,
        omp_wait_policy=spec.serve.omp_wait_policy,
    )


def _measurement_of(tune: TuneResult, spec: ModelSpec, config: ServeConfig) -> Measurement | None:
    precision = spec.compile.precision or FP32
    for measurement in tune.measurements:
        if (
            measurement.config == config
            and measurement.backend == spec.compile.backend
            and measurement.precision == precision
            and measurement.failures == 0
        ):
            return measurement
    return None


def autoscaling(spec: ModelSpec, derived: Derived, tune: TuneResult | None) -> Autoscaling:
    config = deployed_config(spec, derived)
    slots = config.workers * config.batch_size
    inflight = round(LOAD_TARGET_SHARE * slots, 1)
    spec_source = f"the spec's serve: section, {config.label}"
    if tune is None:
        return Autoscaling(
            slots, inflight, None, None, spec_source,
            "no tune.json (run `torchship tune SPEC` on the node type you deploy to)",
        )  # fmt: skip
    measurement = _measurement_of(tune, spec, config)
    if measurement is None:
        return Autoscaling(
            slots, inflight, None, None, spec_source,
            f"tune.json ({tune.started}) measured no {spec.compile.backend} {spec.compile.precision or FP32} "
            f"configuration equal to the deployed one ({config.label}); `torchship tune --write` makes them agree",
        )  # fmt: skip
    measured = Measured(
        throughput_rps=measurement.throughput_rps,
        p50_ms=measurement.p50_ms,
        p95_ms=measurement.p95_ms,
        concurrency=tune.concurrency,
        machine=tune.machine,
        started=tune.started,
        config_label=config.label,
    )
    rps = math.floor(LOAD_TARGET_SHARE * measurement.throughput_rps * 10) / 10
    return Autoscaling(
        slots, inflight, rps, measured,
        f"tune.json: {config.label} measured {measurement.throughput_rps:.1f} req/s at {tune.concurrency} "
        f"clients on {tune.machine} ({tune.started})",
        None,
    )  # fmt: skip
