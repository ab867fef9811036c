"""Deploy timings: render + checks of the demo base, and (when its image is built) one rehearsal.

Prints and writes bench/results/deploy-<timestamp>.json and deploy-latest.json:
- render: median seconds to render the kustomize base, validate it against the schemas of the three newest
  Kubernetes versions and run every policy rule (in-process, after one warm-up that loads the schemas);
- rehearsal (optional, `--rehearse`): podman kube play, time until the readiness probe passes, the
  served-parity check on the examples, podman kube down — the image from outputs/…/image/image.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from torchship.deploy.check import check_base  # noqa: E402
from torchship.deploy.inputs import gather_inputs  # noqa: E402
from torchship.deploy.render import render  # noqa: E402
from torchship.settings import Settings  # noqa: E402
from torchship.spec import load_spec  # noqa: E402

RESULTS = REPO / "bench" / "results"
DEMO_SPEC = REPO / "models" / "minilm-embeddings" / "model.yaml"


def time_render_and_check(spec, settings, repeats: int) -> dict:
    inputs = gather_inputs(spec, settings)
    started = time.perf_counter()
    report = check_base(render(spec, inputs), spec)  # first run loads and compiles the JSON schemas
    first = time.perf_counter() - started
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        report = check_base(render(spec, inputs), spec)
        samples.append(time.perf_counter() - started)
    return {
        "first_s": round(first, 3),
        "median_s": round(statistics.median(samples), 4),
        "repeats": repeats,
        "versions": report.versions,
        "rules": report.rules_checked,
        "ok": report.ok,
    }


def time_rehearsal(spec, settings) -> dict:
    from torchship.deploy.rehearse import rehearse

    started = time.perf_counter()
    rehearsal = rehearse(spec, settings, progress=lambda message: print(f"  … {message}", flush=True))
    return {
        "total_s": round(time.perf_counter() - started, 2),
        **{f"{phase}_s": round(seconds, 2) for phase, seconds in rehearsal.timings.items()},
        "parity": {k: rehearsal.parity[k] for k in ("ok", "max_abs", "compared")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=DEMO_SPEC)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rehearse", action="store_true", help="also time one rehearsal (needs the image)")
    args = parser.parse_args()
    spec, settings = load_spec(args.spec), Settings()
    result = {
        "spec": str(args.spec.relative_to(REPO) if args.spec.is_relative_to(REPO) else args.spec),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "render_and_check": time_render_and_check(spec, settings, args.repeats),
    }
    print(f"render + check: {json.dumps(result['render_and_check'])}")
    if args.rehearse:
        result["rehearsal"] = time_rehearsal(spec, settings)
        print(f"rehearsal: {json.dumps(result['rehearsal'])}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"deploy-{stamp}.json", "deploy-latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'deploy-latest.json'}")


if __name__ == "__main__":
    main()
