"""The pick: the highest throughput among configurations whose p95 meets the budget and whose p99 stays
within the tail bound."""

from __future__ import annotations

from torchship.tune.records import Measurement


def best_within_budget(
    measurements: list[Measurement], budget_p95_ms: float | None, max_tail_ratio: float | None = None
) -> Measurement | None:
    """None when no configuration meets the budget and the tail bound (or every one failed requests)."""
    eligible = [m for m in measurements if m.meets(budget_p95_ms, max_tail_ratio)]
    # Ties go to the lower p95: the same throughput with less waiting.
    return max(eligible, key=lambda m: (m.throughput_rps, -m.p95_ms), default=None)
