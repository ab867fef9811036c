"""Every task, two lengths, two sizes: torchship served vs the stock-style handler vs the FastAPI peer.

Usage:

    .venv/bin/python bench/tasks.py                 # the full run (44 min on 2 cores shared with other work)
    .venv/bin/python bench/tasks.py --quick         # a smoke run: embeddings, short, MiniLM (~2-3 min)
    .venv/bin/python bench/tasks.py --tasks reranking,keywords --sizes bert-base --lengths long
    .venv/bin/python bench/tasks.py --readme [README.md]   # only regenerate the README table

For each task (embeddings, text-classification, token-classification, keywords, reranking,
question-answering) × length (short ~16 tokens, long ~200 tokens: bench/task_inputs.py) × size (MiniLM,
bert-base: bench/task_models.py), in one run on the same machine, with the same request bodies and the
same client (bench/timed_load.py: up to 16 concurrent clients, a time-bounded window after a warm-up):

  * torchship  the task's .mar, built by torchship's own stages (fetch, compile, the gate, package) from a
               spec with the demo's serve settings (torchscript, max_length 256, batch 8, 5 ms, 1 worker),
               in a real TorchServe 0.12.0
  * stock      bench/baseline_handler.py on the same traced model in the same TorchServe: every row padded
               to max_length, one request at a time, as TorchServe's stock Hugging Face example does
  * fastapi    bench/fastapi_peer.py in uvicorn, alone on the machine: sentence-transformers for
               embeddings, keywords (KeyBERT's recipe) and reranking (CrossEncoder), plain transformers
               AutoModelFor… in eager mode for the other tasks

Each figure is also a fraction of the roofline measured at the start of the run (bench/roofline.py: fp32
matmul GFLOP/s at the serving thread count; GFLOP per request from the config and the rows' measured
tokens). A full run writes bench/results/tasks-<UTC time>.json, tasks-latest.json and tasks-latest.html;
a --quick or filtered run writes tasks-experiment-<time>.json and tasks-experiment-latest.html (not
committed). The README table between `<!-- tasks-table:start -->` and `<!-- tasks-table:end -->` is
generated from tasks-latest.json (--readme, or bench/tasks_report.py). The load runs on the same cores
as the servers; compare ratios within a run, not absolute figures across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roofline import gflop_per_text, measure_roofline
from serving import build_baseline_mar, fastapi_peer
from task_inputs import TASKS, TOKEN_TARGETS, Inputs, build_inputs
from task_models import SIZES, packaged_model
from tasks_report import (
    RESULTS,
    Cell,
    SystemFigure,
    TasksResult,
    chart_html,
    verdicts,
    write_readme,
)
from timed_load import TimedLoad, timed_load

from torchship.archiver.package import handler_config
from torchship.serving.torchserve import TorchServe
from torchship.settings import Settings
from torchship.sources import MODEL_DIRNAME
from torchship.spec import ModelSpec

REPO = Path(__file__).resolve().parent.parent
CLIENTS = 16
WINDOW_S = 8.0  # seconds of load per figure, after the warm-up
QUICK_WINDOW_S = 3.0
# The longest the requests in flight at the window's end may take, one after another (timed_load.py).
MAX_TAIL_S = 20.0
LENGTHS = tuple(TOKEN_TARGETS)
WEIGHTS = (
    "MiniLM: all-MiniLM-L6-v2's real encoder (the demo model's weights), seeded random heads for the "
    "head tasks; bert-base: transformers' BertConfig() defaults (768 hidden, 12 layers, 12 heads), seeded "
    "random weights, MiniLM's tokenizer. Speed does not depend on the weights (the same shapes run the same "
    "kernels); only the answers are meaningless."
)


def chosen(value: str | None, allowed: tuple[str, ...], default: tuple[str, ...], what: str) -> list[str]:
    if value is None:
        return list(default)
    picked = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in picked if v not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return [v for v in allowed if v in picked]


def model_dir(spec: ModelSpec, settings: Settings) -> Path:
    return settings.stage_root(spec.name, spec.version) / "fetch" / MODEL_DIRNAME


def gflop_per_request(config: dict, inputs: Inputs) -> float:
    """The mean model work of a request: every row it costs at its own token count."""
    per_body = [sum(gflop_per_text(config, tokens) for tokens in rows) for rows in inputs.row_tokens]
    return sum(per_body) / len(per_body)


def figure_of(system: str, load: TimedLoad, inputs: Inputs, roofline_rps: float) -> SystemFigure:
    return SystemFigure(
        system=system,
        texts_per_s=load.requests_per_s * inputs.texts_per_request,
        roofline_fraction=load.requests_per_s / roofline_rps,
        **asdict(load),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: embeddings, short, MiniLM, 3 s windows"
    )
    parser.add_argument("--tasks", help=f"comma list of {', '.join(TASKS)}")
    parser.add_argument("--sizes", help=f"comma list of {', '.join(SIZES)}")
    parser.add_argument("--lengths", help=f"comma list of {', '.join(LENGTHS)}")
    parser.add_argument("--window", type=float, help=f"seconds of load per figure (default {WINDOW_S:g})")
    parser.add_argument(
        "--readme",
        nargs="?",
        const=str(REPO / "README.md"),
        help="only regenerate the table in this README (default README.md) from tasks-latest.json",
    )
    args = parser.parse_args()
    if args.readme:
        write_readme(RESULTS / "tasks-latest.json", Path(args.readme))
        return
    tasks = chosen(args.tasks, TASKS, ("embeddings",) if args.quick else TASKS, "tasks")
    sizes = chosen(args.sizes, SIZES, ("minilm",) if args.quick else SIZES, "sizes")
    lengths = chosen(args.lengths, LENGTHS, ("short",) if args.quick else LENGTHS, "lengths")
    window_s = args.window or (QUICK_WINDOW_S if args.quick else WINDOW_S)
    full_run = not args.quick and (tasks, sizes, lengths) == (list(TASKS), list(SIZES), list(LENGTHS))

    from minilm_heads import minilm_dir
    from transformers import AutoTokenizer

    settings = Settings(outputs_dir=REPO / "outputs" / "bench-tasks")
    root = REPO / "outputs" / "bench-tasks-models"  # fixed: a rerun reuses the models and their packages
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))  # both sizes' tokenizer
    inputs = {(task, length): build_inputs(task, length, tokenizer) for task in tasks for length in lengths}
    started_load = [round(x, 2) for x in os.getloadavg()]
    packaged = {}
    for size in sizes:
        for task in tasks:
            print(f"packaging {size} {task} (cached when unchanged) …", flush=True)
            packaged[size, task] = packaged_model(size, task, root, settings)
    first_spec = next(iter(packaged.values()))[0]
    threads = handler_config(first_spec, model_dir(first_spec, settings))["threads"] or max(
        1, (os.cpu_count() or 1) // first_spec.serve.workers
    )
    torch.set_num_threads(threads)
    print(f"measuring the fp32 matmul roofline on {threads} thread(s) …", flush=True)
    roofline = measure_roofline(threads)
    print(f"  {roofline.fp32_gflops:.1f} GFLOP/s", flush=True)

    figures: dict[tuple[str, str, str], list[SystemFigure]] = {}
    costs: dict[tuple[str, str, str], float] = {}

    def record(system: str, size: str, task: str, length: str, url: str, token: str) -> None:
        key = (size, task, length)
        bodies = inputs[task, length].bodies
        load = timed_load(url, token, bodies, CLIENTS, window_s, MAX_TAIL_S, warmup_s=window_s / 2)
        roofline_rps = roofline.fp32_gflops / costs[key]
        figure = figure_of(system, load, inputs[task, length], roofline_rps)
        figures.setdefault(key, []).append(figure)
        print(
            f"  {size:9} {task:20} {length:5} {system:9}: {figure.requests_per_s:8.2f} req/s "
            f"({figure.requests} requests, {figure.clients} clients, {figure.seconds:.1f} s) "
            f"p50 {figure.p50_ms:7.0f} ms p99 {figure.p99_ms:7.0f} ms, failures {figure.failures}, "
            f"{figure.roofline_fraction:.1%} of the roofline",
            flush=True,
        )

    workdir = Path(tempfile.mkdtemp(prefix="torchship-bench-tasks-"))
    try:
        for size in sizes:
            for task in tasks:
                spec = packaged[size, task][0]
                config = json.loads((model_dir(spec, settings) / "config.json").read_text())
                for length in lengths:
                    costs[size, task, length] = gflop_per_request(config, inputs[task, length])
            for task in tasks:
                spec, mar = packaged[size, task]
                # The peer alone on the machine, then TorchServe: never two servers competing for the cores.
                print(f"starting the FastAPI peer for {size} {task} …", flush=True)
                warm = inputs[task, lengths[0]].bodies[0]
                with fastapi_peer(model_dir(spec, settings), threads, task, warm) as (url, _):
                    for length in lengths:
                        record("fastapi", size, task, length, url, "unused")
                # One TorchServe per task: two bert-base workers at a time, not a dozen, in memory.
                stock = f"stock-{spec.name}"
                mars = {spec.name: mar, stock: build_baseline_mar(spec, settings, workdir, name=stock)}
                print(f"starting TorchServe with {spec.name} and {stock} …", flush=True)
                server = TorchServe(mars, settings)
                server.start(timeout_s=600)
                try:
                    for length in lengths:
                        for system, name in (("torchship", spec.name), ("stock", stock)):
                            url = f"{server.inference_url}/predictions/{name}"
                            record(system, size, task, length, url, server.inference_token)
                finally:
                    server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    cells = []
    for size in sizes:
        for task in tasks:
            for length in lengths:
                key, task_inputs = (size, task, length), inputs[task, length]
                cells.append(
                    Cell(
                        task=task,
                        size=size,
                        length=length,
                        texts_per_request=task_inputs.texts_per_request,
                        rows_per_request=task_inputs.rows_per_request,
                        tokens_per_row=task_inputs.tokens_per_row,
                        gflop_per_request=costs[key],
                        roofline_requests_per_s=roofline.fp32_gflops / costs[key],
                        figures=figures.get(key, []),
                    )
                )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    serve = first_spec.serve
    result = TasksResult(
        timestamp=stamp,
        command=" ".join(["python", *sys.argv]),
        quick=args.quick,
        machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, torch {torch.__version__}",
        load_average_start=started_load,
        load_average_end=[round(x, 2) for x in os.getloadavg()],
        threads=threads,
        clients=CLIENTS,
        window_s=window_s,
        weights=WEIGHTS,
        serve={
            "backend": first_spec.compile.backend,
            "max_length": first_spec.compile.known_max_length(),
            "batch_size": serve.batch_size,
            "max_batch_delay_ms": serve.max_batch_delay_ms,
            "workers": serve.workers,
        },
        roofline=asdict(roofline),
        cells=cells,
        verdicts=verdicts(cells),
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    prefix = "tasks" if full_run else "tasks-experiment"
    text = result.model_dump_json(indent=2) + "\n"
    names = [f"{prefix}-{stamp}.json"] + (["tasks-latest.json"] if full_run else [])
    for name in names:
        (RESULTS / name).write_text(text)
    (RESULTS / f"{prefix}-latest.html").write_text(chart_html(result))
    print(f"\nwrote {RESULTS / names[0]} and {RESULTS / f'{prefix}-latest.html'}")
    for verdict in result.verdicts:
        print(f"  {verdict.target}: {verdict.cell} {verdict.ratio:.2f}x {'met' if verdict.met else 'missed'}")


if __name__ == "__main__":
    main()
