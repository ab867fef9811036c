"""A real moto S3 server on loopback, as a subprocess: the publish tests talk HTTP to it through boto3."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torchship.serving.ports import free_port

# moto checks S3's 5 MiB minimum part size; a smaller one keeps multipart tests fast (real S3 needs 5 MiB).
MIN_PART_SIZE = 256 * 1024


def _moto_server_bin() -> str:
    candidate = Path(sys.executable).parent / "moto_server"
    return str(candidate) if candidate.exists() else "moto_server"


@contextmanager
def moto_server(log_path: Path, timeout_s: float = 30.0) -> Iterator[str]:
    """Start `moto_server -H 127.0.0.1 -p PORT`, wait until GET / answers, yield its URL; stop it (by its
    pid) on the way out."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "S3_UPLOAD_PART_MIN_SIZE": str(MIN_PART_SIZE)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [_moto_server_bin(), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"moto_server exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
                    )
                try:
                    with urllib.request.urlopen(url + "/", timeout=1):
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"moto_server did not answer on {url} within {timeout_s} s"
                        ) from None
                    time.sleep(0.1)
            yield url
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
