"""The validate stage: compiled model vs source model on the examples and on generated inputs.

Like optimum's `validate_model_outputs`: the same inputs go through both, and each output's max absolute
and relative difference is reported. The gate fails closed: one element beyond `atol + rtol * |source|`
fails the stage, names the input and by how much, and nothing downstream runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from torchship.compile.torchscript import MODEL_FILE
from torchship.errors import ValidationFailed
from torchship.examples import load_examples
from torchship.handlers.encoder import pad_rows
from torchship.modeling import load_source_model, load_tokenizer
from torchship.pipeline import StageContext
from torchship.sources import MODEL_DIRNAME
from torchship.spec import ModelSpec
from torchship.synthetic import token_rows
from torchship.tasks import task_output

REPORT_FILE = "report.json"


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


def build_cases(spec: ModelSpec, tokenizer, texts: list[str]) -> list[Case]:
    max_length, batch = spec.compile.max_length, spec.compile.batch_size
    cases = []
    if texts:
        ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            cases.append(Case(f"examples[{start}:{start + len(chunk)}]", chunk))
    one_token = len(tokenizer("a", add_special_tokens=True)["input_ids"])
    lengths = {"1 token": one_token, "short": min(16, max_length), "max_length": max_length}
    seed = 100
    for label, length in lengths.items():
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


def compare(spec: ModelSpec, model_dir: Path, compiled, cases: list[Case], tokenizer) -> dict[str, Any]:
    source = load_source_model(model_dir, spec.task)
    reduce = task_output(spec, model_dir)
    atol, rtol = spec.validate.atol, spec.validate.rtol
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    per_case = []
    with torch.inference_mode():
        for case in cases:
            ids, mask = pad_rows(case.rows, pad_id)
            out_c, out_s = compiled(ids, mask), source(ids, mask)
            real = _real_positions(out_s, mask)
            diffs = {
                "model_output": Diff.of(out_c[real], out_s[real], atol, rtol),
                "task_output": Diff.of(reduce(out_c, mask), reduce(out_s, mask), atol, rtol),
            }
            per_case.append(
                {
                    "case": case.name,
                    "batch": len(case.rows),
                    "length": int(ids.shape[1]),
                    "outputs": {k: vars(v) for k, v in diffs.items()},
                    "ok": all(d.excess <= 0 for d in diffs.values()),
                }
            )
    outputs = {}
    for name in ("model_output", "task_output"):
        worst = max(per_case, key=lambda c: c["outputs"][name]["excess"])
        outputs[name] = {
            "max_abs": max(c["outputs"][name]["max_abs"] for c in per_case),
            "max_rel": max(c["outputs"][name]["max_rel"] for c in per_case),
            "worst_case": worst["case"],
            "worst_excess": worst["outputs"][name]["excess"],
            "ok": all(c["outputs"][name]["excess"] <= 0 for c in per_case),
        }
    return {
        "verdict": "pass" if all(o["ok"] for o in outputs.values()) else "fail",
        "atol": atol,
        "rtol": rtol,
        "outputs": outputs,
        "cases": per_case,
    }


def run_validate(ctx: StageContext) -> dict[str, Any]:
    spec = ctx.spec
    model_dir = ctx.input_dir("fetch") / MODEL_DIRNAME
    compiled = torch.jit.load(str(ctx.input_dir("compile") / MODEL_FILE), map_location="cpu").eval()
    tokenizer = load_tokenizer(model_dir)
    cases = build_cases(spec, tokenizer, load_examples(spec))
    ctx.progress(f"comparing compiled vs source on {len(cases)} input batches")
    report = compare(spec, model_dir, compiled, cases, tokenizer)
    (ctx.out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    if report["verdict"] != "pass":
        name, worst = next((n, o) for n, o in report["outputs"].items() if not o["ok"])
        raise ValidationFailed(
            f"parity check failed: {name} of the compiled model differs from the source on "
            f"'{worst['worst_case']}' by up to {worst['max_abs']:.3g} (allowed: atol {spec.validate.atol} "
            f"+ rtol {spec.validate.rtol} x |source|; exceeded by {worst['worst_excess']:.3g})",
            hint="Nothing was packaged. Fix the compile settings, or loosen validate.atol/rtol only if the "
            "difference is acceptable.",
        )
    return {key: report[key] for key in ("verdict", "atol", "rtol", "outputs")} | {"cases": len(cases)}


def summarize_validate(details: dict[str, Any]) -> str:
    out = details.get("outputs", {})
    parts = [f"{name} max|Δ| {o['max_abs']:.2e}" for name, o in out.items()]
    return f"{details.get('verdict')} · {details.get('cases')} batches · " + " · ".join(parts)
