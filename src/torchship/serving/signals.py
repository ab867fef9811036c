"""Stop signals while a TorchServe runs: SIGTERM and SIGHUP end torchship the way Ctrl-C does.

TorchServe runs in a process group (session) of its own so that it can be stopped as a whole; the price
is that a signal sent to torchship alone never reaches it. Python's default for SIGTERM and SIGHUP is to
die on the spot, which would leave the Java frontend, its Python workers and the work dir behind. So
while a TorchServe is up (starting included), both raise KeyboardInterrupt in the main thread and the
usual `finally` stops the group. While it is being stopped, further signals are held off instead.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# Those plus Ctrl-C: none of them may cut a stop in half.
HELD_DURING_STOP = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

Handler = Callable[[int, Any], Any] | int | signal.Handlers | None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def install_stop_handlers() -> dict[int, Handler]:
    """SIGTERM/SIGHUP -> KeyboardInterrupt; returns the handlers to restore (none outside the main thread,
    where Python allows no handlers: there the caller's own main thread decides)."""
    if not _in_main_thread():
        return {}
    previous: dict[int, Handler] = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_interrupt)
    return previous


def restore_handlers(previous: dict[int, Handler]) -> None:
    if not _in_main_thread():
        return
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def signals_held() -> Iterator[list[int]]:
    """Ignore SIGINT/SIGTERM/SIGHUP inside; yields the list of those that arrived (they are not lost:
    the caller re-raises as KeyboardInterrupt when the protected work is done)."""
    if not _in_main_thread():
        yield []
        return
    arrived: list[int] = []
    previous: dict[int, Handler] = {sig: signal.getsignal(sig) for sig in HELD_DURING_STOP}
    for sig in HELD_DURING_STOP:
        signal.signal(sig, lambda signum, frame: arrived.append(signum))
    try:
        yield arrived
    finally:
        restore_handlers(previous)
