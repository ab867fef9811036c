"""Compare two JSON results: the same structure and strings, numbers within atol + rtol * |expected|."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class JsonDiff:
    ok: bool = True
    max_abs: float = 0.0
    mismatch: str | None = None  # the first structural or out-of-tolerance difference, with its path

    def fail(self, path: str, reason: str) -> None:
        if self.ok:
            self.mismatch = f"{path or '$'}: {reason}"
        self.ok = False


def compare_json(
    got: Any, want: Any, atol: float, rtol: float, path: str = "", diff: JsonDiff | None = None
) -> JsonDiff:
    diff = diff or JsonDiff()
    if isinstance(want, bool) or isinstance(got, bool):
        if got != want:
            diff.fail(path, f"{got!r} != {want!r}")
    elif isinstance(want, (int, float)) and isinstance(got, (int, float)):
        delta = abs(float(got) - float(want))
        diff.max_abs = max(diff.max_abs, delta)
        if delta > atol + rtol * abs(float(want)):
            diff.fail(path, f"{got!r} differs from {want!r} by {delta:.3g}")
    elif isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            diff.fail(path, f"{len(got)} items, expected {len(want)}")
        for i, (g, w) in enumerate(zip(got, want, strict=False)):
            compare_json(g, w, atol, rtol, f"{path}[{i}]", diff)
    elif isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            diff.fail(path, f"keys {sorted(got)} != {sorted(want)}")
        for key in want.keys() & got.keys():
            compare_json(got[key], want[key], atol, rtol, f"{path}.{key}", diff)
    elif got != want:
        diff.fail(path, f"{got!r} != {want!r}")
    return diff
