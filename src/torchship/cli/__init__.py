"""The `torchship` command: thin — parse, call the runner, print. One module per command group; this one
registers them all, in the order `torchship --help` lists them."""

from __future__ import annotations

import os
import signal
import sys

import typer

from torchship.ci.commands import ci_app
from torchship.cli import diffing, image, init, kubernetes, pipeline, publishing, report, serving, tuning
from torchship.cli.failures import EXIT_INTERRUPTED
from torchship.cli.global_options import global_options

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Ship trained Hugging Face models to TorchServe."
)
app.callback()(global_options)
# Each group module holds its commands on its own nameless Typer: added here, they become top-level commands.
for group in (pipeline, init, report, publishing, diffing, serving, kubernetes, image, tuning):
    app.add_typer(group.commands)
app.add_typer(ci_app, name="ci")


def main() -> None:
    # Models come from local directories only; never let a library reach for the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # Ctrl-C must always reach us as KeyboardInterrupt so TorchServe is stopped cleanly: a parent that
    # started us with SIGINT ignored (nohup, some CI runners and test harnesses) would otherwise leave
    # `serve` deaf to it, since an ignored disposition survives exec and Python keeps it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
