"""Serving benchmark: torchship's handler in a real TorchServe vs the in-process floor vs a baseline.

Usage (after `make demo`, or it packages the demo model itself):

    .venv/bin/python bench/serving.py [--spec models/minilm-embeddings/model.yaml] [--quick]

Measures, side by side in one run and on the same machine:
  * served     torchship's .mar in TorchServe 0.12.0 (dynamic padding, server-side batching)
  * baseline   the same traced model behind a handler that behaves like TorchServe's stock Hugging Face
               example (pad to max_length, one request at a time): bench/baseline_handler.py
  * in-process the handler's own code calling the traced model directly, in batches of serve.batch_size:
               the floor no server can beat (no HTTP, no queueing)
for short (~16 tokens) and long (~200 tokens) texts at concurrency 1, 8 and 32. Writes
bench/results/serving-<timestamp>.json, bench/results/serving-latest.json and serving-latest.html
(a self-contained chart). The load generator runs on the same cores as TorchServe, as a client on the
same host would; compare ratios from one run, not absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from torchship.archiver.package import (  # noqa: E402
    MODEL_CONFIG_FILE,
    build_bundle,
    handler_config,
    mar_path,
    run_archiver,
)
from torchship.compile.torchscript import MODEL_FILE  # noqa: E402
from torchship.handlers.loading import load_forward  # noqa: E402
from torchship.handlers.requests import ParsedRequest  # noqa: E402
from torchship.handlers.service import build_task, predict  # noqa: E402
from torchship.loadgen import load_test, make_texts, percentiles  # noqa: E402
from torchship.pipeline import Runner, SilentReporter  # noqa: E402
from torchship.serving.torchserve import TorchServe  # noqa: E402
from torchship.settings import Settings  # noqa: E402
from torchship.sources import MODEL_DIRNAME  # noqa: E402
from torchship.spec import load_spec  # noqa: E402
from torchship.stages import STAGE_NAMES, STAGES  # noqa: E402

CONCURRENCY = (1, 8, 32)


def in_process(task, texts: list[str], batch_size: int) -> dict:
    """The handler's code on the traced model in this process, batch_size texts per call."""
    predict(task, [ParsedRequest(texts[:batch_size], single=False)])  # warm-up
    latencies = []
    started = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        t0 = time.perf_counter()
        predict(task, [ParsedRequest([t], single=True) for t in texts[i : i + batch_size]])
        latencies.append((time.perf_counter() - t0) * 1000)
    wall = time.perf_counter() - started
    return {
        "requests": len(texts),
        "failures": 0,
        "throughput_rps": len(texts) / wall,
        **percentiles(latencies),
    }


def ensure_packaged(spec, settings) -> None:
    outcomes = Runner(spec, settings, STAGES, SilentReporter()).run(
        STAGE_NAMES[: STAGE_NAMES.index("package") + 1]
    )
    if outcomes[-1].status == "failed":
        raise SystemExit(f"packaging {spec.name} failed: {outcomes[-1].error}")


def build_baseline_mar(spec, settings, workdir: Path) -> Path:
    root = settings.stage_root(spec.name, spec.version)
    model_dir = root / "fetch" / MODEL_DIRNAME
    bundle = workdir / "bundle"
    build_bundle(spec, model_dir, bundle)
    config = {
        "minWorkers": 1,
        "maxWorkers": 1,
        "batchSize": 1,
        "maxBatchDelay": 0,
        "responseTimeout": 120,
        "handler": {
            "max_length": spec.compile.max_length,
            "threads": handler_config(spec, model_dir)["threads"],
        },
    }
    config_file = workdir / MODEL_CONFIG_FILE
    config_file.write_text(yaml.safe_dump(config))
    name = "baseline"
    return run_archiver(
        name,
        "1.0",
        REPO / "bench" / "baseline_handler.py",
        bundle,
        config_file,
        workdir,
        workdir,
        model_file=root / "compile" / MODEL_FILE,
    )


def chart_html(result: dict) -> str:
    """A self-contained HTML page: one bar chart of throughput per text kind (inline SVG, no assets)."""
    colors = {"in-process": "#6b7280", "served": "#2563eb", "baseline": "#dc2626"}
    sections = []
    for kind in ("short", "long"):
        rows = [r for r in result["runs"] if r["texts"] == kind]
        if not rows:
            continue
        top = max(r["throughput_rps"] for r in rows) or 1
        bars, y = [], 20
        for c in CONCURRENCY:
            for system in ("in-process", "served", "baseline"):
                match = [r for r in rows if r["system"] == system and r["concurrency"] == c]
                if not match:
                    continue
                r = match[0]
                width = 520 * r["throughput_rps"] / top
                bars.append(
                    f'<text x="0" y="{y + 12}" font-size="12">{system} c={c}</text>'
                    f'<rect x="130" y="{y}" width="{width:.1f}" height="16" fill="{colors[system]}"/>'
                    f'<text x="{136 + width:.1f}" y="{y + 12}" font-size="12">{r["throughput_rps"]:.0f}/s '
                    f"(p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms)</text>"
                )
                y += 22
            y += 8
        sections.append(
            f"<h2>{kind} texts (~{result['token_targets'][kind]} tokens): throughput</h2>"
            f'<svg width="900" height="{y + 10}" xmlns="http://www.w3.org/2000/svg">{"".join(bars)}</svg>'
        )
    ratios = "".join(f"<li>{k}: {v:.2f}</li>" for k, v in result["ratios"].items())
    return (
        f"<!doctype html><meta charset='utf-8'><title>torchship serving benchmark</title>"
        f"<body style='font-family:sans-serif'><h1>torchship serving benchmark</h1>"
        f"<p>{result['model']} · {result['machine']} · {result['timestamp']}</p><ul>{ratios}</ul>"
        f"{''.join(sections)}</body>"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(REPO / "models" / "minilm-embeddings" / "model.yaml"))
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run, noisy numbers)")
    parser.add_argument("--threads", type=int, help="override serve.threads (torch threads per worker)")
    parser.add_argument("--workers", type=int, help="override serve.workers")
    parser.add_argument("--batch-size", type=int, help="override serve.batch_size and compile.batch_size")
    parser.add_argument("--kinds", default="short,long", help="text kinds to run: short,long")
    args = parser.parse_args()
    spec, settings = load_spec(args.spec), Settings()
    if args.threads or args.batch_size or args.workers:
        # An experiment: its own outputs, so the demo's cached stages stay as they are.
        serve = spec.serve.model_copy(
            update={
                k: v
                for k, v in {
                    "threads": args.threads,
                    "batch_size": args.batch_size,
                    "workers": args.workers,
                }.items()
                if v
            }
        )
        compile_ = spec.compile.model_copy(update={"batch_size": args.batch_size} if args.batch_size else {})
        spec = spec.model_copy(update={"serve": serve, "compile": compile_})
        settings = Settings(outputs_dir=settings.outputs_dir / "bench-experiments")
    kinds = [k for k in ("short", "long") if k in args.kinds.split(",")]
    counts = {"short": 64, "long": 24} if args.quick else {"short": 384, "long": 96}
    counts = {kind: counts[kind] for kind in kinds}
    token_targets = {"short": 16, "long": 200}

    print(f"packaging {spec.name} (cached when unchanged) …", flush=True)
    ensure_packaged(spec, settings)
    root = settings.stage_root(spec.name, spec.version)
    model_dir = root / "fetch" / MODEL_DIRNAME
    threads = handler_config(spec, model_dir)["threads"] or max(
        1, (os.cpu_count() or 1) // spec.serve.workers
    )
    torch.set_num_threads(threads)
    task = build_task(
        root / "fetch" / MODEL_DIRNAME,
        {**handler_config(spec, model_dir), "tokenizer_dir": "."},
        forward=load_forward(root / "compile", spec.task),
    )
    texts = {kind: make_texts(task.encoder.tokenizer, token_targets[kind], counts[kind]) for kind in counts}

    runs = []
    workdir = Path(tempfile.mkdtemp(prefix="torchship-bench-"))
    try:
        baseline = build_baseline_mar(spec, settings, workdir)
        print("starting TorchServe with the torchship .mar and the baseline .mar …", flush=True)
        with TorchServe(
            {spec.name: mar_path(root / "package", spec), "baseline": baseline}, settings
        ) as server:
            token = server.inference_token
            for kind in kinds:
                runs.append(
                    {
                        "system": "in-process",
                        "texts": kind,
                        "concurrency": None,
                        **in_process(task, texts[kind], spec.serve.batch_size),
                    }
                )
                print(f"  in-process {kind:5}: {runs[-1]['throughput_rps']:7.1f} texts/s", flush=True)
                for concurrency in CONCURRENCY:
                    for system, name in (("served", spec.name), ("baseline", "baseline")):
                        url = f"{server.inference_url}/predictions/{name}"
                        run = {
                            "system": system,
                            "texts": kind,
                            "concurrency": concurrency,
                            **load_test(url, token, texts[kind], concurrency).as_dict(),
                        }
                        runs.append(run)
                        print(
                            f"  {system:10} {kind:5} c={concurrency:<3}: {run['throughput_rps']:7.1f} req/s  "
                            f"p50 {run['p50']:6.1f} ms  p95 {run['p95']:6.1f} ms  p99 {run['p99']:6.1f} ms"
                            f"  client CPU {run['client_cpu_cores']:.2f} cores  failures {run['failures']}",
                            flush=True,
                        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    for run in runs:  # the in-process floor applies to every concurrency level
        if run["system"] == "in-process":
            run["concurrency"] = "n/a"

    def rps(system, kind, concurrency=32):
        return next(
            r["throughput_rps"]
            for r in runs
            if r["system"] == system
            and r["texts"] == kind
            and (system == "in-process" or r["concurrency"] == concurrency)
        )

    ratios = {}
    if "short" in kinds:
        short = rps("served", "short")
        ratios["served / in-process, short, c=32 (target >= 0.80)"] = short / rps("in-process", "short")
        ratios["served / baseline, short, c=32 (target >= 4)"] = short / rps("baseline", "short")
    if "long" in kinds:
        ratios["served / baseline, long, c=32 (target >= 1)"] = rps("served", "long") / rps(
            "baseline", "long"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "timestamp": stamp,
        "model": f"{spec.name} {spec.version}",
        "quick": args.quick,
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, torch {torch.__version__}",
        "settings": {
            "serve_batch_size": spec.serve.batch_size,
            "max_batch_delay_ms": spec.serve.max_batch_delay_ms,
            "workers": spec.serve.workers,
            "threads": threads,
            "max_length": spec.compile.max_length,
        },
        "token_targets": token_targets,
        "runs": runs,
        "ratios": ratios,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    experiment = bool(args.threads or args.batch_size or args.workers or args.quick or len(kinds) < 2)
    prefix = "serving-experiment" if experiment else "serving"
    names = [f"{prefix}-{stamp}.json"] + ([] if experiment else ["serving-latest.json"])
    for name in names:
        (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{prefix}-latest.html").write_text(chart_html(result))
    print("\nratios:")
    for key, value in ratios.items():
        print(f"  {key}: {value:.2f}")
    print(f"\nwrote {RESULTS / names[0]} and {RESULTS / f'{prefix}-latest.html'}")


if __name__ == "__main__":
    main()
