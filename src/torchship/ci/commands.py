"""`torchship ci ...`: the CI helpers a buildspec calls. Results go to stdout (or the files named), the
reasons to stderr, failures through the main command's error lines and exit codes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

ci_app = typer.Typer(
    no_args_is_help=True,
    help="CI helpers for a buildspec: which model specs a push ships, the pushed images' details.",
)


@contextmanager
def _reported() -> Iterator[None]:
    # The main command's frame (error:/hint: lines, exit codes); imported when a command runs, since
    # torchship.cli registers this sub-app while it is itself being imported.
    from torchship.cli.failures import reported

    with reported():
        yield


def _say(message: str, *, stderr: bool = False) -> None:
    typer.echo(message, err=stderr)


@ci_app.command("changed-specs")
def changed_specs_command(
    models_dir: Annotated[
        Path, typer.Option("--models-dir", help="the folder holding <name>/model.yaml, relative to the cwd")
    ] = Path("models"),
    all_models: Annotated[
        bool, typer.Option("--all", help="every model, whatever changed (as TORCHSHIP_ALL_MODELS=1)")
    ] = False,
) -> None:
    """Print the model specs this push ships, one per line: those whose folder or local source changed
    since TORCHSHIP_PREVIOUS_COMMIT (default HEAD~1); every spec on --all, a manual build, no previous commit,
    or a change that belongs to no model. Example: torchship ci changed-specs > changed-specs.txt"""
    from torchship.ci.changed_specs import Trigger, changed_specs

    with _reported():
        result = changed_specs(models_dir, Trigger.from_environ(os.environ, all_models), Path.cwd())
    _say(f"{len(result.specs)} model(s) to ship; {result.reason}", stderr=True)
    for spec in result.specs:
        _say(spec.as_posix())


@ci_app.command("image-detail")
def image_detail_command(
    specs_file: Annotated[
        Path, typer.Argument(help="the specs that shipped, as `torchship ci changed-specs` printed them")
    ],
) -> None:
    """Write imageDetail.json and image-digests.txt in the cwd from each spec's pushed image record.
    Example: torchship ci image-detail changed-specs.txt"""
    from torchship.ci.image_detail import pushed_images, read_specs_file, write_image_detail
    from torchship.settings import Settings

    with _reported():
        images = pushed_images(read_specs_file(specs_file), Settings())
        write_image_detail(images, Path.cwd())
    _say(f"{len(images)} image(s): " + ", ".join(image.digest_line() for image in images))
