"""The arguments most commands take, and the spec they name as every command loads it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from torchship.project import chosen_environment, load_effective_spec
from torchship.settings import Settings
from torchship.spec import ModelSpec

SpecArg = Annotated[Path, typer.Argument(help="model spec (models/<name>/model.yaml)", show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="re-run even if inputs are unchanged")]
EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env", help="environment of torchship.toml to use (default: TORCHSHIP_ENV)", show_default=False
    ),
]


def load_spec(spec_path: Path, env: str | None = None) -> ModelSpec:
    """The spec every command works on: the file, with torchship.toml and the environment laid over it."""
    return load_effective_spec(spec_path, chosen_environment(env, Settings()))
