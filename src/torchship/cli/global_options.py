"""The options before the command: `torchship --debug ...`, `torchship --version`."""

from __future__ import annotations

from typing import Annotated

import typer

from torchship import __version__
from torchship.cli.console import out
from torchship.cli.failures import set_debug


def _print_version(value: bool) -> None:
    if value:
        out.print(f"torchship {__version__}", highlight=False)
        raise typer.Exit(0)


def global_options(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False,
    version: Annotated[
        bool,
        # Eager: handled while parsing, before click asks for a command ("Missing command.").
        typer.Option("--version", help="print the version and exit", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    set_debug(debug)
