"""Asking served versions for answers, and timing two of them side by side in one run.

Both versions answer the same requests. Latency is measured in alternating blocks (old then new, then new then
old, ...) with the same number of concurrent clients, so drift of a shared, noisy machine falls on both
sides alike; a short warm-up goes first so neither pays for the other's cold start. A request that a version
refuses (4xx) is that input's result, not a failure of the run: the diff leaves the input out and says why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from torchship.diff.record import LatencyComparison, LatencyRun
from torchship.errors import ServingError
from torchship.validate.records import percentile

WARMUP_REQUESTS = 4


@dataclass
class Answers:
    """One version's answers to the requests, in order; `refused[i]`: why request i got no answer."""

    answers: list[Any]
    refused: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """Where one version answers: a client (base URL, auth) and the path of its predictions."""

    client: httpx.Client
    path: str  # /predictions/<model name>


def ask(endpoint: Endpoint, body: Any) -> tuple[Any, str | None]:
    """(answer, None), or (None, why) when the version refuses the request; a 5xx or a dead server raises."""
    try:
        response = endpoint.client.post(
            endpoint.path, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
    except httpx.HTTPError as exc:
        raise ServingError(
            f"{endpoint.client.base_url}{endpoint.path} did not answer: {exc}",
            hint="Check that the server is up and reachable from here.",
        ) from None
    if 400 <= response.status_code < 500:
        return None, f"HTTP {response.status_code}: {response.text[:200]}"
    if response.status_code != 200:
        raise ServingError(
            f"{endpoint.client.base_url}{endpoint.path} answered {response.status_code}: {response.text[:300]}",
            hint="A server error is not a difference between versions: look at the server's log.",
        )
    return response.json(), None


def answers(endpoint: Endpoint, bodies: Sequence[Any], clients: int) -> tuple[Answers, list[float]]:
    """Every body's answer (concurrently, `clients` at a time), with each request's latency in ms."""
    latencies: list[float] = []

    def one(body: Any) -> tuple[Any, str | None]:
        started = time.perf_counter()
        result = ask(endpoint, body)
        latencies.append((time.perf_counter() - started) * 1000)
        return result

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(one, bodies))
    refused = {i: why for i, (_, why) in enumerate(results) if why is not None}
    return Answers([answer for answer, _ in results], refused), latencies


def _latency_run(samples: list[float], seconds: float) -> LatencyRun:
    return LatencyRun(
        requests=len(samples),
        p50_ms=round(percentile(samples, 0.5), 3),
        p99_ms=round(percentile(samples, 0.99), 3),
        throughput_rps=round(len(samples) / seconds, 3) if seconds else 0.0,
        samples_ms=[round(s, 3) for s in samples],
    )


def side_by_side(
    old: Endpoint, new: Endpoint, bodies: Sequence[Any], passes: int, clients: int
) -> tuple[Answers, Answers, LatencyComparison]:
    """Both versions' answers (from the first pass) and their latency over `passes` alternating passes."""
    for endpoint in (old, new):
        for body in list(bodies)[:WARMUP_REQUESTS]:
            ask(endpoint, body)
    samples: dict[str, list[float]] = {"old": [], "new": []}
    seconds = {"old": 0.0, "new": 0.0}
    first: dict[str, Answers] = {}
    for number in range(passes):
        order = (("old", old), ("new", new)) if number % 2 == 0 else (("new", new), ("old", old))
        for side, endpoint in order:
            started = time.perf_counter()
            got, latencies = answers(endpoint, bodies, clients)
            seconds[side] += time.perf_counter() - started
            samples[side].extend(latencies)
            first.setdefault(side, got)
    latency = LatencyComparison(
        old=_latency_run(samples["old"], seconds["old"]),
        new=_latency_run(samples["new"], seconds["new"]),
        clients=clients,
    )
    return first["old"], first["new"], latency
