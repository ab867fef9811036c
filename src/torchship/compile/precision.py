"""Placeholder until the precision branch lands: fp32 only."""

from __future__ import annotations

PRECISIONS = ("fp32", "bf16", "int8-dynamic", "int8-static")


def unsupported_reason(backend: str, precision: str) -> str | None:
    return None if precision == "fp32" else f"{precision}: not built yet"
