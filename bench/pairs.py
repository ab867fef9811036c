"""Pair-task serving benchmark: reranking and question answering in a real TorchServe 0.12.0.

Usage:

    .venv/bin/python bench/pairs.py [--quick]

Two models on all-MiniLM-L6-v2's encoder (bench/minilm_heads.py: a one-logit sequence head, i.e. a
cross-encoder, and a span head), packaged with the demo spec's serving settings (torchscript, max_length
256, batch 8, 5 ms, one worker), served side by side in one TorchServe and loaded with torchship's own
load generator (torchship.loadgen, as `torchship tune` and bench/serving.py) at concurrency 1 and 16:

  reranking            1 query × 8 texts and 1 query × 32 texts (pairs of ~64 tokens)
  question-answering   a short context (one window) and a long one split in overlapping windows

For each: requests/s, p50/p95/p99 and the model rows per second (query/text pairs, context windows): the
work the encoder does, comparable across tasks and with bench/serving.py's texts/s. Every request must
answer 200; a failed one is reported, not counted as throughput. Beside each, the in-process floor of the
same minutes: the handler's own code (tokenization, windows, span search included) on the traced model in
this process, serve.batch_size requests per call, no HTTP. Prints a table and writes
bench/results/pairs-<timestamp>.json and pairs-latest.json. The load runs on the same cores as TorchServe;
compare rows from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from minilm_heads import minilm_dir, packaged, spec_with_head

from torchship.archiver.package import handler_config
from torchship.handlers.loading import load_compiled
from torchship.handlers.qa_spans import build_windows
from torchship.handlers.requests import ParsedRequest
from torchship.handlers.service import build_task, predict
from torchship.loadgen import load_test, make_texts
from torchship.serving.torchserve import TorchServe
from torchship.settings import Settings
from torchship.sources import MODEL_DIRNAME
from torchship.spec import ModelSpec
from torchship.tasks.question_answering import doc_stride

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CONCURRENCY = (1, 16)
PAIR_TOKENS = 64  # a passage a retriever returns is short; 32 pairs of it stay within the token budget
QUESTION = "Which river runs through the city where the markets open early?"


@dataclass(frozen=True)
class Case:
    """One kind of request: what it is, the bodies sent (cycled), and the model rows each one costs."""

    task: str
    label: str
    bodies: list[dict[str, Any]]
    rows_per_request: float  # the mean over `bodies`
    requests: int  # measured per concurrency level


@dataclass(frozen=True)
class Row:
    task: str
    case: str
    clients: int
    requests: int
    failures: int
    requests_per_s: float
    rows_per_request: float
    rows_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    client_cpu_cores: float
    in_process_requests_per_s: float  # the floor, measured just before this case was served


def rerank_cases(tokenizer, quick: bool) -> list[Case]:
    passages = make_texts(tokenizer, PAIR_TOKENS, 64)
    queries = ["where do the markets open early", "which music is played by the river", "cats and dogs"]
    cases = []
    for texts, requests in ((8, 160), (32, 48)):
        bodies = [
            {"query": queries[i % len(queries)], "texts": [passages[(i * 5 + j) % 64] for j in range(texts)]}
            for i in range(8)
        ]
        cases.append(
            Case("reranking", f"1 query × {texts} texts", bodies, texts, requests // (2 if quick else 1))
        )
    return cases


def windows_of(tokenizer, spec: ModelSpec, context: str) -> int:
    """How many model rows the handler runs for this context: its own window split."""
    [windows] = build_windows(
        tokenizer, [QUESTION], [context], max_length=spec.compile.known_max_length(), stride=doc_stride(spec)
    )
    return len(windows)


def qa_cases(tokenizer, spec: ModelSpec, quick: bool) -> list[Case]:
    cases = []
    for label, tokens, requests in (("short context", 120, 256), ("long context", 900, 48)):
        contexts = make_texts(tokenizer, tokens, 4)
        count = sum(windows_of(tokenizer, spec, context) for context in contexts) / len(contexts)
        bodies = [{"question": QUESTION, "context": context} for context in contexts]
        label = f"{label} (~{tokens} tokens, {count:g} window{'s' if count != 1 else ''})"
        cases.append(Case("question-answering", label, bodies, count, requests // (2 if quick else 1)))
    return cases


def measure(server: TorchServe, spec: ModelSpec, case: Case, clients: int, floor: float) -> Row:
    load = [case.bodies[i % len(case.bodies)] for i in range(case.requests)]
    result = load_test(
        f"{server.inference_url}/predictions/{spec.name}", server.inference_token, load, clients
    )
    # Only answered requests are throughput: a 4xx/5xx is counted in failures instead.
    answered_per_s = result.throughput_rps * (result.requests - result.failures) / result.requests
    return Row(
        task=case.task,
        case=case.label,
        clients=clients,
        requests=result.requests,
        failures=result.failures,
        requests_per_s=answered_per_s,
        rows_per_request=case.rows_per_request,
        rows_per_s=answered_per_s * case.rows_per_request,
        p50_ms=result.p50,
        p95_ms=result.p95,
        p99_ms=result.p99,
        client_cpu_cores=result.client_cpu_cores,
        in_process_requests_per_s=floor,
    )


def parsed(case: Case, body: dict[str, Any]) -> ParsedRequest:
    """A request body as the handler's parser leaves it: (query, text) or (question, context) pairs."""
    if case.task == "reranking":
        return ParsedRequest([(body["query"], text) for text in body["texts"]], single=False)
    return ParsedRequest([(body["question"], body["context"])], single=True)


def in_process_task(spec: ModelSpec, settings: Settings):
    """The handler's task on the compiled model, in this process, with the served threads per worker."""
    root = settings.stage_root(spec.name, spec.version)
    model_dir = root / "fetch" / MODEL_DIRNAME
    torch.set_num_threads(spec.serve.threads or max(1, (os.cpu_count() or 1) // spec.serve.workers))
    config = {**handler_config(spec, model_dir), "tokenizer_dir": "."}
    return build_task(model_dir, config, model=load_compiled(root / "compile"))


def in_process(task, case: Case, batch_size: int) -> float:
    """Requests/s of the handler's code alone: two calls of batch_size requests after a warm-up call."""
    requests = [parsed(case, case.bodies[i % len(case.bodies)]) for i in range(2 * batch_size)]
    predict(task, requests[:batch_size])
    started = time.perf_counter()
    for i in range(0, len(requests), batch_size):
        answers = predict(task, requests[i : i + batch_size])
        assert not any(isinstance(a, Exception) for a in answers), answers
    return len(requests) / (time.perf_counter() - started)


def table(rows: list[Row]) -> str:
    lines = [
        "| task | request | clients | req/s | model rows/s | p50 / p95 / p99 ms | failures | in-process req/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        unit = "pairs" if r.task == "reranking" else "windows"
        lines.append(
            f"| {r.task} | {r.case} | {r.clients} | {r.requests_per_s:.1f} | {r.rows_per_s:.1f} {unit} | "
            f"{r.p50_ms:.0f} / {r.p95_ms:.0f} / {r.p99_ms:.0f} | {r.failures} | {r.in_process_requests_per_s:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="half the requests per measurement")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    settings = Settings(outputs_dir=REPO / "outputs" / "bench-pairs")
    root = REPO / "outputs" / "bench-pairs-models"  # fixed: a rerun reuses the models and their packages
    models = {}
    for task in ("reranking", "question-answering"):
        print(f"packaging {task} (compile, gate, package) ...", flush=True)
        models[task] = packaged(spec_with_head(task, root), settings)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    cases = rerank_cases(tokenizer, args.quick) + qa_cases(
        tokenizer, models["question-answering"][0], args.quick
    )
    floors = {task: in_process_task(spec, settings) for task, (spec, _) in models.items()}
    started = datetime.now(UTC).isoformat(timespec="seconds")
    loadavg_start = os.getloadavg()
    rows: list[Row] = []
    with TorchServe({spec.name: mar for spec, mar in models.values()}, settings) as server:
        for case in cases:
            spec = models[case.task][0]
            floor = in_process(floors[case.task], case, spec.serve.batch_size)
            print(f"{case.task} · {case.label} · in-process: {floor:.1f} req/s", flush=True)
            for clients in CONCURRENCY:
                t0 = time.monotonic()
                row = measure(server, spec, case, clients, floor)
                rows.append(row)
                print(
                    f"{case.task} · {case.label} · {clients} clients: {row.requests_per_s:.1f} req/s, "
                    f"{row.rows_per_s:.0f} rows/s, p50 {row.p50_ms:.0f} / p99 {row.p99_ms:.0f} ms, "
                    f"failures {row.failures} ({time.monotonic() - t0:.0f} s)",
                    flush=True,
                )
    spec = models["reranking"][0]
    result = {
        "when": started,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": loadavg_start,
            "loadavg_end": os.getloadavg(),
        },
        "model": "all-MiniLM-L6-v2 encoder, seeded random heads (bench/minilm_heads.py)",
        "serve": {
            "backend": spec.compile.backend,
            "max_length": spec.compile.known_max_length(),
            "batch_size": spec.serve.batch_size,
            "max_batch_delay_ms": spec.serve.max_batch_delay_ms,
            "workers": spec.serve.workers,
            "doc_stride": doc_stride(models["question-answering"][0]),
        },
        "runs": [asdict(row) for row in rows],
    }
    print("\n" + table(rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"pairs-{stamp}.json", "pairs-latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS / f'pairs-{stamp}.json'}")


if __name__ == "__main__":
    main()
