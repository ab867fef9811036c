"""The README's "Bring your own model" section, run as written, so the docs cannot rot.

The commands come from the section's ```bash blocks (`.venv/bin/...` mapped to this interpreter); they
run in a temporary copy of the demo's folder. What the section shows as output is compared with what the
commands print: the served results of `run`, and the curl answer. Minutes long (compile, verify and a
served model on the real MiniLM), so behind the `readme` marker: `pytest -m readme`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.readme

REPO = Path(__file__).resolve().parent.parent
SECTION = "## Bring your own model"


def section_text() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index(SECTION)
    end = readme.index("\n## ", start + len(SECTION))
    return readme[start:end]


def blocks(text: str, lang: str) -> list[str]:
    """The fenced blocks of one language ("" for plain fences), in order."""
    found, current, open_lang = [], None, None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, open_lang = [], line[3:].strip()
            else:
                if open_lang == lang:
                    found.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return found


def commands(text: str) -> list[str]:
    lines = [line.strip() for block in blocks(text, "bash") for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def as_argv(command: str) -> str:
    """The README's `.venv/bin/...` as this test's interpreter (the venv may live elsewhere)."""
    tools = {"torchship": f"{sys.executable} -m torchship.cli", "python": sys.executable}
    return re.sub(r"(?<!\S)\.venv/bin/(torchship|python)\b", lambda m: tools[m.group(1)], command)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_readme_walkthrough_runs_as_written(tmp_path):
    text = section_text()
    steps = commands(text)
    assert any("build_model.py" in s for s in steps) and any(" serve " in s for s in steps)
    # The demo's folder and its shared helper, copied: the build writes model/ beside the spec.
    shutil.copytree(REPO / "models" / "minilm-sentiment", tmp_path / "models" / "minilm-sentiment",
                    ignore=shutil.ignore_patterns("model"))  # fmt: skip
    shutil.copy(REPO / "models" / "demo_base.py", tmp_path / "models" / "demo_base.py")
    env = {**os.environ, "TORCHSHIP_OUTPUTS_DIR": str(tmp_path / "outputs"), "PYTHONPATH": str(REPO / "src")}
    port = free_port()
    printed: dict[str, str] = {}
    server = None
    try:
        for step in steps:
            shell = as_argv(step).replace("8080", str(port))
            if " serve " in step:
                server = subprocess.Popen(  # exec: the signal goes to torchship, not to a shell around it
                    f"exec {shell}", shell=True, cwd=tmp_path, env=env, text=True,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
                token = wait_for_token(server)
                env["TOKEN"] = token
                continue
            started = time.perf_counter()
            done = subprocess.run(shell, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=900)  # fmt: skip
            assert done.returncode == 0, f"{step}\n{done.stdout}\n{done.stderr}"
            printed[step] = done.stdout
            print(f"$ {step}  ({time.perf_counter() - started:.1f} s)\n{done.stdout}{done.stderr[-3000:]}")
        assert server is not None
        build_step = next(s for s in steps if "build_model.py" in s)
        quoted = re.search(r"Step 1 prints `wrote …(.*?)`", text, flags=re.S).group(1).replace("\n", " ")
        assert quoted in printed[build_step]
        spec_step = next(s for s in steps if s.startswith("cat "))
        assert printed[spec_step] == blocks(text, "yaml")[0]
        # The served results `run` printed are the ones the README shows.
        shown_run = next(b for b in blocks(text, "") if "served results" in b)
        run_step = next(s for s in steps if " run " in s)
        for line in shown_run.splitlines():
            if line.startswith(("  '", "    →", "served results", "parity: ok")):
                expected = re.sub(r"max \|Δ\| \S+", "max |Δ| *", line)
                got = re.sub(r"max \|Δ\| \S+", "max |Δ| *", printed[run_step])
                assert expected in got, f"README shows {line!r}; run printed:\n{printed[run_step]}"
        # The curl answer equals the README's (to the 4th decimal).
        curl_step = next(s for s in steps if s.startswith("curl"))
        answer = json.loads(printed[curl_step])
        shown = json.loads(blocks(text, "json")[0])
        assert [[r["label"] for r in a] for a in answer] == [[r["label"] for r in s] for s in shown]
        for got_list, shown_list in zip(answer, shown, strict=True):
            for got_r, shown_r in zip(got_list, shown_list, strict=True):
                assert got_r["score"] == pytest.approx(shown_r["score"], abs=1e-4)
        # Ctrl-C stops serve with the exit code the README gives.
        os.killpg(server.pid, signal.SIGINT)
        assert server.wait(timeout=60) == 130
        server = None
    finally:
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def wait_for_token(server: subprocess.Popen, timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            raise AssertionError("serve exited before printing its token:\n" + "".join(seen))
        seen.append(line)
        found = re.match(r"token: (\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError("serve printed no token in time:\n" + "".join(seen))
