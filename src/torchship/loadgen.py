"""The load generator shared by `torchship tune` and bench/: concurrent single-text requests from one
asyncio loop, with latency percentiles and the client's own CPU use.

One asyncio loop, not a thread per request: the client shares the machine's cores with TorchServe, and
threads fighting over the GIL would take CPU the server needs. The client's CPU time is reported so a
reader can see how much of the machine the load itself used.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx

from torchship.validate.records import percentile

# Words the synthetic texts are made of: plain English, so the tokenizer yields about one token per word.
WORDS = [
    "model",
    "serving",
    "latency",
    "matters",
    "when",
    "every",
    "request",
    "waits",
    "for",
    "a",
    "batch",
    "of",
    "texts",
    "to",
    "be",
    "padded",
    "and",
    "run",
    "through",
    "the",
    "encoder",
    "so",
    "we",
    "measure",
    "throughput",
    "under",
    "load",
    "with",
    "short",
    "and",
    "long",
    "sentences",
    "about",
    "cats",
    "dogs",
    "markets",
    "weather",
    "travel",
    "music",
    "science",
    "history",
    "football",
    "cooking",
    "gardens",
    "rivers",
    "mountains",
]


def make_texts(tokenizer, target_tokens: int, count: int) -> list[str]:
    """`count` different texts of about `target_tokens` tokens each (special tokens included)."""
    texts = []
    for i in range(count):
        words: list[str] = []
        while True:
            words.append(WORDS[(i * 7 + len(words) * 3) % len(WORDS)])
            if len(tokenizer(" ".join(words))["input_ids"]) >= target_tokens:
                break
        texts.append(" ".join(words))
    return texts


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    return {
        **{f"p{round(q * 100)}": percentile(latencies_ms, q) for q in (0.50, 0.95, 0.99)},
        "mean": statistics.fmean(latencies_ms),
    }


@dataclass(frozen=True)
class LoadResult:
    requests: int
    failures: int
    throughput_rps: float
    client_cpu_cores: float
    p50: float
    p95: float
    p99: float
    mean: float

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def load_test(url: str, token: str, bodies: list[Any], concurrency: int, warmup: bool = True) -> LoadResult:
    """POST every request body once as JSON with `concurrency` requests in flight (after a warm-up round
    of `concurrency` requests that is not measured)."""
    return asyncio.run(_load_test(url, token, bodies, concurrency, warmup))


async def _load_test(url: str, token: str, bodies: list[Any], concurrency: int, warmup: bool) -> LoadResult:
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=120, limits=limits
    ) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(body: Any) -> None:
            nonlocal failures
            async with gate:
                started = time.perf_counter()
                try:
                    response = await client.post(url, json=body)
                    failed = response.status_code != 200
                except httpx.HTTPError:
                    failed = True
                latencies.append((time.perf_counter() - started) * 1000)
                failures += failed

        if warmup:  # connections and the worker's first batches are not what a steady client sees
            await asyncio.gather(*(one(bodies[i % len(bodies)]) for i in range(concurrency)))
            latencies.clear()
            failures = 0
        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - started
        client_cpu = time.process_time() - cpu
    return LoadResult(
        requests=len(bodies),
        failures=failures,
        throughput_rps=len(bodies) / wall,
        client_cpu_cores=client_cpu / wall,
        **percentiles(latencies),
    )
