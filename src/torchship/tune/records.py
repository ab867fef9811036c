"""What a sweep recorded: typed, written as tune.json and read back by the chart and the tests."""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, Field

from torchship.tune.plan import Candidate, ServeConfig


class Measurement(BaseModel):
    """One configuration under load: the load generator's figures plus what switching to it cost."""

    config: ServeConfig
    backend: str  # the compiled backend of the .mar measured
    requests: int
    failures: int
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    client_cpu_cores: float
    start_s: float  # TorchServe start to workers ready with this configuration

    def meets(self, budget_p95_ms: float | None) -> bool:
        """Every request answered 200 and, with a budget, p95 within it."""
        return self.failures == 0 and (budget_p95_ms is None or self.p95_ms <= budget_p95_ms)

    @property
    def candidate(self) -> Candidate:
        return Candidate(backend=self.backend, config=self.config)


class BackendStatus(BaseModel):
    """A compiled backend the tune considered: measured, or refused before measuring (and why)."""

    backend: str
    refused: str | None = None


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
    baseline: ServeConfig  # the spec's configuration when the sweep ran
