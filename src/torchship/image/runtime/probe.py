"""`probe ready` / `probe live`: the image's exec probes (no curl in the image; stdlib only).

ready: exit 0 iff the management API on 127.0.0.1 reports at least one READY worker for the model
       (TorchServe's /ping says Healthy before the model is loaded, so readiness must ask for the model).
live:  exit 0 iff /ping on the inference port answers 200.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from settings import LOOPBACK, ImageEnv

TIMEOUT_S = 3.0


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def ready(env: ImageEnv) -> tuple[bool, str]:
    status, body = _get(f"http://{LOOPBACK}:{env.management_port}/models/{env.model_name}")
    if status != 200:
        return False, f"management API answered {status} for model {env.model_name!r}"
    workers = [w for model in json.loads(body) for w in model.get("workers", [])]
    ready_workers = sum(1 for w in workers if w.get("status") == "READY")
    return ready_workers > 0, f"{ready_workers}/{len(workers)} workers READY"


def live(env: ImageEnv) -> tuple[bool, str]:
    status, _ = _get(f"http://{env.local_address}:{env.inference_port}/ping")
    return status == 200, f"/ping answered {status}"


def main(argv: list[str]) -> int:
    checks = {"ready": ready, "live": live}
    if len(argv) != 1 or argv[0] not in checks:
        print("usage: probe ready|live", file=sys.stderr)
        return 2
    try:
        ok, message = checks[argv[0]](ImageEnv.from_environ())
    except (OSError, ValueError) as exc:  # refused, timed out, not JSON yet
        ok, message = False, f"{type(exc).__name__}: {exc}"
    print(f"{argv[0]}: {'ok' if ok else 'not ok'}: {message}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
