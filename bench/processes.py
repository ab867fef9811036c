"""TorchServe's processes as /proc shows them, for the benchmarks that sample or time them: the Java frontend
and the Python workers of one TorchServe (its session), and a process's CPU time."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def session_processes(leader: int) -> dict[str, list[int]]:
    """{"frontend": [...], "worker": [...]}: the Java frontend and the Python model workers among the
    processes of the session `leader` started (torchship starts TorchServe in a session of its own)."""
    found: dict[str, list[int]] = {"frontend": [], "worker": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != leader:
                continue
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"model_service_worker" in command:
            found["worker"].append(int(entry.name))
        elif b"org.pytorch.serve.ModelServer" in command:
            found["frontend"].append(int(entry.name))
    return found
