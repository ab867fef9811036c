"""Parity: the compiled model vs the source model on the same inputs.

Like optimum's `validate_model_outputs`: each output's max absolute and relative difference is reported,
per input batch. Inputs: the spec's examples, and generated inputs at 1 token, a short length and
max_length — plus, with buckets, at every bucket edge (length = bucket and bucket + 1) — each at batch
size 1, an odd size and the maximum. One element beyond `atol + rtol * |source|` fails the check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from torchship.handlers.encoder import Encoder
from torchship.spec import ModelSpec
from torchship.synthetic import token_rows
from torchship.tasks import Reduce

OUTPUTS = ("model_output", "task_output")


@dataclass
class Case:
    name: str
    rows: list[list[int]]


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


def probe_lengths(spec: ModelSpec, one_token: int) -> dict[str, int]:
    max_length = spec.compile.known_max_length()
    lengths = {"1 token": one_token, "short": min(16, max_length), "max_length": max_length}
    for bucket in spec.compile.buckets or []:
        lengths[f"bucket {bucket}"] = bucket
        if bucket + 1 <= max_length:
            lengths[f"bucket {bucket} + 1"] = bucket + 1
    return lengths


def build_cases(spec: ModelSpec, tokenizer, texts: list[str]) -> list[Case]:
    max_length, batch = spec.compile.max_length, spec.compile.batch_size
    cases = []
    if texts:
        ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            cases.append(Case(f"examples[{start}:{start + len(chunk)}]", chunk))
    one_token = len(tokenizer("a", add_special_tokens=True)["input_ids"])
    seed = 100
    for label, length in probe_lengths(spec, one_token).items():
        for size in sorted({1, 3, batch}):
            # The first row has the target length; the others are shorter, so padding is exercised too.
            row_lengths = [length] + [max(one_token, length // (k + 2)) for k in range(size - 1)]
            seed += 1
            cases.append(
                Case(f"{label} (length {length}), batch {size}", token_rows(tokenizer, row_lengths, seed))
            )
    return cases


def _real_positions(output: torch.Tensor, mask: torch.Tensor):
    """Per-token outputs: only the unpadded positions (padding is an output nobody reads). Per-text
    outputs (classification logits): everything."""
    return mask.bool() if output.shape[:2] == mask.shape else slice(None)


def compare(
    compiled: Encoder, source: torch.nn.Module, reduce: Reduce, cases: list[Case], atol: float, rtol: float
) -> dict[str, Any]:
    """Both models on each case, padded as the handler pads (to the bucket when there are buckets)."""
    per_case: list[dict[str, Any]] = []
    with torch.inference_mode():
        for case in cases:
            ids, mask = compiled.pad(case.rows)
            out_c, out_s = compiled.forward(ids, mask), source(ids, mask)
            real = _real_positions(out_s, mask)
            diffs = {
                "model_output": Diff.of(out_c[real], out_s[real], atol, rtol),
                "task_output": Diff.of(reduce(out_c, mask), reduce(out_s, mask), atol, rtol),
            }
            per_case.append(
                {
                    "case": case.name,
                    "batch": len(case.rows),
                    "length": max(len(r) for r in case.rows),
                    "bucket": int(ids.shape[1]) if compiled.buckets else None,
                    "outputs": {k: vars(v) for k, v in diffs.items()},
                    "ok": all(d.excess <= 0 for d in diffs.values()),
                }
            )
    outputs = {}
    for name in OUTPUTS:
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
    """The message for the worst output beyond tolerance, or None."""
    for name, output in parity["outputs"].items():
        if not output["ok"]:
            return (
                f"{name} of the compiled model differs from the source on '{output['worst_case']}' by up to "
                f"{output['max_abs']:.3g} (allowed: atol {parity['atol']} + rtol {parity['rtol']} x |source|; "
                f"exceeded by {output['worst_excess']:.3g})"
            )
    return None
