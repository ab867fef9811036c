"""Where a served request's time goes: py-spy samples TorchServe's Python worker under load.

Usage (after `make demo`):  .venv/bin/python bench/profile_served.py [--seconds 20] [--concurrency 16]

Starts TorchServe with the demo model's packaged .mar, sends short texts (~16 tokens) from the shared
load generator at the given concurrency, and meanwhile records the worker with `py-spy record` (idle
frames excluded). Writes bench/results/profile-served-<time>.svg (a flame graph) and prints the share of
samples per function (own time and time including callees), the profile's summary that the README quotes.
py-spy needs ptrace on the worker: run as the same user, where the kernel's ptrace_scope allows it.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from processes import session_processes  # noqa: E402

from torchship.archiver.package import mar_path  # noqa: E402
from torchship.loadgen import load_test, make_texts  # noqa: E402
from torchship.modeling import load_tokenizer  # noqa: E402
from torchship.pipeline import Runner, SilentReporter  # noqa: E402
from torchship.serving.torchserve import TorchServe  # noqa: E402
from torchship.settings import Settings  # noqa: E402
from torchship.sources import MODEL_DIRNAME  # noqa: E402
from torchship.spec import load_spec  # noqa: E402
from torchship.stages import STAGES  # noqa: E402


def summarize(raw: Path, top: int = 25) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(own-time shares, inclusive shares) per function from py-spy's raw (collapsed stacks) output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    total = total or 1
    return (
        [(f, c / total) for f, c in own.most_common(top)],
        [(f, c / total) for f, c in inclusive.most_common(top)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(REPO / "models" / "minilm-embeddings" / "model.yaml"))
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    spec, settings = load_spec(args.spec), Settings()
    runner = Runner(spec, settings, STAGES, SilentReporter())
    runner.require_current("package")
    texts = make_texts(load_tokenizer(runner.stage_dir("fetch") / MODEL_DIRNAME), 16, 256)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    svg, raw = RESULTS / f"profile-served-{stamp}.svg", RESULTS / f"profile-served-{stamp}.txt"
    with TorchServe({spec.name: mar_path(runner.stage_dir("package"), spec)}, settings) as server:
        url, token = f"{server.inference_url}/predictions/{spec.name}", server.inference_token
        bodies = [{"text": t} for t in texts]  # the request bodies clients send
        load_test(url, token, bodies[:64], args.concurrency)  # warm the worker outside the profile
        assert server.process is not None, "TorchServe is started inside the with block"
        (pid,) = session_processes(server.process.pid)["worker"]
        stop = threading.Event()

        def keep_loading() -> None:
            while not stop.is_set():
                load_test(url, token, bodies, args.concurrency, warmup=False)

        loader = threading.Thread(target=keep_loading, daemon=True)
        loader.start()
        try:
            for fmt, path in (("flamegraph", svg), ("raw", raw)):
                subprocess.run(
                    [py_spy, "record", "--pid", str(pid), "--duration", str(args.seconds // 2),
                     "--rate", "200", "--format", fmt, "--output", str(path), "--nonblocking"],
                    check=True, capture_output=True,
                )  # fmt: skip
        finally:
            stop.set()
            loader.join(timeout=120)
    own, inclusive = summarize(raw)
    print(
        f"worker pid {pid}, {args.seconds} s at concurrency {args.concurrency}, short texts; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print("\nown time (top functions):")
    for frame, share in own[:15]:
        print(f"  {share:6.1%}  {frame}")
    print("\nincluding callees:")
    for frame, share in inclusive[:25]:
        print(f"  {share:6.1%}  {frame}")
    print(f"\nwrote {svg} and {raw}")


if __name__ == "__main__":
    main()
