"""`torchship serve`: TorchServe in the foreground with one model, and how to call it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from torchship.cli.arguments import load_spec
from torchship.cli.console import RichReporter, err, out
from torchship.cli.failures import EXIT_INTERRUPTED, reported
from torchship.pipeline import Runner
from torchship.settings import Settings
from torchship.stages import STAGES

commands = typer.Typer()


def _print_how_to_call(server: Any, name: str) -> None:
    """The URL, a fresh token and a curl line that works as printed."""
    url = f"{server.inference_url}/predictions/{name}"
    out.print(f"[bold green]serving[/] {name} at {url}")
    token = server.fresh_token("inference")  # a slow start may have outlived a short token lifetime
    out.print(f"token: {token}  (keys: {server.key_file})", highlight=False)
    out.print("try:", highlight=False)
    out.print(
        f"  curl -s {url} -H 'Authorization: Bearer {token}' "
        "-H 'Content-Type: application/json' -d '{\"text\": \"Hello, world\"}'",
        highlight=False,
        soft_wrap=True,
    )
    expires = server.tokens()["inference"].expires
    if expires is not None:
        out.print(
            f"the token expires at {expires:%Y-%m-%d %H:%M:%S} UTC (TORCHSHIP_TOKEN_EXPIRATION_MIN); "
            "a new one is printed then",
            highlight=False,
        )
    out.print("Ctrl-C stops TorchServe (so do SIGTERM and SIGHUP).")


@commands.command()
def serve(
    target: Annotated[Path, typer.Argument(help="a model spec (serves its packaged .mar) or a .mar file")],
    port: Annotated[
        int | None, typer.Option(help="inference port on 127.0.0.1 (default: a free one)")
    ] = None,
) -> None:
    """Run TorchServe in the foreground with the model; prints the URL and how to call it."""
    from torchship.archiver.package import mar_path
    from torchship.serving.torchserve import TorchServe

    with reported(on_interrupt=""):
        settings = Settings()
        policy = None  # a bare .mar: the environment's OMP_WAIT_POLICY, else passive
        if target.suffix == ".mar":
            mar, name = target, target.stem
        else:
            spec = load_spec(target)
            # Only the package the current spec makes, not one kept from before a failed or edited run.
            Runner(spec, settings, STAGES, RichReporter(err)).require_current("package")
            mar, name = mar_path(settings.stage_root(spec.name, spec.version) / "package", spec), spec.name
            policy = spec.serve.omp_wait_policy
        server = TorchServe({name: mar}, settings, port=port, omp_wait_policy=policy)
        err.print(f"starting TorchServe with {mar} …")
        server.start()
    try:
        _print_how_to_call(server, name)
        server.run_until_exit(
            lambda renewed: out.print(
                f"new token: {renewed.key}  (the old one expired; this one until {renewed.expires:%H:%M:%S} UTC)",
                highlight=False,
            )
        )
        err.print("[red]TorchServe exited[/]")
        err.print(server.telling_log_lines(), markup=False, highlight=False)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        err.print("stopping TorchServe …")
        server.stop()
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        server.stop()
