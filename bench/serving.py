"""Serving benchmark: torchship's handler in a real TorchServe vs the in-process floor vs a baseline.

Usage (after `make demo`, or it packages the demo model itself):

    .venv/bin/python bench/serving.py [--spec models/minilm-embeddings/model.yaml] [--quick]

Measures, side by side in one run and on the same machine:
  * served     torchship's .mar in TorchServe 0.12.0 (dynamic padding, server-side batching)
  * baseline   the same traced model behind a handler that behaves like TorchServe's stock Hugging Face
               example (pad to max_length, one request at a time): bench/baseline_handler.py
  * in-process the handler's own code calling the traced model directly, in batches of serve.batch_size:
               the floor no server can beat (no HTTP, no queueing)
  * fastapi    FastAPI + sentence-transformers in uvicorn, the server a team writes by hand
               (bench/fastapi_peer.py), on the same source model
  * tuned      the configuration `torchship tune` chose (outputs/<name>/<version>/tune/tune.json), as a
               .mar variant (of the backend it chose) in the same TorchServe, when a tune has run
  * served-<b> / in-process-<b>  the same model compiled with each other backend of --backends
               (default onnx), gated and packaged like `torchship tune` does it, served in the same
               TorchServe with the spec's configuration, and its own in-process floor
for short (~16 tokens) and long (~200 tokens) texts at concurrency 1, 16 and 32, and the cold start
(process start to the first 200) of TorchServe with the packaged .mar (stored uncompressed), with the
same archive deflated as torch-model-archiver writes it, and of the FastAPI peer. Writes
bench/results/serving-<timestamp>.json, bench/results/serving-latest.json and serving-latest.html
(a self-contained chart). The load generator runs on the same cores as TorchServe, as a client on the
same host would; compare ratios from one run, not absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
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
from torchship.handlers.loading import load_compiled  # noqa: E402
from torchship.handlers.requests import ParsedRequest  # noqa: E402
from torchship.handlers.service import build_task, predict  # noqa: E402
from torchship.loadgen import load_test, make_texts, percentiles  # noqa: E402
from torchship.pipeline import Runner, SilentReporter  # noqa: E402
from torchship.processes import stop_process  # noqa: E402
from torchship.serving.ports import free_port  # noqa: E402
from torchship.serving.torchserve import TorchServe  # noqa: E402
from torchship.settings import Settings  # noqa: E402
from torchship.sources import MODEL_DIRNAME  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roofline import gflop_per_text, measure_roofline  # noqa: E402

from torchship.spec import load_spec  # noqa: E402
from torchship.stages import STAGE_NAMES, STAGES  # noqa: E402
from torchship.tune.backends import package_backend  # noqa: E402
from torchship.tune.outputs import TUNE_DIRNAME  # noqa: E402
from torchship.tune.records import TuneResult  # noqa: E402
from torchship.tune.variant import write_variant  # noqa: E402

CONCURRENCY = (1, 16, 32)
SYSTEMS = ("in-process", "served", "tuned", "fastapi", "baseline")


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


def build_baseline_mar(spec, settings, workdir: Path, name: str = "baseline") -> Path:
    """The stock-style handler (bench/baseline_handler.py) on the spec's traced model, for its task."""
    root = settings.stage_root(spec.name, spec.version)
    model_dir = root / "fetch" / MODEL_DIRNAME
    workdir = workdir / name  # one archive's staging per name: several share a workdir
    workdir.mkdir(parents=True, exist_ok=True)
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
            "task": spec.task,
        },
    }
    config_file = workdir / MODEL_CONFIG_FILE
    config_file.write_text(yaml.safe_dump(config))
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


@contextlib.contextmanager
def fastapi_peer(model_dir: Path, threads: int, task: str = "embeddings", warm_body: dict | None = None):
    """The FastAPI peer for `task` in its own process on a free loopback port; yields (url, seconds to the
    first 200 for `warm_body`, default a one-word text)."""
    port = free_port()
    started = time.perf_counter()
    warm_body = warm_body or {"text": "warm"}
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "bench" / "fastapi_peer.py"),
            str(model_dir),
            str(port),
            str(threads),
            task,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/predictions"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the FastAPI peer exited: {process.communicate()[1].decode()[-2000:]}")
            try:
                if httpx.post(url, json=warm_body, timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the FastAPI peer did not answer within 180 s")
            time.sleep(0.2)
        yield url, time.perf_counter() - started
    finally:
        stop_process(process, grace_s=20)


def first_200_s(name: str, mar: Path, settings) -> float:
    """TorchServe process start to the first 200 for one request (what a restarted pod costs)."""
    started = time.perf_counter()
    server = TorchServe({name: mar}, settings)
    server.start()
    try:
        url = f"{server.inference_url}/predictions/{name}"
        headers = {"Authorization": f"Bearer {server.inference_token}"}
        while httpx.post(url, json={"text": "warm"}, headers=headers, timeout=60).status_code != 200:
            time.sleep(0.1)
        return time.perf_counter() - started
    finally:
        server.stop()


def deflated_copy(mar: Path, target: Path) -> Path:
    """`mar` with every entry deflated, as torch-model-archiver writes it (the packager stores them)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(mar) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            entry.external_attr, entry.compress_type = info.external_attr, zipfile.ZIP_DEFLATED
            copy.writestr(entry, source.read(info))
    return target


def tuned_choice(root: Path):
    """(configuration, backend) the last `torchship tune` chose for this model, or (None, None)."""
    path = root / TUNE_DIRNAME / "tune.json"
    if not path.is_file():
        return None, None
    result = TuneResult.model_validate_json(path.read_text())
    return result.chosen, result.chosen_backend


def chart_html(result: dict) -> str:
    """A self-contained HTML page: one bar chart of throughput per text kind (inline SVG, no assets)."""
    colors = {
        "in-process": "#6b7280",
        "served": "#2563eb",
        "tuned": "#16a34a",
        "fastapi": "#d97706",
        "baseline": "#dc2626",
    }
    sections = []
    for kind in ("short", "long"):
        rows = [r for r in result["runs"] if r["texts"] == kind]
        if not rows:
            continue
        top = max(r["throughput_rps"] for r in rows) or 1
        bars, y = [], 20
        # The fixed systems first, each other backend's served and in-process runs after its kin.
        present = list(dict.fromkeys(r["system"] for r in rows))
        order = [x for base in SYSTEMS for x in present if x == base or x.startswith(f"{base}-")]
        for c in CONCURRENCY:
            for system in order:
                match = [r for r in rows if r["system"] == system and r["concurrency"] in (c, "n/a")]
                if system.startswith("in-process") and c != CONCURRENCY[0]:
                    match = []
                if not match:
                    continue
                r = match[0]
                width = 520 * r["throughput_rps"] / top
                bars.append(
                    f'<text x="0" y="{y + 12}" font-size="12">{system} c={c}</text>'
                    f'<rect x="130" y="{y}" width="{width:.1f}" height="16" fill="{colors.get(system, "#7c3aed")}"/>'
                    f'<text x="{136 + width:.1f}" y="{y + 12}" font-size="12">{r["throughput_rps"]:.0f}/s '
                    f"(p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms)</text>"
                )
                y += 22
            y += 8
        sections.append(
            f"<h2>{kind} texts (~{result['token_targets'][kind]} tokens): throughput</h2>"
            f'<svg width="900" height="{y + 10}" xmlns="http://www.w3.org/2000/svg">{"".join(bars)}</svg>'
        )
    ratios = "".join(f"<li>{html.escape(k)}: {v:.2f}</li>" for k, v in result["ratios"].items())
    starts = "".join(
        f"<li>{html.escape(k)}: {v:.1f} s</li>" for k, v in result.get("cold_start_s", {}).items()
    )
    return (
        f"<!doctype html><meta charset='utf-8'><title>torchship serving benchmark</title>"
        f"<body style='font-family:sans-serif'><h1>torchship serving benchmark</h1>"
        f"<p>{result['model']} · {result['machine']} · load average {result['load_average']} · "
        f"{result['timestamp']}</p><ul>{ratios}</ul><h2>cold start: process start to first 200</h2><ul>{starts}</ul>"
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
    parser.add_argument(
        "--backends",
        default="onnx",
        help="other compiled backends to serve beside the spec's (comma list, or '')",
    )
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
        model=load_compiled(root / "compile"),
    )
    texts = {kind: make_texts(task.encoder.tokenizer, token_targets[kind], counts[kind]) for kind in counts}
    # The roofline of this run: fp32 matmul at every serving thread (workers x threads), and each kind's cost
    # per text from the config and the texts' real token counts (special tokens included).
    serving_threads = threads * spec.serve.workers
    print(f"measuring the fp32 matmul roofline on {serving_threads} thread(s) …", flush=True)
    roofline = measure_roofline(serving_threads)
    config = json.loads((model_dir / "config.json").read_text())
    tokens_per_text = {
        kind: sum(len(task.encoder.tokenizer(t)["input_ids"]) for t in texts[kind]) / len(texts[kind])
        for kind in texts
    }
    roofline_tps = {
        kind: roofline.texts_per_s(gflop_per_text(config, tokens_per_text[kind])) for kind in texts
    }
    print(
        f"  fp32 {roofline.fp32_gflops:.1f} GFLOP/s: roofline "
        + ", ".join(
            f"{kind} {roofline_tps[kind]:.0f} texts/s ({tokens_per_text[kind]:.1f} tokens)" for kind in texts
        ),
        flush=True,
    )

    runs: list[dict] = []
    cold_start: dict[str, float] = {}
    mar = mar_path(root / "package", spec)
    mars = {spec.compile.backend: mar}
    floors = {}  # backend -> the handler's task on that backend's compiled model, in this process
    for backend in [
        b.strip() for b in args.backends.split(",") if b.strip() and b.strip() != spec.compile.backend
    ]:
        print(f"packaging {spec.name} with compile.backend {backend} (cached when unchanged) …", flush=True)
        package = package_backend(
            spec, settings, root, backend, lambda message: print(f"  {message}", flush=True)
        )
        if package.mar is None:
            print(f"  {backend} not measured: {package.refused}", flush=True)
            continue
        mars[backend] = package.mar
        floors[backend] = build_task(
            model_dir,
            {**handler_config(spec, model_dir), "tokenizer_dir": "."},
            model=load_compiled(package.mar.parent.parent / "compile"),
        )
    tuned, tuned_backend = tuned_choice(root)

    def record(system: str, kind: str, concurrency: int, url: str, token: str) -> None:
        run = {
            "system": system,
            "texts": kind,
            "concurrency": concurrency,
            **load_test(url, token, [{"text": t} for t in texts[kind]], concurrency).as_dict(),
        }
        run["roofline_fraction"] = float(run["throughput_rps"]) / roofline_tps[kind]
        runs.append(run)
        print(
            f"  {system:10} {kind:5} c={concurrency:<3}: {run['throughput_rps']:7.1f} req/s  "
            f"p50 {run['p50']:6.1f} ms  p95 {run['p95']:6.1f} ms  p99 {run['p99']:6.1f} ms"
            f"  client CPU {run['client_cpu_cores']:.2f} cores  failures {run['failures']}"
            f"  {run['roofline_fraction']:.0%} of the roofline",
            flush=True,
        )

    workdir = Path(tempfile.mkdtemp(prefix="torchship-bench-"))
    try:
        # Cold start first, while nothing else of ours runs: process start to the first 200.
        deflated = deflated_copy(mar, workdir / "deflated" / mar.name)
        cold_start["torchserve, packaged .mar (stored)"] = first_200_s(spec.name, mar, settings)
        cold_start["torchserve, same .mar deflated (as torch-model-archiver writes it)"] = first_200_s(
            spec.name, deflated, settings
        )
        for key, value in cold_start.items():
            print(f"  cold start {key}: {value:.1f} s", flush=True)
        for kind in kinds:
            runs.append(
                {
                    "system": "in-process",
                    "texts": kind,
                    "concurrency": "n/a",
                    **in_process(task, texts[kind], spec.serve.batch_size),
                }
            )
            print(f"  in-process {kind:5}: {runs[-1]['throughput_rps']:7.1f} texts/s", flush=True)
            for backend, backend_task in floors.items():
                runs.append(
                    {
                        "system": f"in-process-{backend}",
                        "texts": kind,
                        "concurrency": "n/a",
                        **in_process(backend_task, texts[kind], spec.serve.batch_size),
                    }
                )
                print(
                    f"  in-process-{backend} {kind:5}: {runs[-1]['throughput_rps']:7.1f} texts/s", flush=True
                )
        # The peer alone on the machine, then TorchServe: never two servers competing for the cores.
        with fastapi_peer(model_dir, threads) as (url, peer_start_s):
            cold_start["fastapi + sentence-transformers"] = peer_start_s
            for kind in kinds:
                for concurrency in CONCURRENCY:
                    record("fastapi", kind, concurrency, url, "unused")
        models = {spec.name: mar, "baseline": build_baseline_mar(spec, settings, workdir)}
        for backend, backend_mar in mars.items():
            if backend != spec.compile.backend:
                models[f"served-{backend}"] = backend_mar
        if tuned is not None and tuned_backend in mars:
            models["tuned"] = write_variant(mars[tuned_backend], tuned, workdir / "tuned" / "tuned.mar")
            print(f"tuned configuration (from tune.json): {tuned_backend} · {tuned.label}", flush=True)
        print(f"starting TorchServe with {', '.join(models)} …", flush=True)
        with TorchServe(models, settings) as server:
            token = server.inference_token
            for kind in kinds:
                for concurrency in CONCURRENCY:
                    systems = [("served", spec.name), ("tuned", "tuned"), ("baseline", "baseline")]
                    systems += [(name, name) for name in models if name.startswith("served-")]
                    for system, name in systems:
                        if name in models:
                            record(
                                system, kind, concurrency, f"{server.inference_url}/predictions/{name}", token
                            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    for run in runs:  # the in-process floors too: every throughput as a fraction of this run's roofline
        run.setdefault("roofline_fraction", run["throughput_rps"] / roofline_tps[run["texts"]])

    def run_of(system, kind, concurrency=16):
        return next(
            (
                r
                for r in runs
                if r["system"] == system
                and r["texts"] == kind
                and (system.startswith("in-process") or r["concurrency"] == concurrency)
            ),
            None,
        )

    def rps(system, kind, concurrency=16):
        return run_of(system, kind, concurrency)["throughput_rps"]

    ratios = {}
    served_systems = sorted(
        {r["system"] for r in runs if r["system"] == "tuned" or r["system"].startswith("served")}
    )
    if "short" in kinds:
        # The best served system at 16 clients: the spec's, the tuned one or another backend's.
        best = max(served_systems, key=lambda system: rps(system, "short"))
        short = rps(best, "short")
        ratios[f"{best} (best served) / served (spec's configuration), short, c=16 (target >= 1.4)"] = (
            short / rps("served", "short")
        )
        # Served vs the floor of the same backend (a tuned variant's backend is the one tune chose).
        backend_of = {"served": spec.compile.backend, "tuned": tuned_backend or spec.compile.backend}
        backend_of |= {
            system: system.removeprefix("served-")
            for system in served_systems
            if system.startswith("served-")
        }
        floor = "in-process" if backend_of[best] == spec.compile.backend else f"in-process-{backend_of[best]}"
        ratios[f"{best} / {floor} (same backend's floor), short, c=16 (target >= 0.85)"] = short / rps(
            floor, "short"
        )
        for backend in floors:
            ratios[f"served-{backend} / served ({spec.compile.backend}), short, c=16"] = rps(
                f"served-{backend}", "short"
            ) / rps("served", "short")
            ratios[f"in-process-{backend} / in-process ({spec.compile.backend}), short"] = rps(
                f"in-process-{backend}", "short"
            ) / rps("in-process", "short")
        ratios[f"{best} / stock-style baseline, short, c=16 (target >= 5)"] = short / rps("baseline", "short")
        ratios[f"{best} / fastapi peer, short, c=16 (target >= 3)"] = short / rps("fastapi", "short")
        ratios[f"{best} / fp32 roofline, short, c=16"] = run_of(best, "short")["roofline_fraction"]
        ratios[f"{floor} / fp32 roofline, short (target >= 0.85)"] = run_of(floor, "short")[
            "roofline_fraction"
        ]
        chosen = run_of(best, "short")
        ratios[f"{best} p99 / p50, short, c=16 (target <= 2)"] = chosen["p99"] / chosen["p50"]
    if "long" in kinds:
        best_long = max(served_systems, key=lambda system: rps(system, "long"))
        ratios[f"{best_long} / stock-style baseline, long, c=16 (target >= 1.5)"] = rps(
            best_long, "long"
        ) / rps("baseline", "long")
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
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "tuned": tuned.model_dump() if tuned is not None else None,
        "tuned_backend": tuned_backend,
        "backends": list(mars),
        "cold_start_s": cold_start,
        "roofline": {
            **asdict(roofline),
            "tokens_per_text": tokens_per_text,
            "gflop_per_text": {kind: gflop_per_text(config, tokens_per_text[kind]) for kind in texts},
            "texts_per_s": roofline_tps,
        },
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
