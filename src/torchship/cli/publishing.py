"""Publishing commands: `publish` a verified version to S3 (and its registry), `promote` a stage alias to it,
`pull` it back with every file checked, `unpublish` it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from torchship.cli.arguments import EnvOpt, SpecArg, load_spec
from torchship.cli.console import RichReporter, err, out
from torchship.cli.failures import reported
from torchship.diff.errors import PromotionRefused
from torchship.errors import TorchshipError
from torchship.pipeline import Runner
from torchship.publish.registries.base import check_stage
from torchship.settings import Settings
from torchship.stages import STAGES

commands = typer.Typer()


def publish_uri(settings: Settings, spec_uri: str | None, flag: str | None = None) -> str:
    """Where versions are published: --uri, else TORCHSHIP_PUBLISH_URI, else the spec's publish.uri."""
    uri = flag or settings.publish_uri or spec_uri
    if not uri:
        raise TorchshipError(
            "no publish location: set publish.uri in the spec, TORCHSHIP_PUBLISH_URI, or pass --uri",
            hint="The location is s3://BUCKET/PREFIX; versions go to s3://BUCKET/PREFIX/<name>/<version>/.",
        )
    return uri


def _registry(kind: str, client, uri: str, spec=None):
    from torchship.publish import make_registry

    neptune = spec.publish.neptune if spec is not None else None
    return make_registry(
        kind, client=client, uri=uri, project=neptune.project if neptune else None,
        mode=neptune.mode if neptune else "async",
    )  # fmt: skip


@contextmanager
def _upload_bars() -> Iterator[Callable[[int, int, str], None]]:
    """A progress(done, total, filename) callback drawing one transient bar per uploaded file on stderr."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(done: int, total: int, filename: str) -> None:
            if filename not in tasks:
                tasks[filename] = bar.add_task(filename, total=total)
            bar.update(tasks[filename], completed=done)

        yield progress


@commands.command()
def publish(spec_path: SpecArg, env: EnvOpt = None) -> None:
    """Upload the validated .mar, its config, report and manifest to S3 and register the version."""
    from torchship.publish import publish as publish_version
    from torchship.publish import verified_files
    from torchship.storage.s3 import client_from_settings

    with reported():
        spec = load_spec(spec_path, env)
        settings = Settings()
        uri = publish_uri(settings, spec.publish.uri)
        runner = Runner(spec, settings, STAGES, RichReporter(err))
        with runner.lock():  # no run may replace the outputs while they are uploaded
            runner.require_current("verify")  # only what passed the whole gate, served parity included
            root = settings.stage_root(spec.name, spec.version)
            client = client_from_settings(settings)
            registry = _registry(spec.publish.registry, client, uri, spec)
            with _upload_bars() as progress:
                result = publish_version(
                    root / "package", root / "validate", uri, client, progress=progress, registry=registry,
                    multipart_threshold=settings.multipart_threshold_mb * 1024 * 1024,
                    verified=verified_files(root, spec.name),  # a .mar swapped after verify is refused
                    spec_path=spec_path, answers_dir=root / "verify",
                )  # fmt: skip
    out.print(result.message, highlight=False)


@commands.command()
def promote(
    spec_path: SpecArg,
    stage: Annotated[str, typer.Option(help="staging or production")],
    version: Annotated[str | None, typer.Option(help="the version to promote (default: the spec's)")] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="remove the stage alias instead of moving it")
    ] = False,
    accept_diff: Annotated[
        bool, typer.Option("--accept-diff", help="promote even when the diff breaks a promote limit")
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="why a broken limit is accepted (recorded in the history)")
    ] = None,
    env: EnvOpt = None,
) -> None:
    """Point a stage alias (staging, production) at a complete published version, atomically. With promote
    limits in the spec, the version is first diffed against the one the stage points at (`torchship diff`)
    and a broken limit refuses the promotion unless --accept-diff --reason says why. Every promotion is
    recorded in the registry's history (`torchship history NAME`)."""
    from torchship.cli.console import progress
    from torchship.diff.output import summary_lines
    from torchship.diff.promotion import gated_promote
    from torchship.publish import read_manifest
    from torchship.storage.s3 import client_from_settings

    with reported():
        spec = load_spec(spec_path, env)
        settings = Settings()
        uri = publish_uri(settings, spec.publish.uri)
        client = client_from_settings(settings)
        registry = _registry(spec.publish.registry, client, uri, spec)
        if clear:
            was = registry.clear_alias(spec.name, stage)
            out.print(
                f"{spec.name}: {stage} cleared (was {was})" if was else f"{spec.name}: {stage} was not set",
                highlight=False,
            )
            return
        if reason is not None and not accept_diff:
            raise TorchshipError(
                "--reason goes with --accept-diff", hint="Add --accept-diff, or leave --reason out."
            )
        version = version or spec.version
        if read_manifest(client, uri, spec.name, version) is None:
            raise TorchshipError(
                f"{spec.name} {version} is not a complete published version under {uri}",
                hint=f"Publish it first: torchship publish {spec_path}",
            )
        try:
            done = gated_promote(
                spec, settings, registry, client, uri, check_stage(stage), version,
                accept_reason=(reason or "") if accept_diff else None, progress=progress,
            )  # fmt: skip
        except PromotionRefused as refused:
            for line in summary_lines(refused.record):
                err.print(line, highlight=False)
            raise
    if done.diff is not None:
        for line in summary_lines(done.diff):
            err.print(line, highlight=False)
        err.print(f"diff saved in {done.diff_dir}", highlight=False)
    elif done.why_no_diff:
        err.print(f"no diff: {done.why_no_diff}", highlight=False)
    moved = f" (was {done.previous})" if done.previous else ""
    accepted = " — limits broken, accepted with a reason" if done.decision == "accepted" else ""
    recorded = "; recorded in the history" if done.recorded else ""
    out.print(f"{spec.name}: {stage} → {version}{moved}{accepted}{recorded}", highlight=False)


UriOpt = Annotated[str | None, typer.Option(help="s3://BUCKET/PREFIX (default: TORCHSHIP_PUBLISH_URI)")]


@commands.command()
def pull(
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[str, typer.Argument(help="model version")],
    to: Annotated[Path, typer.Option("--to", help="directory to create")],
    uri: UriOpt = None,
) -> None:
    """Download a published version and check the sha256 of every file against its manifest."""
    from torchship.publish import pull as pull_version
    from torchship.storage.s3 import client_from_settings

    with reported():
        settings = Settings()
        dest = pull_version(
            publish_uri(settings, None, uri), name, version, to, client_from_settings(settings)
        )
    out.print(f"pulled {name} {version} to {dest} (every file's sha256 verified)", highlight=False)


@commands.command()
def unpublish(
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[str, typer.Argument(help="model version")],
    uri: UriOpt = None,
    registry: Annotated[str, typer.Option(help="s3, neptune or none")] = "s3",
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Remove a published version, unless a stage alias points at it."""
    from torchship.publish import unpublish as unpublish_version
    from torchship.storage.s3 import client_from_settings

    with reported():
        settings = Settings()
        location = publish_uri(settings, None, uri)
        if not yes and not typer.confirm(f"Remove {name} {version} from {location}?", err=True):
            err.print("nothing removed")
            raise typer.Exit(1)
        client = client_from_settings(settings)
        result = unpublish_version(location, name, version, client, _registry(registry, client, location))
    out.print(f"removed {name} {version} ({len(result.deleted)} objects)", highlight=False)
