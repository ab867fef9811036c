"""The serving image's entrypoint (run by tini as PID 1's only child): TorchServe with a real SIGTERM.

Why not `torchserve --start --foreground` as the command: measured here, it ignores SIGTERM as PID 1 and the
container is killed after the grace period. This script starts TorchServe as its child, and on SIGTERM or
SIGINT sends SIGTERM to TorchServe's Java frontend (its shutdown hook closes the listeners and stops the
workers), waits for it, and exits 0. tini reaps the Python workers the frontend leaves behind.

The baked config.properties (hardening, size limits) is read-only; the addresses come from the environment
and are appended into a copy under TMPDIR, the management API always on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from settings import ImageEnv

BAKED_CONFIG = Path(os.environ.get("TORCHSHIP_CONFIG", "/opt/torchship/config.properties"))
MODEL_STORE = Path(os.environ.get("TORCHSHIP_MODEL_STORE", "/opt/torchship/model-store"))
STOP_TIMEOUT_S = float(os.environ.get("TORCHSHIP_STOP_TIMEOUT_S", "25"))


def write_config(env: ImageEnv) -> Path:
    config_dir = Path(env.tmp_dir) / "torchship"
    config_dir.mkdir(parents=True, exist_ok=True)
    lines = BAKED_CONFIG.read_text().rstrip("\n").splitlines()
    overridden = set(env.address_properties())
    kept = [line for line in lines if line.split("=", 1)[0].strip() not in overridden]
    added = [f"{key}={value}" for key, value in env.address_properties().items()]
    path = config_dir / "config.properties"
    path.write_text("\n".join(kept + added) + "\n")
    return path


def frontend_pid(env: ImageEnv) -> int | None:
    """TorchServe's launcher writes the Java frontend's pid here."""
    try:
        return int((Path(env.tmp_dir) / ".model_server.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def main() -> int:
    env = ImageEnv.from_environ()
    if not env.model_name:
        print("error: TORCHSHIP_MODEL_NAME is not set", file=sys.stderr)
        return 2
    mar = MODEL_STORE / f"{env.model_name}.mar"
    if not mar.is_file():
        print(f"error: {mar} does not exist (TORCHSHIP_MODEL_NAME={env.model_name})", file=sys.stderr)
        return 2
    Path(env.log_dir).mkdir(parents=True, exist_ok=True)
    config = write_config(env)
    torchserve = Path(sys.executable).with_name("torchserve")
    command = [
        str(torchserve), "--start", "--foreground", "--ncs",
        "--ts-config", str(config), "--model-store", str(MODEL_STORE),
        "--models", f"{env.model_name}={mar.name}",
    ]  # fmt: skip
    # The working directory is TMPDIR: TorchServe writes into its cwd, and the root filesystem is read-only.
    child = subprocess.Popen(command, cwd=env.tmp_dir)
    stopping = {"at": None}

    def stop(signum: int, _frame) -> None:
        if stopping["at"] is not None:
            return
        stopping["at"] = time.monotonic()
        print(f"torchship-entrypoint: signal {signum}: stopping TorchServe", file=sys.stderr, flush=True)
        pid = frontend_pid(env)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid if pid else child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        try:
            code = child.wait(timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            if stopping["at"] is not None and time.monotonic() - stopping["at"] > STOP_TIMEOUT_S:
                child.kill()
    if stopping["at"] is not None:
        took = time.monotonic() - stopping["at"]
        print(f"torchship-entrypoint: TorchServe stopped in {took:.1f} s", file=sys.stderr, flush=True)
        return 0
    print(f"torchship-entrypoint: TorchServe exited with {code}", file=sys.stderr, flush=True)
    return code or 1


if __name__ == "__main__":
    sys.exit(main())
