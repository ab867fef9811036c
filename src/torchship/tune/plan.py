"""The grid `torchship tune` sweeps: workers × torch threads per worker × server batch × batch delay, and
for workers of more than one thread whether their OpenMP threads sleep or spin between runs.

Bounded by the machine: workers × threads never exceeds the cores (more only oversubscribes the CPU, the
architecture page's measured pitfall), and the batch sizes stay within what one request may carry. The
spec's own configuration comes first, so every sweep measures the baseline it is compared with.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from torchship.spec import ServeSpec

WaitPolicy = Literal["passive", "active"]

# In the order measured: when the time bound cuts a sweep short, the common middle values are in.
BATCH_SIZES = (8, 16, 4)
BATCH_DELAYS_MS = (5, 2, 10)


class ServeConfig(BaseModel):
    """One point of the grid: the serve: keys a sweep changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int = Field(ge=1)
    threads: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    max_batch_delay_ms: int = Field(ge=0)
    # serve.omp_wait_policy (absent in tune.json written before it: passive, the default since).
    omp_wait_policy: WaitPolicy = "passive"

    @property
    def label(self) -> str:
        spin = " · spinning" if self.omp_wait_policy == "active" else ""
        return (
            f"workers {self.workers} · threads {self.threads} · batch {self.batch_size} · "
            f"delay {self.max_batch_delay_ms} ms{spin}"
        )


FP32 = "fp32"


class Engine(BaseModel):
    """A compiled model tune can serve: a backend at a numeric precision (compile.backend, compile.precision)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str
    precision: str = FP32
    keep_fp32: tuple[str, ...] = ()  # compile.int8_keep_fp32: products an int8 engine keeps in fp32

    @property
    def label(self) -> str:
        label = self.backend if self.precision == FP32 else f"{self.backend} {self.precision}"
        return label + (f" ({', '.join(self.keep_fp32)} fp32)" if self.keep_fp32 else "")


class Candidate(BaseModel):
    """What one measurement runs: an engine's .mar with one serving configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str
    precision: str = FP32  # absent in tune.json written before reduced precision: fp32
    keep_fp32: tuple[str, ...] = ()
    config: ServeConfig

    @property
    def engine(self) -> Engine:
        return Engine(backend=self.backend, precision=self.precision, keep_fp32=self.keep_fp32)

    @property
    def label(self) -> str:
        return f"{self.engine.label} · {self.config.label}"


def candidates(configs: list[ServeConfig], engines: list[Engine]) -> list[Candidate]:
    """Every engine at every configuration, the engines varying fastest: a sweep cut short by its time
    bound has compared the engines at the spec's own configuration first."""
    return [
        Candidate(backend=e.backend, precision=e.precision, keep_fp32=e.keep_fp32, config=c)
        for c in configs
        for e in engines
    ]


def current_config(serve: ServeSpec, cores: int) -> ServeConfig:
    """The spec's configuration, with threads resolved the way the handler resolves them."""
    return ServeConfig(
        workers=serve.workers,
        threads=serve.threads or max(1, cores // serve.workers),
        batch_size=serve.batch_size,
        max_batch_delay_ms=serve.max_batch_delay_ms,
        omp_wait_policy=serve.omp_wait_policy,
    )


def worker_layouts(cores: int) -> list[tuple[int, int]]:
    """(workers, threads) pairs that use at most `cores` cores: all cores in one worker, one thread per
    worker across all cores, and the halves between (e.g. 8 cores: 1×8, 2×4, 4×2, 8×1)."""
    layouts = []
    workers = 1
    while workers <= cores:
        layouts.append((workers, cores // workers))
        workers *= 2
    if (cores, 1) not in layouts:
        layouts.append((cores, 1))
    if cores >= 2:
        layouts.append((1, cores // 2))  # fewer threads than cores leaves room for the frontend and client
    return list(dict.fromkeys(layouts))


def sweep_grid(
    serve: ServeSpec,
    cores: int,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    delays_ms: tuple[int, ...] = BATCH_DELAYS_MS,
) -> list[ServeConfig]:
    """Every configuration to measure, the spec's own first, no duplicates. Spinning OpenMP threads are
    tried only where a worker has more than one (a single thread never waits for a team)."""
    batches = [b for b in batch_sizes if b <= max(serve.max_texts_per_request, 1)] or [serve.batch_size]
    grid = [
        ServeConfig(workers=w, threads=t, batch_size=b, max_batch_delay_ms=d, omp_wait_policy=policy)
        # Layouts vary fastest: a sweep cut short has compared every worker layout at the first values.
        for d, b, (w, t, policy) in itertools.product(delays_ms, batches, _layouts_and_policies(cores))
    ]
    return list(dict.fromkeys([current_config(serve, cores), *grid]))


def _layouts_and_policies(cores: int) -> list[tuple[int, int, WaitPolicy]]:
    passive: WaitPolicy = "passive"
    active: WaitPolicy = "active"
    layouts = worker_layouts(cores)
    return [(w, t, passive) for w, t in layouts] + [(w, t, active) for w, t in layouts if t > 1]
