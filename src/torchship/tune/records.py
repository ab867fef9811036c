"""What a sweep recorded: typed, written as tune.json and read back by the chart and the tests."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, Field

from torchship.tune.plan import FP32, Candidate, Engine, ServeConfig

# p99 at most this many times p50: a configuration whose tail is longer makes some clients wait for batches
# of others (the measure of a steady service); `tune --max-tail-ratio` changes it.
DEFAULT_MAX_TAIL_RATIO = 2.0


class Measurement(BaseModel):
    """One configuration under load: the load generator's figures plus what switching to it cost."""

    config: ServeConfig
    backend: str  # the compiled backend of the .mar measured
    precision: str = FP32  # absent in tune.json written before reduced precision
    keep_fp32: tuple[str, ...] = ()
    requests: int
    failures: int
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    client_cpu_cores: float
    start_s: float  # TorchServe start to workers ready with this configuration

    @property
    def tail_ratio(self) -> float:
        return self.p99_ms / self.p50_ms if self.p50_ms > 0 else float("inf")

    def meets(self, budget_p95_ms: float | None, max_tail_ratio: float | None = None) -> bool:
        """Every request answered 200 and, with a budget, p95 within it; with a tail bound, p99 within
        `max_tail_ratio` x p50."""
        return (
            self.failures == 0
            and (budget_p95_ms is None or self.p95_ms <= budget_p95_ms)
            and (max_tail_ratio is None or self.tail_ratio <= max_tail_ratio)
        )

    @property
    def candidate(self) -> Candidate:
        return Candidate(
            backend=self.backend, precision=self.precision, keep_fp32=self.keep_fp32, config=self.config
        )


class Agreement(BaseModel):
    """How closely an engine's answers match the fp32 source model's, by the task's own measure (the
    gate's precision check on the examples and the eval set)."""

    measure: str  # e.g. flip_rate, entity_f1, mean_cosine
    value: float | None
    better: str  # "higher" or "lower"
    refused_by: str | None = None  # the limit that refused the engine, e.g. "min_mean_cosine 0.99"


class BackendStatus(BaseModel):
    """An engine (backend at a precision) the tune considered: measured, or refused before measuring (and
    why), with its in-process floor and its agreement with the source model: the frontier's two axes."""

    backend: str
    precision: str = FP32
    keep_fp32: tuple[str, ...] = ()
    refused: str | None = None
    floor_rps: float | None = None  # requests/s of the handler code on this engine in-process
    agreement: Agreement | None = None

    @property
    def engine(self) -> Engine:
        return Engine(backend=self.backend, precision=self.precision, keep_fp32=self.keep_fp32)

    @staticmethod
    def of(engine: Engine, **values: Any) -> BackendStatus:
        return BackendStatus(
            backend=engine.backend, precision=engine.precision, keep_fp32=engine.keep_fp32, **values
        )


class TuneResult(BaseModel):
    torchship_version: str | None = None  # the torchship that ran the sweep (absent in older tune.json)
    model: str
    version: str
    backend: str
    budget_p95_ms: float | None
    concurrency: int
    # Where the request bodies came from (the spec's examples or --requests-file) and how many distinct ones
    # were cycled; tune.json before pair tasks called them texts_origin and texts.
    requests_origin: str = Field(validation_alias=AliasChoices("requests_origin", "texts_origin"))
    request_bodies: int = Field(validation_alias=AliasChoices("request_bodies", "texts"))
    machine: str
    load_average: tuple[float, float, float]
    started: str
    duration_s: float
    time_bound_s: float
    measurements: list[Measurement]
    backends: list[BackendStatus] = []
    not_measured: list[Candidate]  # left when the time bound ran out
    chosen: ServeConfig | None
    chosen_backend: str | None = None
    chosen_precision: str | None = None
    chosen_keep_fp32: tuple[str, ...] = ()
    baseline: ServeConfig  # the spec's configuration when the sweep ran
    max_tail_ratio: float | None = None  # absent before the tail bound: none

    def meets(self, measurement: Measurement) -> bool:
        return measurement.meets(self.budget_p95_ms, self.max_tail_ratio)

    @property
    def chosen_engine(self) -> Engine | None:
        if self.chosen_backend is None:
            return None
        return Engine(
            backend=self.chosen_backend,
            precision=self.chosen_precision or FP32,
            keep_fp32=self.chosen_keep_fp32,
        )

    def is_chosen(self, measurement: Measurement) -> bool:
        return measurement.config == self.chosen and measurement.candidate.engine == self.chosen_engine
