"""`torchship report`: the validation gate's summary and where its HTML report is; exit 3 when it refused."""

from __future__ import annotations

import typer

from torchship.cli.arguments import SpecArg, load_spec
from torchship.cli.console import out
from torchship.cli.failures import reported
from torchship.errors import TorchshipError
from torchship.settings import Settings

commands = typer.Typer()


@commands.command()
def report(spec_path: SpecArg) -> None:
    """Print the validation gate's summary and the path of its HTML report."""
    from torchship.validate.gate import FAILED_DIR
    from torchship.validate.records import REPORT_HTML, REPORT_JSON, read_report
    from torchship.validate.report import summary_lines

    with reported():
        spec = load_spec(spec_path)
        root = Settings().stage_root(spec.name, spec.version)
        # The most complete report first: verify adds the served checks to validate's.
        candidates = [root / "verify", root / "verify-failed", root / "validate", root / FAILED_DIR]
        found = next((d for d in candidates if (d / REPORT_JSON).is_file()), None)
        if found is None:
            raise TorchshipError(
                f"no validation report for {spec.name} {spec.version} under {root}",
                hint=f"Run `torchship validate {spec_path}` (or `torchship run {spec_path}`) first.",
            )
        try:
            gate = read_report(found / REPORT_JSON)
        except ValueError as exc:  # pydantic's ValidationError: not JSON, or not a gate report
            raise TorchshipError(
                f"{found / REPORT_JSON} is not a readable gate report: {str(exc).splitlines()[0]}",
                hint=f"Run `torchship validate {spec_path}` again to write a fresh one.",
            ) from None
    for line in summary_lines(gate):
        out.print(line, highlight=False, markup=False)
    out.print(f"report: {found / REPORT_HTML}", highlight=False)
    raise typer.Exit(0 if gate.verdict == "pass" else 3)
