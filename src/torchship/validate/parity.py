"""Parity: the compiled model vs the source model on the same inputs.

Like optimum's `validate_model_outputs`: each named model output's max absolute and relative difference
is reported (`logits`; `start_logits` and `end_logits`; ...; per-token outputs at real positions only),
plus the task's output computed from them ("task_output"), per input batch. Inputs: the rows the task
tokenized from the spec's examples (token types included), and generated rows at 1 token, a short
length and max_length — plus, with buckets, at every bucket edge (length = bucket and bucket + 1) — each
at batch size 1, an odd size and the maximum; where the model takes token types, the generated rows are
pairs (second half type 1), so a compiled model that drops them fails. One element beyond
`atol + rtol * |source|` fails the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from torchship.handlers.encoder import Encoder
from torchship.handlers.model_io import (
    ATTENTION_MASK,
    INPUT_IDS,
    TOKEN_TYPE_IDS,
    NamedIO,
    Reduce,
    Row,
    real_positions,
)
from torchship.spec import ModelSpec
from torchship.synthetic import feature_rows

TASK_OUTPUT = "task_output"  # the report's key for what the task computes from the model's outputs


@dataclass
class Case:
    name: str
    rows: list[Row]


@dataclass
class Diff:
    max_abs: float
    max_rel: float
    excess: float  # max of |c - s| - (atol + rtol * |s|); > 0 means out of tolerance

    @staticmethod
    def of(compiled: torch.Tensor, source: torch.Tensor, atol: float, rtol: float) -> Diff:
        delta = (compiled.float() - source.float()).abs()
        ref = source.float().abs()
        # Relative difference only where the reference is not ~0: near zero it is noise, atol covers it.
        significant = ref > atol
        rel = (delta[significant] / ref[significant]).max().item() if significant.any() else 0.0
        return Diff(delta.max().item(), rel, (delta - (atol + rtol * ref)).max().item())


def _diff(
    compiled: torch.Tensor | None, source: torch.Tensor, mask: torch.Tensor, atol: float, rtol: float
) -> Diff:
    """One named output compared where callers read it; a missing or misshapen output is a failure
    (infinite difference), reported under the output's name."""
    if compiled is None or compiled.shape != source.shape:
        return Diff(float("inf"), float("inf"), float("inf"))
    real = real_positions(source, mask)
    return Diff.of(compiled[real], source[real], atol, rtol)


def probe_lengths(spec: ModelSpec, one_token: int) -> dict[str, int]:
    max_length = spec.compile.known_max_length()
    lengths = {"1 token": one_token, "short": min(16, max_length), "max_length": max_length}
    for bucket in spec.compile.buckets or []:
        lengths[f"bucket {bucket}"] = bucket
        if bucket + 1 <= max_length:
            lengths[f"bucket {bucket} + 1"] = bucket + 1
    return lengths


def build_cases(spec: ModelSpec, tokenizer, rows: Sequence[Row], inputs: Sequence[str]) -> list[Case]:
    """`rows`: the examples as the task tokenized them (input_ids, token_type_ids for pairs); `inputs`:
    the compiled model's inputs (token types in them make the generated rows pairs)."""
    batch = spec.compile.batch_size
    cases = []
    for start in range(0, len(rows), batch):
        chunk = list(rows[start : start + batch])
        cases.append(Case(f"examples[{start}:{start + len(chunk)}]", chunk))
    one_token = len(tokenizer("a", add_special_tokens=True)["input_ids"])
    seed = 100
    for label, length in probe_lengths(spec, one_token).items():
        for size in sorted({1, 3, batch}):
            # The first row has the target length; the others are shorter, so padding is exercised too.
            row_lengths = [length] + [max(one_token, length // (k + 2)) for k in range(size - 1)]
            seed += 1
            rows = feature_rows(tokenizer, row_lengths, seed, token_types=TOKEN_TYPE_IDS in inputs)
            cases.append(Case(f"{label} (length {length}), batch {size}", list(rows)))
    return cases


def compare(
    compiled: Encoder, source: NamedIO, reduce: Reduce, cases: list[Case], atol: float, rtol: float
) -> dict[str, Any]:
    """Both models on each case, padded as the handler pads (to the bucket when there are buckets):
    every named output of the source model at real positions, and the task's output."""
    per_case: list[dict[str, Any]] = []
    with torch.inference_mode():
        for case in cases:
            features = compiled.pad(case.rows)
            mask = features[ATTENTION_MASK]
            out_c, out_s = compiled.forward(features), source.named(features)
            diffs = {name: _diff(out_c.get(name), want, mask, atol, rtol) for name, want in out_s.items()}
            diffs[TASK_OUTPUT] = Diff.of(reduce(out_c, mask), reduce(out_s, mask), atol, rtol)
            per_case.append(
                {
                    "case": case.name,
                    "batch": len(case.rows),
                    "length": max(len(r[INPUT_IDS]) for r in case.rows),
                    "bucket": int(mask.shape[1]) if compiled.buckets else None,
                    "outputs": {k: vars(v) for k, v in diffs.items()},
                    "ok": all(d.excess <= 0 for d in diffs.values()),
                }
            )
    outputs = {}
    for name in per_case[0]["outputs"] if per_case else ():
        worst = max(per_case, key=lambda c: c["outputs"][name]["excess"])
        outputs[name] = {
            "max_abs": max(c["outputs"][name]["max_abs"] for c in per_case),
            "max_rel": max(c["outputs"][name]["max_rel"] for c in per_case),
            "worst_case": worst["case"],
            "worst_excess": worst["outputs"][name]["excess"],
            "ok": all(c["outputs"][name]["excess"] <= 0 for c in per_case),
        }
    return {"atol": atol, "rtol": rtol, "outputs": outputs, "cases": per_case}


def parity_failure(parity: dict[str, Any]) -> str | None:
    """The message for the first output beyond tolerance (by name), or None."""
    for name, output in parity["outputs"].items():
        if not output["ok"]:
            return (
                f"output {name!r} of the compiled model differs from the source on '{output['worst_case']}' by up to "
                f"{output['max_abs']:.3g} (allowed: atol {parity['atol']} + rtol {parity['rtol']} x |source|; "
                f"exceeded by {output['worst_excess']:.3g})"
            )
    return None
