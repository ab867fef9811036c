"""Stopping a child process we started: ask (SIGTERM), wait a bounded time, then insist (SIGKILL).

One helper so that every place that starts a helper process (kubectl port-forward, a local registry, a
benchmark peer) stops it the same way and never hangs on one that ignores SIGTERM. TorchServe is stopped by
process group instead (serving/torchserve.py): its JVM and workers must go with the launcher."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, *, grace_s: float = 10) -> int | None:
    """Terminate `process`, wait up to `grace_s` seconds for it to exit, then kill it and reap it.
    Returns its exit status (None only if it could not be reaped). Safe on a process that already exited."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
