"""Replay real requests against two live endpoints — the stable version and its canary — and collect both
answers and both latencies from the same run.

This is the measuring half of `torchship diff --live STABLE_URL CANARY_URL --replay requests.jsonl`: it
returns typed answers (`LiveAnswers`); turning them into a `DiffRecord` (the task's measures, thresholds)
is the diff's job, exactly as for a local diff.

What it guarantees, and why:
- Nothing is sent before both endpoints answer `GET /ping`: a canary decision must never rest on one side's
  answers only, so an unreachable URL fails first (`LiveEndpointUnreachable`, naming the URL).
- Every bad line of the replay file is reported (`SkippedInput`, "requests.jsonl:12") and the rest still
  replays: real traffic captures contain junk, and one junk line must not hide the other answers.
- Each request goes to both sides back to back, in alternating order (stable first for even requests,
  canary first for odd ones): whichever side is asked second may find caches, connections or the
  tokenizer's pages warm, and alternating gives that advantage to each side half the time.
- A request either side refuses (non-200) is skipped with both status and message: a live endpoint sees
  inputs it may legitimately reject, and the comparison is only meaningful on requests both answered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from torchship.diff.inputs import json_lines
from torchship.diff.record import LatencyComparison, LatencyRun, SkippedInput
from torchship.errors import TorchshipError
from torchship.validate.records import percentile

PING_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 60.0
DEFAULT_CLIENTS = 4
MESSAGE_CHARS = 200  # of a refusal's body, in a skipped input's reason


class LiveReplayError(TorchshipError):
    """The replay cannot run (no usable requests, an unreadable replay file)."""


class LiveEndpointUnreachable(LiveReplayError):
    """A live endpoint did not answer GET /ping; nothing was sent to either side."""


@dataclass(frozen=True)
class LiveAnswers:
    """Both sides' answers to the same requests, index by index, and their latency in the same run.

    `requests[i]` came from `origins[i]` ("requests.jsonl:3"); `stable[i]` and `canary[i]` are the parsed
    JSON answers. Requests that could not be compared are in `skipped`, not in these lists. In `latency`,
    `old` is the stable side and `new` the canary (ratios are canary / stable)."""

    requests: list[Any]
    stable: list[Any]
    canary: list[Any]
    latency: LatencyComparison
    skipped: list[SkippedInput] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReplayLine:
    where: str  # "requests.jsonl:12"
    body: Any


def _bad_body(body: Any) -> str | None:
    """Why a parsed line is not a request body, or None. Bodies are what the task's request schema reads:
    a JSON object ({"text": ...}), a list of texts, or one text."""
    if body is None:
        return "null is not a request body"
    if isinstance(body, bool | int | float):
        return f'a bare {type(body).__name__} is not a request body (expected a JSON object, e.g. {{"text": ...}})'
    if isinstance(body, dict | list | str) and not body:
        kind = "object" if isinstance(body, dict) else "list" if isinstance(body, list) else "string"
        return f"empty {kind}: nothing to send"
    return None


def read_replay(
    path: Path, check_body: Callable[[Any], str | None] | None = None
) -> tuple[list[ReplayLine], list[SkippedInput]]:
    """Every good line of a replay file, and each bad line with its line number and reason. `check_body`: the
    task's own rule (why a body is not one request it answers with one result), applied after the generic one.

    Blank lines are not requests and not errors (files often end with one); anything else that is not a
    usable JSON request body is reported and skipped, and reading goes on."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LiveReplayError(
            f"cannot read the replay file {path}: {exc}",
            hint='Pass a UTF-8 JSON-lines file with one request body per line (e.g. {"text": "..."}).',
        ) from None
    good: list[ReplayLine] = []
    bad: list[SkippedInput] = []
    for where, body, not_json in json_lines(path.name, text):
        if not_json is not None:
            bad.append(SkippedInput(where=where, reason=not_json))
            continue
        reason = _bad_body(body)
        if reason is None and check_body is not None:
            reason = check_body(body)
        if reason is not None:
            bad.append(SkippedInput(where=where, reason=reason))
        else:
            good.append(ReplayLine(where, body))
    return good, bad


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_reachable(side: str, url: str, token: str | None) -> None:
    """GET /ping on one side; a clear error naming the URL when it does not answer 200."""
    ping = f"{url.rstrip('/')}/ping"
    try:
        response = httpx.get(ping, headers=_headers(token), timeout=PING_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise LiveEndpointUnreachable(
            f"the {side} endpoint {url} is unreachable ({type(exc).__name__}: {exc}); nothing was sent to "
            "either endpoint",
            hint=f"Check that {ping} answers from this machine (a running `kubectl port-forward` to the "
            f"{side} Deployment, the right host and port), then replay again.",
        ) from None
    if response.status_code != 200:
        auth = " (with the bearer token given)" if token else ""
        raise LiveEndpointUnreachable(
            f"the {side} endpoint {url} answered {response.status_code} to GET /ping{auth}: "
            f"{response.text.strip()[:MESSAGE_CHARS]}; nothing was sent to either endpoint",
            hint="Check the URL is TorchServe's inference address and, when it asks for authorization, "
            "pass its inference token.",
        )


@dataclass
class _Outcome:
    """One request's two answers (or why it was skipped) and each side's latency."""

    answers: dict[str, Any] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # both sides' reasons, when both refuse


def _refusal(side: str, response: httpx.Response) -> str:
    message = response.text.strip()
    try:
        parsed = response.json()
        if isinstance(parsed, dict) and parsed.get("message"):
            message = str(parsed["message"])
    except ValueError:
        pass
    return f"{side} answered {response.status_code}: {message[:MESSAGE_CHARS]}"


async def _ask(
    client: httpx.AsyncClient,
    side: str,
    url: str,
    token: str | None,
    model: str,
    body: Any,
    outcome: _Outcome,
) -> None:
    started = time.perf_counter()
    try:
        response = await client.post(
            f"{url.rstrip('/')}/predictions/{model}",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **_headers(token)},
        )
    except httpx.HTTPError as exc:
        outcome.failures.append(f"{side} did not answer ({type(exc).__name__}: {exc})")
        return
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        outcome.failures.append(_refusal(side, response))
        return
    try:
        outcome.answers[side] = response.json()
    except ValueError:
        outcome.failures.append(f"{side} answered 200 but not JSON: {response.text[:MESSAGE_CHARS]}")
        return
    outcome.latency_ms[side] = elapsed_ms


def order_of(index: int) -> tuple[str, str]:
    """Which side is asked first for the index-th request: stable for even, canary for odd."""
    return ("stable", "canary") if index % 2 == 0 else ("canary", "stable")


async def _replay(
    lines: list[ReplayLine], urls: dict[str, str], model: str, clients: int, tokens: dict[str, str | None]
) -> list[_Outcome]:
    outcomes = [_Outcome() for _ in lines]
    pending: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(lines)):
        pending.put_nowait(index)
    limits = httpx.Limits(max_connections=2 * clients, max_keepalive_connections=2 * clients)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as client:

        async def worker() -> None:
            while True:
                try:
                    index = pending.get_nowait()
                except asyncio.QueueEmpty:
                    return
                for side in order_of(index):
                    await _ask(
                        client, side, urls[side], tokens[side], model, lines[index].body, outcomes[index]
                    )

        await asyncio.gather(*(worker() for _ in range(clients)))
    return outcomes


def latency_run(samples_ms: list[float], clients: int) -> LatencyRun:
    """One side's latencies. Throughput is the rate that side served while it was asked: `clients`
    requests in flight at most, one at a time per client, so requests / (total latency / clients). Both
    sides are measured in one interleaved run, so the wall clock alone would give them the same number."""
    if not samples_ms:
        return LatencyRun(requests=0, p50_ms=0.0, p99_ms=0.0, throughput_rps=0.0)
    busy_s = sum(samples_ms) / 1000 / clients
    return LatencyRun(
        requests=len(samples_ms),
        p50_ms=percentile(samples_ms, 0.50),
        p99_ms=percentile(samples_ms, 0.99),
        throughput_rps=len(samples_ms) / busy_s if busy_s > 0 else 0.0,
        samples_ms=samples_ms,
    )


def replay_live(
    stable_url: str,
    canary_url: str,
    model: str,
    replay_file: Path,
    clients: int = DEFAULT_CLIENTS,
    token: str | None = None,
    check_body: Callable[[Any], str | None] | None = None,
    canary_token: str | None = None,
) -> LiveAnswers:
    """Replay `replay_file` (one JSON request body per line) against both live endpoints.

    `stable_url`/`canary_url` are inference base URLs (`http://127.0.0.1:8080`); requests go to
    `/predictions/<model>` with `token` as a bearer token when given (`canary_token`: the canary's own, when
    the two servers have different tokens). Both URLs must answer `GET /ping`
    before any request is sent (`LiveEndpointUnreachable` otherwise). Bad lines and requests either side
    refused are in `skipped`; a file without one usable line is a `LiveReplayError`."""
    if clients < 1:
        raise LiveReplayError(f"clients must be at least 1, not {clients}", hint="Pass --clients 1 or more.")
    lines, skipped = read_replay(replay_file, check_body)
    if not lines:
        raise LiveReplayError(
            f"{replay_file} has no request to replay ({len(skipped)} bad line(s))",
            details="\n".join(f"{s.where}: {s.reason}" for s in skipped) or None,
            hint='Write one request body per line, e.g. {"text": "..."}.',
        )
    urls = {"stable": stable_url, "canary": canary_url}
    tokens = {"stable": token, "canary": canary_token or token}
    for side, url in urls.items():
        check_reachable(side, url, tokens[side])
    outcomes = asyncio.run(_replay(lines, urls, model, clients, tokens))
    requests, origins, stable, canary = [], [], [], []
    samples: dict[str, list[float]] = {"stable": [], "canary": []}
    for line, outcome in zip(lines, outcomes, strict=True):
        if outcome.failures:
            skipped.append(SkippedInput(where=line.where, reason="; ".join(sorted(outcome.failures))))
            continue
        requests.append(line.body)
        origins.append(line.where)
        stable.append(outcome.answers["stable"])
        canary.append(outcome.answers["canary"])
        for side in samples:
            samples[side].append(outcome.latency_ms[side])
    skipped.sort(key=lambda s: int(s.where.rsplit(":", 1)[1]))
    latency = LatencyComparison(
        old=latency_run(samples["stable"], clients),
        new=latency_run(samples["canary"], clients),
        clients=clients,
    )
    return LiveAnswers(requests, stable, canary, latency, skipped, origins)
