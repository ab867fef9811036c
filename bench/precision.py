"""The demo model at each compile precision: the gate's verdict and measures, and in-process forward time.

Each variant (backend + compile.precision) goes through fetch, compile and validate for real (outputs under
a temp dir, or --outputs; the spec file is read, never written), so its row says whether the gate accepted
it and with which task measures. Then every accepted variant's loaded forward (the handler's own loader) is
timed on the same token batches, alternating variants round by round so the machine's load falls on all of
them alike, like bench/backends.py. Prints a table and writes precision-<timestamp>.json beside the outputs.

    .venv/bin/python bench/precision.py [--variants onnx:fp32,onnx:int8-dynamic,onnx:int8-dynamic:ffn-output,...]
        [--threads 2] [--rounds 20] [--spec models/minilm-embeddings/model.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from backends import median_forward_ms  # noqa: E402

from torchship.compile.precision import unsupported_reason  # noqa: E402
from torchship.handlers.loading import load_compiled  # noqa: E402
from torchship.modeling import load_tokenizer  # noqa: E402
from torchship.pipeline import Runner, SilentReporter  # noqa: E402
from torchship.settings import Settings  # noqa: E402
from torchship.spec import ModelSpec, load_spec  # noqa: E402
from torchship.stages import STAGES  # noqa: E402
from torchship.validate.precision import read_precision_check  # noqa: E402

DEMO_SPEC = REPO / "models" / "minilm-embeddings" / "model.yaml"
SHAPES = [(8, 16), (8, 200)]  # short texts batched, long texts batched
# backend:precision[:kept fp32 part] (compile.int8_keep_fp32)
DEFAULT_VARIANTS = (
    "torchscript:fp32,onnx:fp32,onnx:int8-dynamic,onnx:int8-dynamic:ffn-output,onnx:int8-static,"
    "onnx:int8-static:ffn-output,torchscript:bf16"
)


def variant(spec: ModelSpec, backend: str, precision: str, keep: list[str]) -> ModelSpec:
    update = {"backend": backend, "precision": precision, "int8_keep_fp32": keep}
    compile_ = spec.compile.model_copy(update=update)
    return spec.model_copy(update={"compile": compile_})


def gated(spec: ModelSpec, settings: Settings) -> tuple[Path, dict]:
    """The variant through fetch, compile and validate: its compiled dir and what the gate said."""
    runner = Runner(spec, settings, STAGES, SilentReporter())
    outcomes = runner.run(["fetch", "compile", "validate"])
    if outcomes[1].status == "failed":
        raise SystemExit(
            f"{spec.compile.backend} {spec.compile.precision}: compile failed: {outcomes[1].error}"
        )
    validate = runner.stage_dir("validate")
    report_dir = validate if outcomes[-1].status != "failed" else validate.parent / "validate-failed"
    check = read_precision_check(report_dir)
    verdict = {"passed": outcomes[-1].status != "failed", "error": str(outcomes[-1].error or "")}
    if check is not None:
        verdict["measures"] = {m.name: m.value for m in check.measures}
    size = sum(f.stat().st_size for f in runner.stage_dir("compile").iterdir() if f.is_file())
    return runner.stage_dir("compile"), verdict | {"size_mb": size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="backend:precision, comma-separated")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--spec", type=Path, default=DEMO_SPEC)
    parser.add_argument("--outputs", type=Path, default=None, help="outputs dir (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # the loaders size ONNX Runtime's pool from this, like the handler
    spec = load_spec(args.spec)
    outputs = args.outputs or Path(tempfile.mkdtemp(prefix="torchship-bench-precision-"))
    forwards, verdicts = {}, {}
    model_dir = outputs
    for item in args.variants.split(","):
        backend, precision, *keep = item.strip().split(":")
        why = unsupported_reason(backend, precision)
        if why is not None:
            print(f"skipping {item}: {why}", flush=True)
            continue
        print(f"compiling and gating {item} …", flush=True)
        settings = Settings(outputs_dir=outputs / item.replace(":", "-"))
        compiled, verdicts[item] = gated(variant(spec, backend, precision, keep), settings)
        forwards[item] = load_compiled(compiled)
        model_dir = settings.stage_root(spec.name, spec.version) / "fetch" / "model"
    names = list(forwards)
    tokenizer = load_tokenizer(model_dir)
    rows = []
    for batch, length in SHAPES:
        medians = median_forward_ms(forwards, tokenizer, batch, length, args.rounds)
        rows.append({"batch": batch, "tokens": length, "median_ms": medians})
        base = medians[names[0]]
        line = " · ".join(f"{name} {ms:.1f} ms ({base / ms:.2f}x)" for name, ms in medians.items())
        print(f"batch {batch} x {length} tokens: {line}", flush=True)
    for name, verdict in verdicts.items():
        measures = ", ".join(
            f"{k} {v:.5f}" for k, v in (verdict.get("measures") or {}).items() if v is not None
        )
        state = "accepted" if verdict["passed"] else f"REFUSED ({verdict['error'][:160]})"
        print(f"{name}: {state}; {verdict['size_mb']:.1f} MB; {measures}", flush=True)
    result = {
        "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()}",
        "threads": args.threads,
        "rounds": args.rounds,
        "model": spec.name,
        "gate": verdicts,
        "rows": rows,
    }
    path = outputs / f"precision-{result['timestamp']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
