"""Where a served request's CPU goes, and what torchship's serving defaults save: CPU time per request of
TorchServe's Java frontend, its Python worker(s) and the load generator, read from /proc before and after
a measured load, for each variant side by side (alternating, `--rounds` times):

  stock      TorchServe's own logging (its log4j2.xml from model-server.jar: frontend at debug, access log,
             metric log files) and spinning OpenMP threads (OMP_WAIT_POLICY=ACTIVE)
  stock-log  TorchServe's own logging, sleeping OpenMP threads
  spin       torchship's logging (templates/log4j2.xml.j2), spinning OpenMP threads
  torchship  torchship's defaults: its logging and sleeping threads

Usage (after `make demo`):  .venv/bin/python bench/overhead.py [--requests 512] [--rounds 2] [--engine onnx]

Why it matters: on a machine where frontend, worker and client share the cores, served requests/s is at
most cores / (frontend + worker + client CPU per request), while the in-process floor is cores / (the
model's CPU per request): served / floor <= worker / (frontend + worker + client). Writes
bench/results/overhead-<time>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import ts  # noqa: E402
from processes import cpu_seconds, session_processes  # noqa: E402

from torchship.archiver.package import mar_path  # noqa: E402
from torchship.loadgen import load_test, make_texts  # noqa: E402
from torchship.modeling import load_tokenizer  # noqa: E402
from torchship.pipeline import Runner, SilentReporter  # noqa: E402
from torchship.serving import torchserve as torchserve_module  # noqa: E402
from torchship.settings import Settings  # noqa: E402
from torchship.sources import MODEL_DIRNAME  # noqa: E402
from torchship.spec import load_spec  # noqa: E402
from torchship.stages import STAGES  # noqa: E402
from torchship.tune.backends import package_backend  # noqa: E402

VARIANTS = {  # name: (TorchServe's own logging?, OMP_WAIT_POLICY)
    "stock": (True, "active"),
    "stock-log": (True, "passive"),
    "spin": (False, "active"),
    "torchship": (False, "passive"),
}


@dataclass
class Run:
    variant: str
    round: int
    requests: int
    failures: int
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    frontend_cpu_ms: float  # per request
    worker_cpu_ms: float
    client_cpu_ms: float
    load_average: float


def stock_log_config() -> str:
    """TorchServe's own log4j2.xml, read from the installed model-server.jar (not copied into torchship)."""
    jar = Path(ts.__file__).parent / "frontend" / "model-server.jar"
    with zipfile.ZipFile(jar) as archive:
        return archive.read("log4j2.xml").decode()


def measure(variant: str, round_: int, name: str, mar: Path, settings: Settings, bodies: list) -> Run:
    stock_logging, policy = VARIANTS[variant]
    original = torchserve_module.render_log_config
    if stock_logging:
        torchserve_module.render_log_config = lambda access_log=False: stock_log_config()
    try:
        with torchserve_module.TorchServe({name: mar}, settings, omp_wait_policy=policy) as server:
            url = f"{server.inference_url}/predictions/{name}"
            load_test(url, server.inference_token, bodies[:64], 16)  # warm-up, not measured
            assert server.process is not None
            processes = session_processes(server.process.pid)
            before = {kind: sum(map(cpu_seconds, pids)) for kind, pids in processes.items()}
            client_before = time.process_time()
            result = load_test(url, server.inference_token, bodies, 16, warmup=False)
            client = time.process_time() - client_before
            after = {kind: sum(map(cpu_seconds, pids)) for kind, pids in processes.items()}
    finally:
        torchserve_module.render_log_config = original
    per = 1000 / result.requests
    return Run(
        variant=variant,
        round=round_,
        requests=result.requests,
        failures=result.failures,
        throughput_rps=result.throughput_rps,
        p50_ms=result.p50,
        p99_ms=result.p99,
        frontend_cpu_ms=(after["frontend"] - before["frontend"]) * per,
        worker_cpu_ms=(after["worker"] - before["worker"]) * per,
        client_cpu_ms=client * per,
        load_average=os.getloadavg()[0],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(REPO / "models" / "minilm-embeddings" / "model.yaml"))
    parser.add_argument("--engine", default=None, help="another compile backend (packaged like tune does)")
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    spec, settings = load_spec(args.spec), Settings()
    runner = Runner(spec, settings, STAGES, SilentReporter())
    runner.require_current("package")
    mar = mar_path(runner.stage_dir("package"), spec)
    if args.engine and args.engine != spec.compile.backend:
        package = package_backend(spec, settings, runner.root, args.engine, lambda m: print(f"  {m}"))
        if package.mar is None:
            raise SystemExit(f"{args.engine}: {package.refused}")
        mar = package.mar
    texts = make_texts(load_tokenizer(runner.stage_dir("fetch") / MODEL_DIRNAME), 16, args.requests)
    bodies = [{"text": t} for t in texts]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    runs: list[Run] = []
    for round_ in range(1, args.rounds + 1):
        for variant in variants:
            run = measure(variant, round_, spec.name, mar, settings, bodies)
            runs.append(run)
            print(
                f"round {round_} {variant:10s} {run.throughput_rps:7.1f} req/s  p50 {run.p50_ms:6.1f}  p99 "
                f"{run.p99_ms:6.1f} ms  CPU ms/request: frontend {run.frontend_cpu_ms:.2f} worker "
                f"{run.worker_cpu_ms:.2f} client {run.client_cpu_ms:.2f}  (load {run.load_average:.1f})",
                flush=True,
            )
    summary = {}
    for variant in variants:
        mine = [r for r in runs if r.variant == variant]
        summary[variant] = {
            key: statistics.median(getattr(r, key) for r in mine)
            for key in (
                "throughput_rps",
                "p50_ms",
                "p99_ms",
                "frontend_cpu_ms",
                "worker_cpu_ms",
                "client_cpu_ms",
            )
        }
        cpu = summary[variant]
        # The most served can reach of the floor when everything shares the cores (module docstring).
        cpu["worker_share_of_cpu"] = cpu["worker_cpu_ms"] / (
            cpu["frontend_cpu_ms"] + cpu["worker_cpu_ms"] + cpu["client_cpu_ms"]
        )
    print("\nmedian per variant:")
    for variant, cpu in summary.items():
        print(
            f"  {variant:10s} {cpu['throughput_rps']:7.1f} req/s  p99/p50 {cpu['p99_ms'] / cpu['p50_ms']:.2f}  "
            f"frontend {cpu['frontend_cpu_ms']:.2f} + worker {cpu['worker_cpu_ms']:.2f} + client "
            f"{cpu['client_cpu_ms']:.2f} ms CPU/request; worker share {cpu['worker_share_of_cpu']:.0%}"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"overhead-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "spec": args.spec,
                "engine": args.engine or spec.compile.backend,
                "concurrency": 16,
                "texts": "short (~16 tokens)",
                "runs": [asdict(r) for r in runs],
                "median": summary,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
