"""Wait for in-flight inference requests before TorchServe is stopped (stdlib only: runs on the image's Python).

Why from outside TorchServe: TorchServe 0.12's shutdown closes its listeners and stops its workers at once,
cutting a request in flight, and neither its management API nor its metrics show a request being served. The
kernel does: every client of the inference port holds an ESTABLISHED socket whose local port is that port, in
/proc/net/tcp or /proc/net/tcp6 of the container's network namespace. A non-keep-alive client closes once it
has its answer, so "no such socket" means "no request in flight".

The limit: an idle HTTP keep-alive connection looks the same as a busy one here, so it holds the drain until
the drain timeout (TORCHSHIP_DRAIN_TIMEOUT_S). That is why the wait is always bounded, and why it is logged
with the count it is waiting for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
ESTABLISHED = "01"  # include/net/tcp_states.h: TCP_ESTABLISHED


def established_on_port(port: int, tables: tuple[Path, ...] = TCP_TABLES) -> int:
    """How many ESTABLISHED sockets have `port` as their local port (the server's side of each client)."""
    count = 0
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]  # the first line is the column header
        except OSError:
            continue  # no IPv6 in this kernel, say
        for line in lines:
            fields = line.split()
            # fields: sl local_address rem_address st ...; an address is HEXIP:HEXPORT.
            if len(fields) > 3 and fields[3] == ESTABLISHED and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


@dataclass(frozen=True)
class DrainResult:
    drained: bool  # False: the timeout came first, with `left` connections still open
    waited_s: float
    left: int


def wait_for_drain(
    port: int,
    timeout_s: float,
    poll_s: float = 0.2,
    count: Callable[[int], int] = established_on_port,
    log: Callable[[str], None] = lambda _message: None,
    child_exited: Callable[[], bool] = lambda: False,
) -> DrainResult:
    """Return once no connection is open on `port` on two polls in a row (a new one may be arriving), or at
    `timeout_s`, whichever comes first; at once if the server itself has exited (nothing left to drain)."""
    started = time.monotonic()
    quiet_polls = 0
    last_logged = None
    while True:
        open_now = count(port)
        waited = time.monotonic() - started
        quiet_polls = quiet_polls + 1 if open_now == 0 else 0
        if quiet_polls >= 2:
            return DrainResult(drained=True, waited_s=waited, left=0)
        if waited >= timeout_s or child_exited():
            return DrainResult(drained=False, waited_s=waited, left=open_now)
        if open_now != last_logged and open_now:
            log(
                f"waiting for {open_now} connection(s) on port {port} to close (at most {timeout_s - waited:.0f} s more)"
            )
            last_logged = open_now
        time.sleep(poll_s)
