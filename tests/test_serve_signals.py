"""`torchship serve` and `torchship verify` as real subprocesses: SIGTERM and SIGHUP stop TorchServe's whole
process group, also while it is still starting, and leave no /tmp/torchship-ts-* behind; a long `serve`
issues a new inference token when the old one expires instead of going silently deaf."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import httpx
import pytest

from torchship.serving.ports import free_port

pytestmark = pytest.mark.torchserve


def _processes_mentioning(text: str) -> dict[int, str]:
    """pid -> command line of every process whose command line contains `text` (our TorchServe's java and
    workers carry their work dir, which lies under the TMPDIR we hand the subprocess)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            if text in args and int(entry.name) != os.getpid():
                found[int(entry.name)] = args
    return found


def _torchship(args: list[str], tmp: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "torchship.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp), **env},
        start_new_session=True,  # so that the test can clean up after a failure; signals go to proc.pid
    )


def _wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert proc.poll() is None, (
            f"torchship exited ({proc.returncode}) before {what}: {proc.stdout.read()}"
        )
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.1)


def _cleanup(proc: subprocess.Popen, tmp: Path) -> None:
    """Only after a failed assertion: end what the test started, by pid."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    for pid in _processes_mentioning(str(tmp)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _assert_nothing_left(tmp: Path) -> None:
    deadline = time.monotonic() + 10  # the group was killed; give the kernel a moment to reap
    while _processes_mentioning(str(tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(tmp)) == {}
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("torchship-ts-")) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_serve_stopped_while_torchserve_starts(tiny_package, tmp_path, signum):
    _, _, mar = tiny_package
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = _torchship(["serve", str(mar), "--port", str(free_port())], tmp)
    try:
        # The Java frontend is up (its command line names our work dir), the model not yet ready.
        _wait_for(lambda: any("ModelServer" in a for a in _processes_mentioning(str(tmp)).values()), 120,
                  "TorchServe's frontend", proc)  # fmt: skip
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, output
        assert "serving" not in output
        _assert_nothing_left(tmp)
    finally:
        _cleanup(proc, tmp)


def test_verify_stopped_by_sighup_while_torchserve_starts(tiny_package, tmp_path):
    spec, settings, _ = tiny_package
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    root = settings.stage_root(spec.name, spec.version)
    before = sorted(p.name for p in root.iterdir())
    proc = _torchship(
        ["verify", str(spec.spec_path)], tmp, TORCHSHIP_OUTPUTS_DIR=str(settings.outputs_dir.resolve())
    )
    try:
        _wait_for(lambda: any("ModelServer" in a for a in _processes_mentioning(str(tmp)).values()), 180,
                  "TorchServe's frontend", proc)  # fmt: skip
        proc.send_signal(signal.SIGHUP)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, output
        assert "interrupted" in output
        _assert_nothing_left(tmp)
        assert sorted(p.name for p in root.iterdir()) == before  # no verify output, no temp dir
    finally:
        _cleanup(proc, tmp)


def test_long_serve_renews_the_expired_token_then_stops_on_sigterm(tiny_package, tmp_path):
    _, _, mar = tiny_package
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/predictions/{mar.stem}"
    # 0.15 min: the first token expires about 9 s after TorchServe made it (serve renews it if the start
    # took longer, before printing it).
    proc = _torchship(["serve", str(mar), "--port", str(port)], tmp, TORCHSHIP_TOKEN_EXPIRATION_MIN="0.15")
    lines: list[str] = []
    queue: Queue[str] = Queue()
    # readline blocks; a reader thread lets every wait below end at its own deadline.
    threading.Thread(target=lambda: [queue.put(line) for line in proc.stdout], daemon=True).start()

    def read_until(marker: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = queue.get(timeout=0.2)
            except Empty:
                continue
            lines.append(line)
            if marker in line:
                return line
        raise AssertionError(f"no {marker!r} line within {timeout_s} s: {''.join(lines)}")

    try:
        first = read_until("token: ", 180).split()[1]
        assert "the token expires at" in read_until("the token expires at", 10)
        read_until("Ctrl-C stops TorchServe", 10)
        renewed = read_until("new token: ", 60).split()[2]
        assert renewed != first
        good = httpx.post(url, json={"text": "hello"}, headers={"Authorization": f"Bearer {renewed}"})
        assert good.status_code == 200, good.text
        stale = httpx.post(url, json={"text": "hello"}, headers={"Authorization": f"Bearer {first}"})
        assert stale.status_code in (400, 401) and "token" in stale.text.lower()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        read_until("stopping TorchServe", 10)
        assert proc.returncode == 130, "".join(lines)
        _assert_nothing_left(tmp)
    finally:
        _cleanup(proc, tmp)
