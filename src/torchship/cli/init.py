"""`torchship init`: scaffold a repository that ships its own model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from torchship.cli.console import out
from torchship.cli.failures import reported
from torchship.scaffold.help_text import INIT_EXAMPLES

commands = typer.Typer()


@commands.command(name="init", epilog=INIT_EXAMPLES)
def init_command(
    model: Annotated[
        Path, typer.Option("--model", help="the folder save_pretrained wrote", show_default=False)
    ],
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="the repository root")] = Path("."),
    task: Annotated[str | None, typer.Option(help="default: what the checkpoint's config.json says")] = None,
    name: Annotated[
        str | None, typer.Option(help="default: the model folder's name, made a valid one")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="overwrite files you changed or torchship did not write")
    ] = False,
) -> None:
    """Scaffold a repository that ships its own model: spec, settings, buildspec, pipeline."""
    from torchship.scaffold.repository import InitRequest, init_repository
    from torchship.scaffold.summary import file_lines, next_steps

    with reported():
        outcome = init_repository(InitRequest(directory, model, task=task, name=name, force=force))
    out.print(f"{outcome.name} ({outcome.task}) in {outcome.repo}:", highlight=False)
    for line in [*file_lines(outcome), "", "next:", *next_steps(outcome, Path.cwd())]:
        out.print(line, highlight=False, markup=False)
