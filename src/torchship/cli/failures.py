"""How a command fails: the `error:` / `hint:` lines on stderr (a traceback with --debug) and the exit code.

Exit codes (README: CLI): 2 a bad spec or command line, 3 the validation gate refused the model (source
checkpoint, parity, metrics, served parity), 1 any other failure, 130 interrupted (Ctrl-C)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.traceback import Traceback

from torchship.cli.console import err, labelled
from torchship.errors import TorchshipError

EXIT_INTERRUPTED = 130

_state = {"debug": False}


def set_debug(debug: bool) -> None:
    """--debug: failures print their traceback too."""
    _state["debug"] = debug


def usage_error(message: str) -> NoReturn:
    """A command line the options' own checks let through but the command refuses: exit 2."""
    err.print(labelled("error:", "bold red", message), highlight=False)
    raise typer.Exit(2)


def fail(exc: BaseException) -> NoReturn:
    if _state["debug"]:
        # From the exception itself: the failure may have been caught long before (a stage's outcome).
        err.print(Traceback.from_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, TorchshipError):
        err.print(labelled("error:", "bold red", exc.message), highlight=False)
        if exc.details:
            err.print(exc.details, highlight=False, markup=False)
        if exc.hint:
            err.print(labelled("hint:", "yellow", exc.hint), highlight=False)
        raise typer.Exit(exc.exit_code)
    err.print(labelled("error:", "bold red", f"unexpected {type(exc).__name__}: {exc}"), highlight=False)
    if not _state["debug"]:
        err.print(labelled("hint:", "yellow", "re-run with --debug for the traceback"), highlight=False)
    raise typer.Exit(1)


@contextmanager
def reported(on_interrupt: str | None = None) -> Iterator[None]:
    """Every command's frame: a failure inside becomes the `error:` / `hint:` lines and its exit code (fail).
    `on_interrupt`: Ctrl-C exits 130 after printing it (nothing when empty); None lets Ctrl-C through."""
    try:
        yield
    except typer.Exit:  # click's Exit is an Exception too: a command's own exit passes unchanged
        raise
    except KeyboardInterrupt:
        if on_interrupt is None:
            raise
        if on_interrupt:
            err.print(on_interrupt)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        fail(exc)
