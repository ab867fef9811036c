"""The serving image's entrypoint (run by tini as PID 1's only child): TorchServe with a real SIGTERM.

Why not `torchserve --start --foreground` as the command: measured here, it ignores SIGTERM as PID 1 and the
container is killed after the grace period. This script starts TorchServe as its child, and on SIGTERM or
SIGINT first waits for the requests in flight on the inference port to finish (drain.py: TorchServe 0.12 does
not drain by itself; bounded by TORCHSHIP_DRAIN_TIMEOUT_S), then sends SIGTERM to TorchServe's Java frontend
(its shutdown hook closes the listeners and stops the workers), waits for it, and exits 0. The whole stop is
bounded by TORCHSHIP_STOP_TIMEOUT_S (then SIGKILL), below Kubernetes' default 30 s grace period. tini reaps
the Python workers the frontend leaves behind.

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
from drain import wait_for_drain
from settings import ImageEnv

BAKED_CONFIG = Path(os.environ.get("TORCHSHIP_CONFIG", "/opt/torchship/config.properties"))
MODEL_STORE = Path(os.environ.get("TORCHSHIP_MODEL_STORE", "/opt/torchship/model-store"))
STOP_TIMEOUT_S = float(os.environ.get("TORCHSHIP_STOP_TIMEOUT_S", "25"))
# The drain's share of the stop; the rest is left for TorchServe's own shutdown.
DRAIN_TIMEOUT_S = min(float(os.environ.get("TORCHSHIP_DRAIN_TIMEOUT_S", "20")), STOP_TIMEOUT_S)


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
    stopping: dict[str, float | None] = {"at": None}

    def log(message: str) -> None:
        print(f"torchship-entrypoint: {message}", file=sys.stderr, flush=True)

    def on_signal(signum: int, _frame) -> None:
        # Only note the time: the drain runs in the main loop, not inside the signal handler.
        if stopping["at"] is None:
            stopping["at"] = time.monotonic()
            log(f"signal {signum}: draining requests in flight, then stopping TorchServe")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while stopping["at"] is None and child.poll() is None:
        time.sleep(0.2)
    if stopping["at"] is not None and child.poll() is None:
        drain = wait_for_drain(
            env.inference_port, DRAIN_TIMEOUT_S, log=log, child_exited=lambda: child.poll() is not None
        )
        if drain.drained:
            log(f"no request in flight after {drain.waited_s:.1f} s: stopping TorchServe")
        else:
            log(
                f"drain timeout ({DRAIN_TIMEOUT_S:.0f} s): {drain.left} connection(s) still open: stopping TorchServe"
            )
        pid = frontend_pid(env)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid if pid else child.pid, signal.SIGTERM)
    code = None
    while code is None:
        try:
            code = child.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            if stopping["at"] is not None and time.monotonic() - stopping["at"] > STOP_TIMEOUT_S:
                child.kill()
    if stopping["at"] is not None:
        took = time.monotonic() - stopping["at"]
        log(f"TorchServe stopped {took:.1f} s after the signal")
        return 0
    print(f"torchship-entrypoint: TorchServe exited with {code}", file=sys.stderr, flush=True)
    return code or 1


if __name__ == "__main__":
    sys.exit(main())
