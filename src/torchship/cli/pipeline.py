"""The pipeline's commands: `run` (every stage) and one command per stage (fetch, compile, validate, package,
verify); a stage whose inputs are unchanged is skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from torchship.cli.arguments import ForceOpt, SpecArg, load_spec
from torchship.cli.console import RichReporter, err, out
from torchship.cli.failures import fail, reported, usage_error
from torchship.examples import example_label
from torchship.pipeline import Runner, StageOutcome
from torchship.settings import Settings
from torchship.stages import STAGE_NAMES, STAGES

commands = typer.Typer()


def _summary(outcomes: list[StageOutcome]) -> Table:
    table = Table(title="torchship run", show_lines=False)
    for column in ("stage", "status", "seconds", "result"):
        table.add_column(column)
    for o in outcomes:
        style = {"ran": "green", "skipped": "cyan", "failed": "red"}[o.status]
        table.add_row(o.stage, f"[{style}]{o.status}[/]", f"{o.duration_s:.1f}", o.summary)
    return table


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _request_label(body: Any) -> str:
    """A one-text request shows as its text (quoted); any other request as its JSON body, shortened."""
    if isinstance(body, dict) and set(body) == {"text"} and isinstance(body["text"], str):
        return repr(body["text"][:60])
    return example_label(body)


def _print_served(record: dict[str, Any]) -> None:
    details = record.get("details", {})
    for item in details.get("preview", []):
        if item.get("dims"):
            values = ", ".join(f"{v:+.4f}" for v in item["result"])
            shown = f"[{values}, … ({item['dims']} dims)]"
        else:
            shown = json.dumps(_rounded(item["result"]), ensure_ascii=False)
        out.print(f"  {_request_label(item['request'])}\n    → {shown}", highlight=False, markup=False)
    parity = details.get("parity", {})
    if parity:
        verdict = "ok" if parity.get("ok") else "FAILED"
        out.print(
            f"parity: {verdict} (served vs source, max |Δ| {parity['max_abs']:.2e} over {parity['compared']} "
            f"results; atol {parity['atol']}, rtol {parity['rtol']})",
            highlight=False,
        )


def _run(spec_path: Path, names: list[str], force: bool) -> list[StageOutcome]:
    with reported(on_interrupt="[red]interrupted[/]: stopped; no stage output was left half-written"):
        spec = load_spec(spec_path)
        settings = Settings()
        runner = Runner(spec, settings, STAGES, RichReporter(err))
        err.print(f"[bold]{spec.name}[/] {spec.version} ({spec.task}) → {runner.root}", highlight=False)
        outcomes = runner.run(names, force=force)
    err.print(_summary(outcomes))
    verify = next((o for o in outcomes if o.stage == "verify" and o.status != "failed"), None)
    if verify is not None:
        out.print(f"served results ({spec.task}):")
        _print_served(verify.record)
    failed = outcomes[-1].error if outcomes and outcomes[-1].status == "failed" else None
    if failed is not None:
        fail(failed)
    return outcomes


@commands.command()
def run(
    spec: SpecArg,
    until: Annotated[str | None, typer.Option(help=f"last stage to run: {', '.join(STAGE_NAMES)}")] = None,
    force: ForceOpt = False,
) -> None:
    """Run every stage (fetch → compile → validate → package → verify), skipping unchanged ones."""
    if until is not None and until not in STAGE_NAMES:
        usage_error(f"--until {until!r} is not a stage; choose one of: {', '.join(STAGE_NAMES)}")
    last = STAGE_NAMES.index(until) if until else len(STAGE_NAMES) - 1
    _run(spec, STAGE_NAMES[: last + 1], force)


def _stage_command(name: str, help_text: str) -> None:
    def command(spec: SpecArg, force: ForceOpt = False) -> None:
        _run(spec, [name], force)

    command.__doc__ = help_text
    commands.command(name=name)(command)


for _stage in STAGES:
    _stage_command(_stage.name, f"Run only the {_stage.name} stage: {_stage.description}.")
