"""In-process forward time of the demo model per compiled backend, side by side in one run.

Each backend's compile stage runs for real (outputs under a temp dir, or --outputs), then every loaded
forward (the handler's own loader) is timed on the same token batches, alternating backends round by
round so the machine's load falls on all of them alike. Prints a table and saves
bench/results/backends-<timestamp>.json (+ backends-latest.json).

    .venv/bin/python bench/backends.py [--backends torchscript,onnx,onnx-plain,eager] [--threads 2] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "src"))

from torchship.handlers.encoder import pad_id_of, pad_type_id_of  # noqa: E402
from torchship.handlers.loading import load_compiled  # noqa: E402
from torchship.handlers.model_io import pad_features  # noqa: E402
from torchship.modeling import load_tokenizer  # noqa: E402
from torchship.pipeline import Runner, SilentReporter  # noqa: E402
from torchship.settings import Settings  # noqa: E402
from torchship.spec import load_spec  # noqa: E402
from torchship.stages import STAGES  # noqa: E402
from torchship.synthetic import feature_rows  # noqa: E402
from torchship.tune.backends import with_backend  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from roofline import gflop_per_text, measure_roofline  # noqa: E402

DEMO_SPEC = REPO / "models" / "minilm-embeddings" / "model.yaml"
SHAPES = [(8, 14), (1, 16), (8, 200)]  # short texts batched, one short text, long texts batched


def compiled_dir(spec, settings: Settings) -> Path:
    runner = Runner(spec, settings, STAGES, SilentReporter())
    outcomes = runner.run(["fetch", "compile"])
    if outcomes[-1].status == "failed":
        raise SystemExit(f"{spec.compile.backend}: compile failed: {outcomes[-1].error}")
    return runner.stage_dir("compile")


def median_forward_ms(forwards: dict, tokenizer, batch: int, length: int, rounds: int) -> dict[str, float]:
    """Median milliseconds of one forward of `batch` rows of `length` tokens per engine, the engines
    alternating round by round (so a load swing hits them alike), after three warm-up runs each."""
    names = list(forwards)
    io = forwards[names[0]].io
    features = pad_features(
        feature_rows(tokenizer, [length] * batch, seed=1, token_types=io.token_types),
        io.inputs,
        pad_id_of(tokenizer),
        width=length,
        pad_type_id=pad_type_id_of(tokenizer),
    )
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.inference_mode():
        for name in names:  # warm-up: the JIT's profiling runs, ONNX Runtime's first allocation
            for _ in range(3):
                forwards[name].forward(features)
        for _ in range(rounds):
            for name in names:
                started = time.perf_counter()
                forwards[name].forward(features)
                times[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torchscript,onnx,onnx-plain")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--outputs", type=Path, default=None, help="outputs dir (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # the loaders size ONNX Runtime's pool from this, like the handler
    spec = load_spec(DEMO_SPEC)
    settings = Settings(outputs_dir=args.outputs or Path(tempfile.mkdtemp(prefix="torchship-bench-")))
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    forwards = {}
    fetched = settings.model_copy(update={"outputs_dir": settings.outputs_dir / names[0]})
    for name in names:
        print(f"compiling {name} …", flush=True)
        # "onnx-plain": the onnx backend without ONNX Runtime's fusions, to measure what they bring.
        variant = with_backend(spec, name.removesuffix("-plain"))
        if name.endswith("-plain"):
            variant = variant.model_copy(
                update={"compile": variant.compile.model_copy(update={"onnx_fusion": False})}
            )
        variant_settings = settings.model_copy(update={"outputs_dir": settings.outputs_dir / name})
        forwards[name] = load_compiled(compiled_dir(variant, variant_settings))
    model_dir = fetched.stage_root(spec.name, spec.version) / "fetch" / "model"
    tokenizer = load_tokenizer(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    print(f"measuring the fp32 matmul roofline on {args.threads} thread(s) …", flush=True)
    roofline = measure_roofline(args.threads)
    engines = ", ".join(f"{e} {g:.1f}" for e, g in roofline.fp32_by_engine.items())
    print(f"  {roofline.fp32_gflops:.1f} GFLOP/s fp32 (matmul {args.threads} threads: {engines})", flush=True)
    rows = []
    for batch, length in SHAPES:
        medians = median_forward_ms(forwards, tokenizer, batch, length, args.rounds)
        base = medians[names[0]]
        # GFLOP of the batch over its time, against the matmul roofline measured in this run.
        batch_gflop = batch * gflop_per_text(config, length)
        fractions = {name: batch_gflop / (ms / 1000) / roofline.fp32_gflops for name, ms in medians.items()}
        row = {
            "batch": batch,
            "tokens": length,
            "median_ms": medians,
            f"speedup_vs_{names[0]}": {name: base / ms for name, ms in medians.items()},
            "roofline_fraction": fractions,
        }
        rows.append(row)
        line = " · ".join(
            f"{name} {ms:.1f} ms ({base / ms:.2f}x, {fractions[name]:.0%} of roofline)"
            for name, ms in medians.items()
        )
        print(f"batch {batch} x {length} tokens: {line}", flush=True)
    result = {
        "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()}",
        "threads": args.threads,
        "rounds": args.rounds,
        "roofline": {
            "fp32_gflops": roofline.fp32_gflops,
            "bf16_gflops": roofline.bf16_gflops,
            "int8_native": roofline.int8_native,
            "flags": roofline.flags,
        },
        "model": spec.name,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"backends-{result['timestamp']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "backends-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
