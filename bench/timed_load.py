"""A load bounded by time rather than by a request count: what bench/tasks.py measures every system with.

The same client as torchship.loadgen (one asyncio loop, httpx, a bearer token), closed-loop: each client
sends its next body as soon as its last one answered, until the window closes; requests in flight then
finish and count. Throughput is answered requests over the time from the window's start to the last
answer. Before the window: one request alone, then another (its latency says how slow the system is) and an unmeasured
warm-up at the clients' concurrency, `warmup_s` long and at least one request per client: connections,
the first batches, and TorchScript's profiling executor, which re-optimizes the graph for the first few
new input shapes it meets (each costs a slow call, and dynamic padding meets many).

A system whose lone request takes long is given fewer clients (never fewer than one): with every
client's request still in flight when the window closes, the tail would otherwise run for clients x the
request's time on a server that answers one request at a time (the stock-style handler: for bert-base
keywords, minutes). Such a server's throughput does not depend on how many clients wait in its queue;
the clients used are recorded with every figure.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

import httpx

from torchship.loadgen import percentiles


@dataclass(frozen=True)
class TimedLoad:
    clients: int
    requests: int  # answered 200 in the measurement
    failures: int
    seconds: float  # window start to the last answer
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    single_request_ms: float  # the lone request before the window
    client_cpu_cores: float


def clients_for(single_request_s: float, clients: int, max_tail_s: float) -> int:
    """At most `clients`, and no more than whose requests, one after another, end within `max_tail_s`."""
    if single_request_s <= 0:
        return clients
    return max(1, min(clients, int(max_tail_s / single_request_s)))


def timed_load(
    url: str,
    token: str,
    bodies: list[Any],
    clients: int,
    window_s: float,
    max_tail_s: float,
    warmup_s: float = 0.0,
) -> TimedLoad:
    return asyncio.run(_timed_load(url, token, bodies, clients, window_s, max_tail_s, warmup_s))


async def _timed_load(
    url: str,
    token: str,
    bodies: list[Any],
    clients: int,
    window_s: float,
    max_tail_s: float,
    warmup_s: float,
) -> TimedLoad:
    cycle = itertools.cycle(bodies)
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=600, limits=limits
    ) as client:

        async def one() -> float:
            nonlocal failures
            started = time.perf_counter()
            try:
                failed = (await client.post(url, json=next(cycle))).status_code != 200
            except httpx.HTTPError:
                failed = True
            failures += failed
            return time.perf_counter() - started

        async def closed_loop(seconds: float, answered: list[float]) -> None:
            """Every client sends at least once, then again as long as the `seconds` last."""
            deadline = time.perf_counter() + seconds

            async def client_loop() -> None:
                answered.append(await one() * 1000)
                while time.perf_counter() < deadline:
                    answered.append(await one() * 1000)

            await asyncio.gather(*(client_loop() for _ in range(used)))

        await one()  # the very first request pays for loading and the first shapes: not a lone request's time
        single = await one()
        used = clients_for(single, clients, max_tail_s)
        await closed_loop(warmup_s, [])
        failures = 0
        cpu, started = time.process_time(), time.perf_counter()
        await closed_loop(window_s, latencies)
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - cpu
    figures = percentiles(latencies)
    answered = len(latencies) - failures
    return TimedLoad(
        clients=used,
        requests=answered,
        failures=failures,
        seconds=seconds,
        requests_per_s=answered / seconds,
        p50_ms=figures["p50"],
        p95_ms=figures["p95"],
        p99_ms=figures["p99"],
        single_request_ms=single * 1000,
        client_cpu_cores=client_cpu / seconds,
    )
