"""What the commands print: results on stdout; progress, stage lines and errors on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.status import Status
from rich.text import Text

from torchship.pipeline import StageOutcome

# Styles render on a terminal; elsewhere (CI logs, pipes) rich writes the same text without them. Messages
# are never parsed as markup (they quote user input), only the fixed labels are styled.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def labelled(label: str, style: str, message: str) -> Text:
    return Text.assemble((label, style), " ", message)


def progress(message: str) -> None:
    """A long command's step, dimmed on stderr (stdout keeps only the result)."""
    err.print(Text(f"  … {message}", style="dim"), highlight=False)


class RichReporter:
    def __init__(self, console: Console):
        self.console = console
        self._status: Status | None = None

    def stage_started(self, stage: str, description: str) -> None:
        self._status = self.console.status(f"[bold]{stage}[/]: {description}")
        self._status.start()

    def progress(self, message: str) -> None:
        if self._status is not None:
            self._status.update(f"[bold]{message}")
        self.console.print(Text(f"  … {message}", style="dim"), highlight=False)

    def stage_finished(self, outcome: StageOutcome) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        mark = {
            "ran": "[green]✓ ran[/]",
            "skipped": "[cyan]= skipped (inputs unchanged)[/]",
            "failed": "[red]✗ failed[/]",
        }[outcome.status]
        self.console.print(
            f"[bold]{outcome.stage:<9}[/] {mark} {outcome.duration_s:6.1f}s  {outcome.summary}",
            highlight=False,
        )
