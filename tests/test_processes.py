"""stop_process: a polite child stops on SIGTERM; one that ignores it is killed after the grace period."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from torchship.processes import stop_process


def _start(setup: str) -> subprocess.Popen:
    """A child that runs `setup`, says it is ready (so a signal never arrives before the setup), then sleeps."""
    code = f"{setup}; import time; print('ready', flush=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def test_a_child_that_obeys_sigterm_stops_at_once() -> None:
    process = _start("pass")
    started = time.monotonic()
    assert stop_process(process, grace_s=10) == -signal.SIGTERM
    assert time.monotonic() - started < 5


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    process = _start("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    started = time.monotonic()
    assert stop_process(process, grace_s=0.5) == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 10


def test_a_child_that_already_exited_keeps_its_status() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])
    process.wait()
    assert stop_process(process) == 7
