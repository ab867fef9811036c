"""`torchship diff`: what changes for users between the spec's version and another one (published, or the
one a stage alias points at); `torchship history`: who promoted what, when and why."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from torchship.cli.arguments import EnvOpt, SpecArg, load_spec
from torchship.cli.console import RichReporter, err, out, progress
from torchship.cli.failures import reported
from torchship.cli.publishing import UriOpt, _registry, publish_uri
from torchship.errors import TorchshipError
from torchship.settings import Settings

commands = typer.Typer()


@commands.command()
def diff(
    spec_path: SpecArg,
    against: Annotated[
        str,
        typer.Option(help="the version to compare with: a published version or a stage alias (production)"),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="where diff.json and diff.html go (default outputs/<name>/<version>/diff/against-<v>)",
        ),
    ] = None,
    env: EnvOpt = None,
) -> None:
    """Serve the spec's verified version and another one in one local TorchServe, on the examples and
    diff.jsonl, and report what changed for users: per task (flips, entities, vector compatibility, rankings,
    answers), latency side by side. Exits 1 when a promote limit of the spec is broken."""
    from torchship.diff.output import summary_lines, write_diff
    from torchship.diff.run import run_diff
    from torchship.diff.versions import local_version, published_version, resolve_version
    from torchship.pipeline import Runner
    from torchship.stages import STAGES
    from torchship.storage.s3 import client_from_settings

    with reported():
        spec = load_spec(spec_path, env)
        settings = Settings()
        runner = Runner(spec, settings, STAGES, RichReporter(err))
        new = local_version(spec, runner)
        uri = publish_uri(settings, spec.publish.uri)
        client = client_from_settings(settings)
        registry = _registry(spec.publish.registry, client, uri, spec)
        version, named = resolve_version(registry, client, uri, spec.name, against)
        with tempfile.TemporaryDirectory(prefix="torchship-diff-") as tmp:
            progress(f"pulling {spec.name} {version} ({named}) from {uri}")
            old = published_version(client, uri, spec.name, version, named, Path(tmp))
            record = run_diff(spec, settings, old, new, progress)
        folder = out_dir or settings.stage_root(spec.name, spec.version) / "diff" / f"against-{version}"
        write_diff(record, folder)
    for line in summary_lines(record):
        out.print(line, highlight=False)
    out.print(f"diff.json and diff.html in {folder}", highlight=False)
    if record.breaches:
        raise typer.Exit(1)


@commands.command()
def history(
    name: Annotated[str, typer.Argument(help="model name")],
    uri: UriOpt = None,
    registry: Annotated[str, typer.Option(help="s3 (the registry that keeps a history)")] = "s3",
) -> None:
    """Every promotion of NAME, oldest first: stage, version, who, when, why, and what the diff found."""
    from torchship.storage.s3 import client_from_settings

    with reported():
        settings = Settings()
        location = publish_uri(settings, None, uri)
        entries = _registry(registry, client_from_settings(settings), location).history(name)
        if not entries:
            raise TorchshipError(
                f"no promotion of {name} is recorded under {location}",
                hint="Promotions are recorded by `torchship promote` (s3 registry).",
            )
    for e in entries:
        moved = f"{e.previous} → {e.version}" if e.previous else f"→ {e.version}"
        out.print(f"{e.at}  {e.stage:<10} {moved:<20} {e.decision:<8} by {e.who}", highlight=False)
        if e.reason:
            out.print(f"    reason: {e.reason}", highlight=False)
        if e.diff is not None:
            measures = ", ".join(
                f"{k} {'n/a' if v is None else f'{v:.3g}'}" for k, v in e.diff.measures.items()
            )
            out.print(
                f"    diff against {e.diff.against} on {e.diff.inputs} inputs: {measures}", highlight=False
            )
            for breach in e.diff.breaches:
                out.print(f"    breach: {breach}", highlight=False)
