"""`torchship diff`: what changes for users between the spec's version and another one (published, or the
one a stage alias points at); `torchship history`: who promoted what, when and why."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from torchship.cli.arguments import EnvOpt, SpecArg, load_spec
from torchship.cli.console import RichReporter, err, out, progress
from torchship.cli.failures import reported
from torchship.cli.publishing import UriOpt, _registry, publish_uri
from torchship.diff.output import summary_lines, write_diff
from torchship.diff.record import DiffRecord
from torchship.errors import TorchshipError
from torchship.settings import Settings
from torchship.spec import ModelSpec

commands = typer.Typer()


@commands.command()
def diff(
    spec_path: SpecArg,
    against: Annotated[
        str | None,
        typer.Option(help="the version to compare with: a published version or a stage alias (production)"),
    ] = None,
    live: Annotated[
        tuple[str, str] | None,
        typer.Option(help="STABLE_URL CANARY_URL: compare two live endpoints instead (inference base URLs)"),
    ] = None,
    replay: Annotated[
        Path | None, typer.Option(help="with --live: the requests to replay, one JSON body per line")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="with --live: the inference token (default: TORCHSHIP_INFERENCE_TOKEN)", show_default=False
        ),
    ] = None,
    canary_token: Annotated[
        str | None,
        typer.Option(help="with --live: the canary's token when it differs from --token", show_default=False),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="where diff.json and diff.html go (default outputs/<name>/<version>/diff/...)"
        ),
    ] = None,
    env: EnvOpt = None,
) -> None:
    """Serve the spec's verified version and another one in one local TorchServe, on the examples and
    diff.jsonl, and report what changed for users: per task (flips, entities, vector compatibility, rankings,
    answers), latency side by side. With --live STABLE CANARY --replay FILE, replay real requests against a
    running stable and canary instead. Exits 1 when a promote limit of the spec is broken."""
    with reported():
        spec = load_spec(spec_path, env)
        settings = Settings()
        if (against is None) == (live is None):
            raise TorchshipError(
                "diff needs exactly one of --against VERSION|STAGE and --live STABLE_URL CANARY_URL",
                hint=f"e.g. torchship diff {spec_path} --against production",
            )
        if live is not None:
            tokens = (token or os.environ.get("TORCHSHIP_INFERENCE_TOKEN"), canary_token)
            record, folder = _live_diff(spec, settings, live, replay, tokens, out_dir)
        else:
            assert against is not None
            record, folder = _published_diff(spec, settings, against, out_dir)
    for line in summary_lines(record):
        out.print(line, highlight=False)
    out.print(f"diff.json and diff.html in {folder}", highlight=False)
    if record.breaches:
        raise typer.Exit(1)


def _published_diff(
    spec: ModelSpec, settings: Settings, against: str, out_dir: Path | None
) -> tuple[DiffRecord, Path]:
    from torchship.diff.run import run_diff
    from torchship.diff.versions import local_version, published_version, resolve_version
    from torchship.pipeline import Runner
    from torchship.stages import STAGES
    from torchship.storage.s3 import client_from_settings

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
    return record, write_diff(record, folder)


def _live_diff(
    spec: ModelSpec,
    settings: Settings,
    urls: tuple[str, str],
    replay: Path | None,
    tokens: tuple[str | None, str | None],
    out_dir: Path | None,
) -> tuple[DiffRecord, Path]:
    from torchship.diff.inputs import one_answer_problem
    from torchship.diff.live import replay_live
    from torchship.diff.record import VersionRef
    from torchship.diff.run import Compared, build_record
    from torchship.tasks import task_definition

    if replay is None:
        raise TorchshipError(
            "--live needs --replay FILE: the requests to send to both endpoints",
            hint="Capture real requests as JSON lines, one request body per line.",
        )
    definition = task_definition(spec.task)
    stable_url, canary_url = urls
    progress(f"replaying {replay} against {stable_url} (stable) and {canary_url} (canary)")
    answers = replay_live(
        stable_url, canary_url, spec.name, replay, clients=spec.promote.clients,
        token=tokens[0], canary_token=tokens[1],
        check_body=lambda body: one_answer_problem(definition, body),
    )  # fmt: skip
    for skipped in answers.skipped:
        progress(f"skipped {skipped.where}: {skipped.reason}")
    compared = Compared(
        [str(replay)], answers.requests, answers.stable, answers.canary, answers.latency, answers.skipped
    )
    record = build_record(
        spec,
        VersionRef(version="stable", origin=stable_url),
        VersionRef(version="canary", origin=canary_url),
        compared,
    )
    folder = out_dir or settings.stage_root(spec.name, spec.version) / "diff" / "live"
    return record, write_diff(record, folder)


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
