"""`torchship tune`: serving configurations measured in a real TorchServe, the fastest within budget chosen
(issue 13)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from torchship.cli.arguments import SpecArg, load_spec
from torchship.cli.console import out, progress
from torchship.cli.failures import reported
from torchship.errors import TorchshipError
from torchship.settings import Settings

if TYPE_CHECKING:  # imported where used: `tune` pulls in the sweep machinery
    from torchship.tune.command import TuneOutcome
    from torchship.tune.plan import Engine
    from torchship.tune.records import Measurement

commands = typer.Typer()


def _print_tune_outcome(outcome: TuneOutcome, own: Engine) -> Measurement:
    """Where tune wrote its results and the configuration it chose (the measurement); none met the budget:
    TorchshipError."""
    result = outcome.result
    out.print(f"wrote {outcome.out_dir / 'tune.json'} and {outcome.out_dir / 'tune.html'}", highlight=False)
    if result.chosen is None:
        wanted = [] if result.budget_p95_ms is None else [f"the p95 budget of {result.budget_p95_ms:g} ms"]
        if result.max_tail_ratio is not None:
            wanted.append(f"p99 within {result.max_tail_ratio:g}x p50")
        raise TorchshipError(
            f"no configuration of the {len(result.measurements)} measured met "
            f"{' and '.join(wanted) or 'the bounds'} without failed requests",
            hint="Raise --budget-p95-ms or --max-tail-ratio, or see tune.html for what was measured.",
        )
    chosen = next(m for m in result.measurements if result.is_chosen(m))
    out.print(
        f"chosen: {chosen.candidate.label}: {chosen.throughput_rps:.1f} req/s, p95 {chosen.p95_ms:.0f} ms, "
        f"p99 {chosen.p99_ms:.0f} ms",
        highlight=False,
    )
    for status in result.backends:
        if status.refused:
            out.print(f"not measured: {status.engine.label}: {status.refused}", highlight=False, markup=False)
    unchanged = (
        " (unchanged)"
        if chosen.candidate.engine == own
        else " (another engine: `torchship run` compiles and gates it after pasting)"
    )
    out.print("paste into the spec:", highlight=False)
    out.print(f"  {outcome.serve_line}", highlight=False, markup=False)
    out.print(f"  {outcome.compile_line}{unchanged}", markup=False, highlight=False)
    return chosen


@commands.command()
def tune(
    spec_path: SpecArg,
    budget_p95_ms: Annotated[
        float | None,
        typer.Option(
            "--budget-p95-ms", help="p95 budget in ms (default: validate.latency_ms.p95, else none)"
        ),
    ] = None,
    minutes: Annotated[float, typer.Option(help="time bound for the whole sweep", min=0.1)] = 10.0,
    requests_file: Annotated[
        Path | None,
        typer.Option(
            "--requests-file",
            "--texts",  # its first name, from when every task took texts
            help="request bodies to send, one JSON body per line (text tasks: or one plain text per line);"
            " default: the spec's examples",
        ),
    ] = None,
    requests: Annotated[int, typer.Option(help="measured requests per configuration", min=16)] = 256,
    write: Annotated[
        bool,
        typer.Option("--write", help="write the chosen serve: values (and compile backend) into the spec"),
    ] = False,
    backends: Annotated[
        str | None,
        typer.Option(
            "--backends",
            help="compiled backends to compare besides the spec's, comma-separated (default: torchscript,onnx;"
            " 'spec' for the spec's alone); each is compiled and gated first",
        ),
    ] = None,
    precisions: Annotated[
        str | None,
        typer.Option(
            "--precisions",
            help="numeric precisions to try per backend, comma-separated (default: every one this machine"
            " builds: fp32, bf16 where the CPU has it natively, int8-dynamic, int8-static); a reduced one is"
            " packaged only if the gate's task-level precision check passes",
        ),
    ] = None,
    max_tail_ratio: Annotated[
        float,
        typer.Option(
            "--max-tail-ratio",
            help="the chosen configuration's p99 at most this many times its p50 (0: no bound)",
            min=0,
        ),
    ] = 2.0,
) -> None:
    """Sweep engine (backend × precision) × workers × threads × batch size × batch delay in a real
    TorchServe; pick the fastest within the p95 budget and the p99 bound."""
    from torchship.tune.backends import spec_engine
    from torchship.tune.command import run_tune
    from torchship.tune.spec_edit import write_tuned

    with reported(on_interrupt="[red]interrupted[/]: TorchServe stopped; tune outputs left as they were"):
        spec = load_spec(spec_path)
        outcome = run_tune(
            spec,
            Settings(),
            budget_p95_ms=budget_p95_ms,
            minutes=minutes,
            requests_file=requests_file,
            requests=requests,
            progress=progress,
            backends=_comma_list(backends),
            precisions=_comma_list(precisions),
            max_tail_ratio=max_tail_ratio or None,
        )
        chosen = _print_tune_outcome(outcome, spec_engine(spec))
        if write:
            for line in write_tuned(spec.spec_path, chosen.config, chosen.candidate.engine):
                out.print(f"wrote {line} into {spec.spec_path}", highlight=False, markup=False)
            out.print("(other lines unchanged)", highlight=False)


def _comma_list(option: str | None) -> list[str] | None:
    """--backends / --precisions: None (the defaults), 'spec' (none besides the spec's) or a comma list."""
    if option is None:
        return None
    names = [name.strip() for name in option.split(",") if name.strip()]
    return [] if names == ["spec"] else names
