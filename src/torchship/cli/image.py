"""`torchship image`: build the verified .mar into an image, run it, check served parity, push (issue 10);
--context writes the build context instead."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from torchship.cli.arguments import SpecArg, load_spec
from torchship.cli.console import err, out, progress
from torchship.cli.failures import reported, usage_error
from torchship.settings import Settings

commands = typer.Typer()


@commands.command()
def image(
    spec_path: SpecArg,
    base_image: Annotated[
        str | None,
        typer.Option(
            "--base-image",
            help="the base image (default: debian:bookworm-slim; AWS's Neuron image for compile.backend: neuron)",
        ),
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", help="image tag (default: VERSION-<12 hex of the .mar sha256>)")
    ] = None,
    push: Annotated[
        str | None,
        typer.Option(
            "--push", help="repository to push to, e.g. ECR's ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME"
        ),
    ] = None,
    context_dir: Annotated[
        Path | None,
        typer.Option(
            "--context",
            help="write the complete build context to this new or empty directory and stop (no build)",
        ),
    ] = None,
) -> None:
    """Build the image of a verified model, run it on loopback, re-check served parity, record image.json."""
    from torchship.image.ship import ImageRequest, ship_image

    if context_dir is not None:
        if push is not None:
            usage_error("--context builds nothing, so it cannot --push")
        _write_image_context(spec_path, context_dir, tag, base_image)
        return
    with reported(
        on_interrupt="[red]interrupted[/]: the build directory was removed; no image.json was written"
    ):
        spec = load_spec(spec_path)
        settings = Settings()
        err.print(f"[bold]{spec.name}[/] {spec.version}: image", highlight=False)
        record = ship_image(
            spec, settings, ImageRequest(base_image=base_image, tag=tag, push=push),
            progress=progress,
        )  # fmt: skip
    parity = record.served_parity
    out.print(
        f"image {record.reference} · {record.size_bytes / 1e9:.2f} GB · built in {record.build_s:.0f} s · "
        f"ready in {record.time_to_ready_s:.1f} s · parity {'ok' if parity.ok else 'FAILED'} "
        f"(max|Δ| {parity.max_abs:.2e} over {parity.compared} results)",
        highlight=False,
    )
    if record.pushed:
        out.print(f"pushed {record.pushed}", highlight=False)
    out.print(
        f"record: {settings.stage_root(spec.name, spec.version) / 'image' / 'image.json'}", highlight=False
    )


def _write_image_context(spec_path: Path, directory: Path, tag: str | None, base_image: str | None) -> None:
    from torchship.image.export import build_command, write_context
    from torchship.image.ship import default_tag

    with reported():
        spec = load_spec(spec_path)
        context = write_context(spec, Settings(), directory, progress=progress)
    image_tag = tag or default_tag(spec, context.build_args["MAR_SHA256"])
    out.print(
        f"wrote the build context of {spec.name} {spec.version} to {context.directory}", highlight=False
    )
    out.print("build it with:", highlight=False)
    command = build_command(context, f"{spec.name}:{image_tag}", base_image)
    out.print(f"  {command}", highlight=False, markup=False)
