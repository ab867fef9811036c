"""Prove a served model's metrics reach a real Prometheus with the values sent.

A local Prometheus (deploy/prometheus_local.py) scrapes the server's metrics port; then good requests and
bad ones of known kinds go to the model, each counted here; the proof holds when Prometheus' own
torchship_requests, by code and reason, increased by exactly those counts, and TorchServe's request counter
by their sum. `torchship rehearse` runs it against the played pod (its metrics port on 127.0.0.1).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from torchship.deploy.errors import RehearsalFailed
from torchship.deploy.prometheus_local import LocalPrometheus, Sample, ScrapeTarget

JOB = "torchship-rehearsal"
GOOD_REQUESTS = 3
# Client mistakes whose reason the handler names (handlers/metrics.py): (body, content type, reason).
BAD_REQUESTS: tuple[tuple[bytes, str], ...] = (
    (b'{"not_a_key": 1}', "bad_schema"),
    (b'{"not_a_key": 2}', "bad_schema"),
    (b'{"text": ', "malformed_json"),
)
ARRIVAL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class MetricsProof:
    """What Prometheus saw: the increases by (code, reason), against what was sent."""

    target: str
    scrape_interval_s: int
    sent: dict[str, int]  # "code reason" -> requests sent
    seen: dict[str, float]  # the same keys, as Prometheus' increase
    requests_total_sent: int
    requests_total_seen: float
    series: int  # how many series of the model Prometheus holds
    waited_s: float  # from the last request to the counts arriving
    ok: bool

    def summary(self) -> str:
        seen = ", ".join(f"{key} {value:g}" for key, value in sorted(self.seen.items()))
        state = "arrived as sent" if self.ok else "DID NOT arrive as sent"
        return (
            f"Prometheus scraped {self.target} every {self.scrape_interval_s} s: torchship_requests {{{seen}}} "
            f"{state} ({sum(self.sent.values())} requests counted by the rehearsal; ts_inference_requests_total "
            f"+{self.requests_total_seen:g}; {self.series} series of the model; "
            f"{self.waited_s:.1f} s to arrive)"
        )


def _by_code_and_reason(samples: list[Sample]) -> Counter:
    return Counter({f"{s.labels.get('code')} {s.labels.get('reason')}": s.value for s in samples})


def _send(inference_url: str, model: str, good_body: Any, headers: dict[str, str]) -> Counter:
    sent: Counter = Counter()
    with httpx.Client(base_url=inference_url, timeout=60.0, headers=headers) as client:
        for _ in range(GOOD_REQUESTS):
            response = client.post(f"/predictions/{model}", content=json.dumps(good_body).encode(),
                                   headers={"content-type": "application/json"})  # fmt: skip
            if response.status_code != 200:
                raise RehearsalFailed(
                    f"the metrics proof's good request answered {response.status_code}: {response.text[:200]}",
                    hint="The model answered the parity check; see the container's logs.",
                )
            sent["200 ok"] += 1
        for body, reason in BAD_REQUESTS:
            response = client.post(
                f"/predictions/{model}", content=body, headers={"content-type": "application/json"}
            )
            sent[f"{response.status_code} {reason}"] += 1
    return sent


def prove_metrics(
    inference_url: str,
    metrics_address: str,
    model: str,
    good_body: Any,
    headers: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> MetricsProof:
    """Start a Prometheus on `metrics_address`, send counted traffic, compare; always stop it."""
    select = f'job="{JOB}",model_name="{model}"'
    requests_query = f"sum by (code, reason) (torchship_requests{{{select}}})"
    total_query = f"sum(ts_inference_requests_total{{{select}}})"
    target = ScrapeTarget(JOB, metrics_address, labels=labels or {})
    with LocalPrometheus([target]) as prometheus:
        if not prometheus.wait_for_scrape(JOB, timeout_s=ARRIVAL_TIMEOUT_S):
            health = prometheus.target_health().get(JOB)
            raise RehearsalFailed(
                f"Prometheus could not scrape {metrics_address} within {ARRIVAL_TIMEOUT_S:.0f} s"
                f" ({health.health if health else 'no target'}: {health.last_error if health else ''})",
                hint="The pod's metrics port (TORCHSHIP_METRICS_PORT) must serve /metrics; see the container's logs.",
            )
        before = _by_code_and_reason(prometheus.query(requests_query))
        total_before = sum(s.value for s in prometheus.query(total_query))
        sent = _send(inference_url, model, good_body, headers or {})
        last_sent = time.monotonic()

        def increase(samples: list[Sample]) -> Counter:
            now = _by_code_and_reason(samples)
            return +Counter({key: now[key] - before.get(key, 0.0) for key in now})

        after = prometheus.wait_until(requests_query, lambda s: increase(s) == sent, ARRIVAL_TIMEOUT_S)
        waited = time.monotonic() - last_sent
        total = prometheus.wait_until(
            total_query, lambda s: sum(x.value for x in s) - total_before == sum(sent.values()), 10.0
        )
        series = len(prometheus.query(f'{{{select},__name__=~"torchship_.*|ts_.*"}}'))
        seen = increase(after)
        total_seen = sum(s.value for s in total) - total_before
        return MetricsProof(
            target=metrics_address,
            scrape_interval_s=prometheus.scrape_interval_s,
            sent=dict(sent),
            seen=dict(seen),
            requests_total_sent=sum(sent.values()),
            requests_total_seen=total_seen,
            series=series,
            waited_s=waited,
            ok=seen == sent and total_seen == sum(sent.values()),
        )
