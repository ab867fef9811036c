"""Reliability benchmark: worst-case requests at the spec's limits, a worker SIGKILLed under load, and a
bounded soak with the worker's memory sampled, all against the real TorchServe 0.12.0.

Usage:

    .venv/bin/python bench/reliability.py [--soak-s 180] [--quick]
    .venv/bin/python bench/reliability.py --tasks reranking,question-answering   # their worst case alone

Six models, one per task, all on all-MiniLM-L6-v2's encoder so the compute is a real model's:
the demo specs for embeddings and keywords, and the same encoder with a seeded random head
(bench/minilm_heads.py: 3 labels for text-classification, 9 for token-classification, one logit for
reranking, a span head for question-answering), since only the cost matters here, not the answers.

  worst case   per task, a full server-side batch (serve.batch_size concurrent requests) of requests at
               the limits: as many texts of compile.max_length tokens as serve.max_tokens_per_request
               allows (reranking: that many texts with one query, every pair a full row; question
               answering: a context of question_answering.max_windows_per_context windows, within the
               same token budget); keywords also at keywords.max_candidates_per_request candidates (and under
               keywords.max_candidate_tokens_per_request) with use_mmr and top_n 100; and batches of one
               text of serve.max_body_bytes. Reports the slowest request's latency against
               serve.response_timeout_s, and the time to refuse over-budget and malformed requests.
  kill         a worker SIGKILLed under load: failed requests and time until the new worker is READY.
  soak         good and hostile requests for --soak-s seconds; the worker's RSS sampled; growth per 10k
               requests from a least-squares fit.

Prints a summary and writes bench/results/reliability-<timestamp>.json and reliability-latest.json.
The load runs on the same cores as TorchServe; on a shared machine the figures are upper bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from minilm_heads import HEADS, minilm_dir, packaged, spec_with_head  # noqa: E402

from torchship.handlers.qa_spans import build_windows  # noqa: E402
from torchship.serving.torchserve import TorchServe  # noqa: E402
from torchship.settings import Settings  # noqa: E402
from torchship.spec import ModelSpec  # noqa: E402
from torchship.tasks.question_answering import doc_stride  # noqa: E402

DEMO = {
    "embeddings": REPO / "models" / "minilm-embeddings" / "model.yaml",
    "keywords": REPO / "models" / "minilm-keywords" / "model.yaml",
}
FILLER = ["the", "of", "and", "to", "in"]  # English stop words: tokens for the document, never candidates


# --- requests at the limits ----------------------------------------------------------------------


def texts_at_limit(spec: ModelSpec) -> int:
    """How many texts of compile.max_length tokens one request may send within its token budget."""
    return min(
        spec.serve.max_texts_per_request, spec.serve.max_tokens_per_request // spec.compile.known_max_length()
    )


def content_words(tokenizer) -> list[str]:
    """Whole-word vocabulary entries (one token each) that are not English stop words."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    vocab = sorted(tokenizer.get_vocab())
    return [w for w in vocab if w.isalpha() and w.isascii() and len(w) > 3 and w not in ENGLISH_STOP_WORDS]


def long_texts(tokenizer, spec: ModelSpec, seed: int) -> list[str]:
    """As many different texts of compile.max_length tokens as serve.max_tokens_per_request allows."""
    words = content_words(tokenizer)
    texts = []
    for i in range(texts_at_limit(spec)):
        picked = [
            words[(seed * 7919 + i * 104_729 + j * 31) % len(words)]
            for j in range(spec.compile.known_max_length())
        ]
        texts.append(" ".join(picked))
    return texts


def ranking_at_limit(tokenizer, spec: ModelSpec, seed: int) -> dict:
    """One query with as many texts of compile.max_length tokens as serve.max_tokens_per_request allows:
    every query/text pair fills a whole row (the text is truncated, the query kept)."""
    return {
        "query": "which of these passages answers the question best",
        "texts": long_texts(tokenizer, spec, seed),
    }


def question_at_limit(tokenizer, spec: ModelSpec, seed: int) -> dict:
    """A question with the longest context one request may send: as many words as still split into at
    most question_answering.max_windows_per_context windows (and within serve.max_tokens_per_request)."""
    words = content_words(tokenizer)
    question = "which of these words comes first in the context"
    max_length = spec.compile.known_max_length()
    limit = min(
        spec.question_answering.max_windows_per_context, spec.serve.max_tokens_per_request // max_length
    )

    def context(count: int) -> str:
        return " ".join(words[(seed * 7919 + j * 31) % len(words)] for j in range(count))

    def windows(count: int) -> int:
        [split] = build_windows(
            tokenizer, [question], [context(count)], max_length=max_length, stride=doc_stride(spec)
        )
        return len(split)

    low, high = 1, limit * max_length  # windows(low) <= limit < windows(high): one word is about one token
    while low + 1 < high:
        middle = (low + high) // 2
        low, high = (middle, high) if windows(middle) <= limit else (low, middle)
    return {"question": question, "context": context(low)}


def keywords_at_budget(tokenizer, spec: ModelSpec, seed: int) -> dict:
    """The most work one keywords request may ask for: texts of compile.max_length tokens up to
    serve.max_tokens_per_request, their candidates just under keywords.max_candidates_per_request and
    keywords.max_candidate_tokens_per_request (distinct one-token words, padded with stop words that
    add tokens but no candidates), ranked with MMR at top_n 100."""
    keywords = spec.keywords
    count = texts_at_limit(spec)
    words = content_words(tokenizer)
    low, high = keywords.ngram_range

    def candidates_of(distinct: int) -> int:
        return sum(max(0, distinct - n + 1) for n in range(low, high + 1))

    def body(distinct: int) -> dict:
        texts = []
        for i in range(count):
            offset = (seed * count + i) * distinct
            content = [words[(offset + j) % len(words)] for j in range(distinct)]
            filler = FILLER * (spec.compile.known_max_length() // len(FILLER))
            texts.append(" ".join(content + filler))
        return {"texts": texts, "use_mmr": True, "top_n": 100, "diversity": 0.5}

    def candidate_tokens(distinct: int) -> int:
        # unigrams [CLS] w [SEP], n-grams one more token per extra word
        return sum(max(0, distinct - n + 1) * (n + 2) for n in range(low, high + 1)) * count

    distinct = spec.compile.known_max_length()
    while distinct > 1 and (
        candidates_of(distinct) * count > keywords.max_candidates_per_request
        or candidates_of(distinct) > keywords.max_candidates
        or candidate_tokens(distinct) > keywords.max_candidate_tokens_per_request
    ):
        distinct -= 1
    return body(distinct)


# task -> the most work one request of it may ask for (the others: texts at the token budget).
AT_LIMIT = {
    "keywords": keywords_at_budget,
    "reranking": ranking_at_limit,
    "question-answering": question_at_limit,
}


def worst_case(server: TorchServe, spec: ModelSpec, bodies: list[dict]) -> dict:
    """Send a full server-side batch of worst-case requests at once; latency of each."""

    def one(body: dict) -> tuple[float, int, int]:
        with server.client(timeout_s=600) as client:
            started = time.perf_counter()
            response = client.post(f"/predictions/{spec.name}", json=body)
            return time.perf_counter() - started, response.status_code, len(response.content)

    results: list = [None] * len(bodies)
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, one(bodies[i])))
        for i in range(len(bodies))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = [r[0] for r in results]
    return {
        "requests": len(bodies),
        "statuses": sorted({r[1] for r in results}),
        "slowest_s": max(latencies),
        "median_s": statistics.median(latencies),
        "response_bytes_max": max(r[2] for r in results),
        "response_timeout_s": spec.serve.response_timeout_s,
    }


def refusal_times(server: TorchServe, name: str, bodies: dict[str, bytes]) -> dict:
    out = {}
    with server.client(timeout_s=120) as client:
        for what, body in bodies.items():
            started = time.perf_counter()
            response = client.post(
                f"/predictions/{name}", content=body, headers={"Content-Type": "application/json"}
            )
            out[what] = {"status": response.status_code, "ms": (time.perf_counter() - started) * 1e3}
    return out


# --- worker lifecycle ----------------------------------------------------------------------------


def describe(server: TorchServe, name: str) -> dict:
    token = server.keys()["management"]
    return httpx.get(
        f"{server.management_url}/models/{name}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()[0]


def worker_pid(server: TorchServe, name: str) -> int:
    return int(describe(server, name)["workers"][0]["pid"])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


GOOD_TEXTS = [
    "TorchServe batches requests and scales workers.",
    "Fresh basil, ripe tomatoes and olive oil make a summer sauce.",
    "John lives in Paris and works for Google.",
    "ok",
]
HOSTILE_BODIES = [
    json.dumps({"text": "abc \ud800"}).encode(),
    b"[" * 50_000 + b"]" * 50_000,
    b"{not json",
    json.dumps({"texts": []}).encode(),
]


async def _load(
    url: str, token: str, seconds: float, concurrency: int, hostile_every: int, on_tick=None
) -> dict:
    """Good requests (and every `hostile_every`-th a hostile one) for `seconds`; counts by status."""
    counts: dict[str, int] = {}
    done = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:

        async def worker(k: int) -> None:
            nonlocal done
            i = k
            while time.monotonic() < deadline:
                i += concurrency
                hostile = hostile_every and i % hostile_every == 0
                body = (
                    HOSTILE_BODIES[i % len(HOSTILE_BODIES)]
                    if hostile
                    else json.dumps({"text": GOOD_TEXTS[i % 4]}).encode()
                )
                try:
                    response = await client.post(
                        url, content=body, headers={"Content-Type": "application/json"}
                    )
                    status = str(response.status_code)
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                key = f"{'hostile' if hostile else 'good'}:{status}"
                counts[key] = counts.get(key, 0) + 1
                done += 1
                if on_tick:
                    on_tick(done)

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return {"requests": done, "by_status": counts}


def soak(server: TorchServe, name: str, seconds: float) -> dict:
    pid = worker_pid(server, name)
    samples: list[tuple[int, float]] = [(0, rss_mb(pid))]
    last = [time.monotonic()]

    def tick(done: int) -> None:
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            samples.append((done, rss_mb(pid)))

    url = f"{server.inference_url}/predictions/{name}"
    started = time.monotonic()
    result = asyncio.run(_load(url, server.inference_token, seconds, 8, hostile_every=10, on_tick=tick))
    samples.append((result["requests"], rss_mb(pid)))
    # The first quarter of the run is warm-up (allocator pools, caches, what earlier phases left behind):
    # the growth is the least-squares slope of RSS over the rest.
    steady = [s for s in samples if s[0] >= result["requests"] / 4]
    xs, ys = [s[0] for s in steady], [s[1] for s in steady]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return {
        **result,
        "seconds": time.monotonic() - started,
        "worker_restarted": worker_pid(server, name) != pid,
        "rss_mb_first": samples[0][1],
        "rss_mb_steady_start": ys[0],
        "rss_mb_end": ys[-1],
        "rss_growth_mb_per_10k_requests": slope * 10_000,
        "samples": samples,
    }


def kill_under_load(server: TorchServe, name: str) -> dict:
    """SIGKILL the worker 2 s into a load of 8 clients; how many requests fail, how long until READY."""
    old = worker_pid(server, name)
    url = f"{server.inference_url}/predictions/{name}"
    state: dict = {}

    def killer() -> None:
        time.sleep(2)
        state["killed"] = time.monotonic()
        os.kill(old, signal.SIGKILL)
        while time.monotonic() - state["killed"] < 120:
            workers = describe(server, name)["workers"]
            if workers and workers[0]["pid"] not in (old, -1) and workers[0]["status"] == "READY":
                state["ready"] = time.monotonic()
                return
            time.sleep(0.1)

    thread = threading.Thread(target=killer)
    thread.start()
    result = asyncio.run(_load(url, server.inference_token, 2 + 30, 8, hostile_every=0))
    thread.join()
    failed = sum(n for key, n in result["by_status"].items() if not key.endswith(":200"))
    return {
        **result,
        "failed": failed,
        "recovered": "ready" in state,
        "seconds_to_ready": state["ready"] - state["killed"] if "ready" in state else None,
    }


def worst_cases(server: TorchServe, models: dict[str, tuple[ModelSpec, Path]], tokenizer) -> dict:
    """Per task, a full server-side batch of requests at its limits, sent at once."""
    out: dict = {}
    for task, (spec, _) in models.items():
        batch = spec.serve.batch_size
        at_limit = AT_LIMIT.get(
            task, lambda tokenizer, spec, seed: {"texts": long_texts(tokenizer, spec, seed)}
        )
        bodies = [at_limit(tokenizer, spec, seed) for seed in range(batch)]
        worst_case(server, spec, bodies[:1])  # warm-up: the first call pays for the JIT
        figures = worst_case(server, spec, bodies)
        figures["limits"] = {
            "serve.batch_size": batch,
            "serve.max_texts_per_request": spec.serve.max_texts_per_request,
            "compile.max_length": spec.compile.known_max_length(),
            "serve.max_tokens_per_request": spec.serve.max_tokens_per_request,
        }
        if "texts" in bodies[0]:
            figures["limits"]["texts_per_request"] = len(bodies[0]["texts"])
        if task == "question-answering":
            figures["limits"]["question_answering.max_windows_per_context"] = (
                spec.question_answering.max_windows_per_context
            )
            figures["limits"]["windows_per_request"] = len(
                build_windows(
                    tokenizer,
                    [bodies[0]["question"]],
                    [bodies[0]["context"]],
                    max_length=spec.compile.known_max_length(),
                    stride=doc_stride(spec),
                )[0]
            )
        if task == "keywords":
            figures["limits"]["keywords.max_candidates_per_request"] = (
                spec.keywords.max_candidates_per_request
            )
            figures["limits"]["keywords.max_candidate_tokens_per_request"] = (
                spec.keywords.max_candidate_tokens_per_request
            )
        out[task] = figures
        print(f"worst case {task}: {json.dumps(figures)}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak-s", type=float, default=180.0, help="soak duration (seconds)")
    parser.add_argument("--quick", action="store_true", help="a 30 s soak (a smoke run)")
    parser.add_argument(
        "--tasks",
        help="comma-separated: only these tasks' worst case (no max-body, refusals, soak or kill), written "
        "as reliability-worst-case-<timestamp>.json",
    )
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else [*DEMO, *HEADS]
    unknown = sorted(set(tasks) - {*DEMO, *HEADS})
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join([*DEMO, *HEADS])}")
    soak_s = 30.0 if args.quick else args.soak_s
    settings = Settings(outputs_dir=REPO / "outputs" / "bench-reliability")
    root = (
        REPO / "outputs" / "bench-reliability-models"
    )  # fixed: a rerun reuses the models and their packages
    specs = {task: DEMO[task] if task in DEMO else spec_with_head(task, root) for task in tasks}
    models = {}
    for task, path in specs.items():
        print(f"packaging {task} ...", flush=True)
        models[task] = packaged(path, settings)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    result: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": os.getloadavg(),
        },
        "worst_case": {},
    }
    with TorchServe({spec.name: mar for spec, mar in models.values()}, settings) as server:
        result["worst_case"].update(worst_cases(server, models, tokenizer))
        if args.tasks:
            write_results(result, "reliability-worst-case")
            return
        # One text as large as serve.max_body_bytes allows: truncated to max_length, but the tokenizer
        # (and, for keywords, the candidate scan) still reads all of it.
        for task in ("embeddings", "keywords", "token-classification"):
            spec = models[task][0]
            big = " ".join(["serving"] * ((spec.serve.max_body_bytes - 64) // 8))
            figures = worst_case(server, spec, [{"text": big}] * spec.serve.batch_size)
            result["worst_case"][f"{task}, one text of max_body_bytes"] = figures
            print(f"worst case {task} max body: {json.dumps(figures)}", flush=True)
        keywords_spec = models["keywords"][0]
        result["refusals_ms"] = refusal_times(
            server,
            keywords_spec.name,
            {
                "48 texts x 599 candidates, use_mmr, top_n 50 (the issue's 45 s request)": json.dumps(
                    {
                        "texts": [" ".join(f"w{i}x{j}" for j in range(300)) for i in range(48)],
                        "use_mmr": True,
                        "top_n": 50,
                    }
                ).encode(),
                "nested JSON, 100k levels": b"[" * 100_000 + b"]" * 100_000,
                "lone surrogate": json.dumps({"text": "abc \ud800"}).encode(),
            },
        )
        print(f"refusals: {json.dumps(result['refusals_ms'])}", flush=True)
        embeddings = models["embeddings"][0].name
        print(f"soak {soak_s:.0f} s ...", flush=True)
        result["soak"] = soak(server, embeddings, soak_s)
        print(f"soak: { {k: v for k, v in result['soak'].items() if k != 'samples'} }", flush=True)
        print("kill under load ...", flush=True)
        result["kill"] = kill_under_load(server, embeddings)
        print(f"kill: {json.dumps(result['kill'])}", flush=True)
    write_results(result, "reliability", latest=True)


def write_results(result: dict, prefix: str, latest: bool = False) -> None:
    result["machine"]["loadavg_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in [f"{prefix}-{stamp}.json"] + ([f"{prefix}-latest.json"] if latest else []):
        (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS / f'{prefix}-{stamp}.json'}")


if __name__ == "__main__":
    main()
