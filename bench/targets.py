"""Issue 21's serving targets, measured side by side and repeated (the median of `--runs`, default 3):

  * best served configuration (the last `torchship tune`'s pick: its engine at its serving configuration)
    >= 2.0x the default spec's served throughput, short texts (~16 tokens), 16 clients;
  * that engine's fp32 floor (the same backend at fp32, in-process) >= 0.85 of the fp32 roofline;
  * served >= 0.9x the in-process floor of the chosen engine;
  * p99 <= 2x p50 at the chosen configuration.

Usage (after `make demo` and `torchship tune models/minilm-embeddings/model.yaml`):

    .venv/bin/python bench/targets.py [--runs 3] [--requests 512]

Each run measures, in this order: the roofline (bench/roofline.py, at the machine's cores), the in-process
floors (tune/floor.py: the handler's code on the compiled model, every core), the default spec's .mar served
with the spec's configuration, and the tuned engine's .mar served with the tuned configuration (one fresh
TorchServe each, torchship's defaults: its logging, sleeping OpenMP threads unless tune chose spinning).
Writes bench/results/targets-<time>.json (every run, the medians, each target met or missed) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from roofline import gflop_per_text, measure_roofline, shaped_ceiling_gflops  # noqa: E402

from torchship.archiver.package import mar_path  # noqa: E402
from torchship.loadgen import load_test, make_texts  # noqa: E402
from torchship.modeling import load_tokenizer  # noqa: E402
from torchship.pipeline import Runner, SilentReporter  # noqa: E402
from torchship.serving.torchserve import TorchServe  # noqa: E402
from torchship.settings import Settings  # noqa: E402
from torchship.sources import MODEL_DIRNAME  # noqa: E402
from torchship.spec import load_spec  # noqa: E402
from torchship.stages import STAGES  # noqa: E402
from torchship.tune.backends import package_engine, spec_engine, with_engine  # noqa: E402
from torchship.tune.floor import floor_rps  # noqa: E402
from torchship.tune.outputs import TUNE_DIRNAME  # noqa: E402
from torchship.tune.plan import Engine, current_config  # noqa: E402
from torchship.tune.records import TuneResult  # noqa: E402
from torchship.tune.variant import write_variant  # noqa: E402

CONCURRENCY = 16
TARGETS = {  # name: (the bound, "min" or "max")
    "tuned / default served": (2.0, "min"),
    "fp32 floor / fp32 roofline": (0.85, "min"),
    "tuned served / its engine's floor": (0.9, "min"),
    "tuned p99 / p50": (2.0, "max"),
}


def served(name: str, mar: Path, settings: Settings, policy: str, bodies: list) -> dict:
    with TorchServe({name: mar}, settings, omp_wait_policy=policy) as server:
        result = load_test(
            f"{server.inference_url}/predictions/{name}", server.inference_token, bodies, CONCURRENCY
        )
    return {"rps": result.throughput_rps, "p50": result.p50, "p99": result.p99, "failures": result.failures}


def say(message: str) -> None:
    print(f"  {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(REPO / "models" / "minilm-embeddings" / "model.yaml"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=512)
    args = parser.parse_args()
    spec, settings = load_spec(args.spec), Settings()
    runner = Runner(spec, settings, STAGES, SilentReporter())
    runner.require_current("package")
    tune_json = runner.root / TUNE_DIRNAME / "tune.json"
    if not tune_json.is_file():
        raise SystemExit(f"no {tune_json}: run `torchship tune {args.spec}` first")
    tuned = TuneResult.model_validate_json(tune_json.read_text())
    if tuned.chosen is None or tuned.chosen_engine is None:
        raise SystemExit(f"{tune_json}: the tune chose nothing")
    engine = tuned.chosen_engine
    own = spec_engine(spec)
    roots = {own: runner.root}
    mars = {own: mar_path(runner.stage_dir("package"), spec)}
    for wanted in {engine, Engine(backend=engine.backend)} - {own}:
        package = package_engine(spec, settings, runner.root, wanted, say)
        if package.mar is None:
            raise SystemExit(f"{wanted.label}: {package.refused}")
        roots[wanted], mars[wanted] = package.stage_root, package.mar
    fp32_engine = Engine(backend=engine.backend)
    tokenizer = load_tokenizer(runner.stage_dir("fetch") / MODEL_DIRNAME)
    texts = make_texts(tokenizer, 16, args.requests)
    bodies = [{"text": t} for t in texts]
    tokens = statistics.fmean(len(ids) for ids in tokenizer(texts)["input_ids"])
    config = json.loads((runner.stage_dir("fetch") / MODEL_DIRNAME / "config.json").read_text())
    per_text = gflop_per_text(config, tokens)
    cores = os.cpu_count() or 1
    workdir = runner.root / "bench-targets"
    tuned_mar = write_variant(mars[engine], tuned.chosen, workdir / f"{spec.name}.mar")
    default_config = current_config(spec.serve, cores)
    print(
        f"default: {own.label} · {default_config.label}\ntuned:   {engine.label} · {tuned.chosen.label}\n"
        f"{len(bodies)} short texts ({tokens:.1f} tokens), {CONCURRENCY} clients, {args.runs} runs",
        flush=True,
    )
    runs: list[dict[str, Any]] = []
    for number in range(1, args.runs + 1):
        roofline = measure_roofline(cores)
        run: dict[str, Any] = {
            "run": number,
            "roofline_texts_per_s": roofline.texts_per_s(per_text),
            "fp32_gflops": roofline.fp32_gflops,
            # The same matmuls at the shapes the floor runs (its batch of short texts): why short texts stay
            # below the square roofline whatever the engine does.
            "shaped_gflops": shaped_ceiling_gflops(config, round(spec.serve.batch_size * tokens), cores),
            "floor_tuned_engine": floor_rps(with_engine(spec, engine), roots[engine], bodies),
            "floor_fp32_engine": floor_rps(with_engine(spec, fp32_engine), roots[fp32_engine], bodies),
            "default": served(spec.name, mars[own], settings, spec.serve.omp_wait_policy, bodies),
            "tuned": served(spec.name, tuned_mar, settings, tuned.chosen.omp_wait_policy, bodies),
            "load_average": os.getloadavg()[0],
        }
        run["ratios"] = {
            "tuned / default served": run["tuned"]["rps"] / run["default"]["rps"],
            "fp32 floor / fp32 roofline": run["floor_fp32_engine"] / run["roofline_texts_per_s"],
            "tuned served / its engine's floor": run["tuned"]["rps"] / run["floor_tuned_engine"],
            "tuned p99 / p50": run["tuned"]["p99"] / run["tuned"]["p50"],
        }
        if run["shaped_gflops"]:
            run["ratios"]["fp32 floor / ceiling at its shapes"] = run["floor_fp32_engine"] / (
                run["shaped_gflops"] / per_text
            )
        runs.append(run)
        print(
            f"run {number}: default {run['default']['rps']:.1f} req/s · tuned {run['tuned']['rps']:.1f} req/s "
            f"(p50 {run['tuned']['p50']:.0f} / p99 {run['tuned']['p99']:.0f} ms) · floors {run['floor_tuned_engine']:.1f} "
            f"/ fp32 {run['floor_fp32_engine']:.1f} · roofline {run['roofline_texts_per_s']:.0f} texts/s "
            f"· load {run['load_average']:.1f}",
            flush=True,
        )
    medians = {name: statistics.median(r["ratios"][name] for r in runs) for name in TARGETS}
    shaped = [r["ratios"]["fp32 floor / ceiling at its shapes"] for r in runs if r["shaped_gflops"]]
    verdicts = {
        name: {
            "median": medians[name],
            "target": bound,
            "met": medians[name] >= bound if kind == "min" else medians[name] <= bound,
        }
        for name, (bound, kind) in TARGETS.items()
    }
    print(f"\nmedian of {args.runs} runs:")
    if shaped:
        print(
            f"  {'fp32 floor / ceiling at its shapes':36s} {statistics.median(shaped):6.2f}  (no target: why)"
        )
    for name, verdict in verdicts.items():
        kind = TARGETS[name][1]
        sign = ">=" if kind == "min" else "<="
        state = "met" if verdict["met"] else "MISSED"
        print(f"  {name:36s} {verdict['median']:6.2f}  (target {sign} {verdict['target']:g}: {state})")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"targets-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {cores} cores, {platform.processor() or 'cpu'}",
                "spec": args.spec,
                "default": {"engine": own.label, "config": default_config.model_dump()},
                "tuned": {
                    "engine": engine.label,
                    "config": tuned.chosen.model_dump(),
                    "tune_json": str(tune_json),
                },
                "texts": {"count": len(bodies), "tokens_per_text": tokens, "gflop_per_text": per_text},
                "concurrency": CONCURRENCY,
                "runs": runs,
                "targets": verdicts,
                "fp32_floor_over_shaped_ceiling": statistics.median(shaped) if shaped else None,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
