"""The `torchship` command: thin — parse, call the runner, print."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text
from rich.traceback import Traceback

from torchship import __version__
from torchship.ci.commands import ci_app
from torchship.errors import TorchshipError
from torchship.pipeline import Runner, StageOutcome
from torchship.project import chosen_environment, load_effective_spec
from torchship.scaffold.help_text import INIT_EXAMPLES
from torchship.settings import Settings
from torchship.spec import ModelSpec
from torchship.stages import STAGE_NAMES, STAGES

if TYPE_CHECKING:  # imported where used: `tune` pulls in the sweep machinery
    from torchship.tune.command import TuneOutcome
    from torchship.tune.records import Measurement

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Ship trained Hugging Face models to TorchServe."
)
app.add_typer(ci_app, name="ci")
# Styles render on a terminal; elsewhere (CI logs, pipes) rich writes the same text without them. Messages
# are never parsed as markup (they quote user input), only the fixed labels are styled.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_state = {"debug": False}

# Exit codes (README: CLI): 2 a bad spec or command line, 3 the validation gate refused the model (source
# checkpoint, parity, metrics, served parity), 1 any other failure, 130 interrupted (Ctrl-C).
EXIT_INTERRUPTED = 130


def _labelled(label: str, style: str, message: str) -> Text:
    return Text.assemble((label, style), " ", message)


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


def _fail(exc: BaseException) -> NoReturn:
    if _state["debug"]:
        # From the exception itself: the failure may have been caught long before (a stage's outcome).
        err.print(Traceback.from_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, TorchshipError):
        err.print(_labelled("error:", "bold red", exc.message), highlight=False)
        if exc.details:
            err.print(exc.details, highlight=False, markup=False)
        if exc.hint:
            err.print(_labelled("hint:", "yellow", exc.hint), highlight=False)
        raise typer.Exit(exc.exit_code)
    err.print(_labelled("error:", "bold red", f"unexpected {type(exc).__name__}: {exc}"), highlight=False)
    if not _state["debug"]:
        err.print(_labelled("hint:", "yellow", "re-run with --debug for the traceback"), highlight=False)
    raise typer.Exit(1)


@contextmanager
def _reported(on_interrupt: str | None = None) -> Iterator[None]:
    """Every command's frame: a failure inside becomes the `error:` / `hint:` lines and its exit code (_fail).
    `on_interrupt`: Ctrl-C exits 130 after printing it (nothing when empty); None lets Ctrl-C through."""
    try:
        yield
    except typer.Exit:  # click's Exit is an Exception too: a command's own exit passes unchanged
        raise
    except KeyboardInterrupt:
        if on_interrupt is None:
            raise
        if on_interrupt:
            err.print(on_interrupt)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        _fail(exc)


def _progress(message: str) -> None:
    """A long command's step, dimmed on stderr (stdout keeps only the result)."""
    err.print(Text(f"  … {message}", style="dim"), highlight=False)


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


def _print_served(record: dict[str, Any]) -> None:
    details = record.get("details", {})
    for item in details.get("preview", []):
        if item.get("dims"):
            values = ", ".join(f"{v:+.4f}" for v in item["result"])
            shown = f"[{values}, … ({item['dims']} dims)]"
        else:
            shown = json.dumps(_rounded(item["result"]), ensure_ascii=False)
        out.print(f"  {item['text'][:60]!r}\n    → {shown}", highlight=False, markup=False)
    parity = details.get("parity", {})
    if parity:
        verdict = "ok" if parity.get("ok") else "FAILED"
        out.print(
            f"parity: {verdict} (served vs source, max |Δ| {parity['max_abs']:.2e} over {parity['compared']} "
            f"results; atol {parity['atol']}, rtol {parity['rtol']})",
            highlight=False,
        )


def _run(spec_path: Path, names: list[str], force: bool) -> list[StageOutcome]:
    with _reported(on_interrupt="[red]interrupted[/]: stopped; no stage output was left half-written"):
        spec = _load(spec_path)
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
        _fail(failed)
    return outcomes


SpecArg = Annotated[Path, typer.Argument(help="model spec (models/<name>/model.yaml)", show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="re-run even if inputs are unchanged")]
EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env", help="environment of torchship.toml to use (default: TORCHSHIP_ENV)", show_default=False
    ),
]


def _load(spec_path: Path, env: str | None = None) -> ModelSpec:
    """The spec every command works on: the file, with torchship.toml and the environment laid over it."""
    return load_effective_spec(spec_path, chosen_environment(env, Settings()))


def _print_version(value: bool) -> None:
    if value:
        out.print(f"torchship {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False,
    version: Annotated[
        bool,
        # Eager: handled while parsing, before click asks for a command ("Missing command.").
        typer.Option("--version", help="print the version and exit", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def run(
    spec: SpecArg,
    until: Annotated[str | None, typer.Option(help=f"last stage to run: {', '.join(STAGE_NAMES)}")] = None,
    force: ForceOpt = False,
) -> None:
    """Run every stage (fetch → compile → validate → package → verify), skipping unchanged ones."""
    if until is not None and until not in STAGE_NAMES:
        message = f"--until {until!r} is not a stage; choose one of: {', '.join(STAGE_NAMES)}"
        err.print(_labelled("error:", "bold red", message), highlight=False)
        raise typer.Exit(2)
    last = STAGE_NAMES.index(until) if until else len(STAGE_NAMES) - 1
    _run(spec, STAGE_NAMES[: last + 1], force)


def _stage_command(name: str, help_text: str) -> None:
    def command(spec: SpecArg, force: ForceOpt = False) -> None:
        _run(spec, [name], force)

    command.__doc__ = help_text
    app.command(name=name)(command)


for _stage in STAGES:
    _stage_command(_stage.name, f"Run only the {_stage.name} stage: {_stage.description}.")


@app.command(name="init", epilog=INIT_EXAMPLES)
def init_command(
    model: Annotated[
        Path, typer.Option("--model", help="the folder save_pretrained wrote", show_default=False)
    ],
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="the repository root")] = Path("."),
    task: Annotated[str | None, typer.Option(help="default: what the checkpoint's config.json says")] = None,
    name: Annotated[
        str | None, typer.Option(help="default: the model folder's name, made a valid one")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="overwrite files you changed or torchship did not write")
    ] = False,
) -> None:
    """Scaffold a repository that ships its own model: spec, settings, buildspec, pipeline."""
    from torchship.scaffold.repository import InitRequest, init_repository
    from torchship.scaffold.summary import file_lines, next_steps

    with _reported():
        outcome = init_repository(InitRequest(directory, model, task=task, name=name, force=force))
    out.print(f"{outcome.name} ({outcome.task}) in {outcome.repo}:", highlight=False)
    for line in [*file_lines(outcome), "", "next:", *next_steps(outcome, Path.cwd())]:
        out.print(line, highlight=False, markup=False)


@app.command()
def report(spec_path: SpecArg) -> None:
    """Print the validation gate's summary and the path of its HTML report."""
    from torchship.validate.gate import FAILED_DIR
    from torchship.validate.records import REPORT_HTML, REPORT_JSON, read_report
    from torchship.validate.report import summary_lines

    with _reported():
        spec = _load(spec_path)
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


def _publish_uri(settings: Settings, spec_uri: str | None, flag: str | None = None) -> str:
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


@app.command()
def publish(spec_path: SpecArg, env: EnvOpt = None) -> None:
    """Upload the validated .mar, its config, report and manifest to S3 and register the version."""
    from torchship.publish import publish as publish_version
    from torchship.publish import verified_files
    from torchship.storage.s3 import client_from_settings

    with _reported():
        spec = _load(spec_path, env)
        settings = Settings()
        uri = _publish_uri(settings, spec.publish.uri)
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
                    spec_path=spec_path,
                )  # fmt: skip
    out.print(result.message, highlight=False)


@app.command()
def promote(
    spec_path: SpecArg,
    stage: Annotated[str, typer.Option(help="staging or production")],
    version: Annotated[str | None, typer.Option(help="the version to promote (default: the spec's)")] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="remove the stage alias instead of moving it")
    ] = False,
    env: EnvOpt = None,
) -> None:
    """Point a stage alias (staging, production) at a complete published version, atomically."""
    from torchship.publish import read_manifest
    from torchship.storage.s3 import client_from_settings

    with _reported():
        spec = _load(spec_path, env)
        settings = Settings()
        uri = _publish_uri(settings, spec.publish.uri)
        client = client_from_settings(settings)
        if clear:
            was = _registry(spec.publish.registry, client, uri, spec).clear_alias(spec.name, stage)
            out.print(
                f"{spec.name}: {stage} cleared (was {was})" if was else f"{spec.name}: {stage} was not set",
                highlight=False,
            )
            return
        version = version or spec.version
        if read_manifest(client, uri, spec.name, version) is None:
            raise TorchshipError(
                f"{spec.name} {version} is not a complete published version under {uri}",
                hint=f"Publish it first: torchship publish {spec_path}",
            )
        previous = _registry(spec.publish.registry, client, uri, spec).set_alias(spec.name, stage, version)
    moved = f" (was {previous})" if previous else ""
    out.print(f"{spec.name}: {stage} → {version}{moved}", highlight=False)


UriOpt = Annotated[str | None, typer.Option(help="s3://BUCKET/PREFIX (default: TORCHSHIP_PUBLISH_URI)")]


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[str, typer.Argument(help="model version")],
    to: Annotated[Path, typer.Option("--to", help="directory to create")],
    uri: UriOpt = None,
) -> None:
    """Download a published version and check the sha256 of every file against its manifest."""
    from torchship.publish import pull as pull_version
    from torchship.storage.s3 import client_from_settings

    with _reported():
        settings = Settings()
        dest = pull_version(
            _publish_uri(settings, None, uri), name, version, to, client_from_settings(settings)
        )
    out.print(f"pulled {name} {version} to {dest} (every file's sha256 verified)", highlight=False)


@app.command()
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

    with _reported():
        settings = Settings()
        location = _publish_uri(settings, None, uri)
        if not yes and not typer.confirm(f"Remove {name} {version} from {location}?", err=True):
            err.print("nothing removed")
            raise typer.Exit(1)
        client = client_from_settings(settings)
        result = unpublish_version(location, name, version, client, _registry(registry, client, location))
    out.print(f"removed {name} {version} ({len(result.deleted)} objects)", highlight=False)


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


@app.command()
def serve(
    target: Annotated[Path, typer.Argument(help="a model spec (serves its packaged .mar) or a .mar file")],
    port: Annotated[
        int | None, typer.Option(help="inference port on 127.0.0.1 (default: a free one)")
    ] = None,
) -> None:
    """Run TorchServe in the foreground with the model; prints the URL and how to call it."""
    from torchship.archiver.package import mar_path
    from torchship.serving.torchserve import TorchServe

    with _reported(on_interrupt=""):
        settings = Settings()
        if target.suffix == ".mar":
            mar, name = target, target.stem
        else:
            spec = _load(target)
            # Only the package the current spec makes, not one kept from before a failed or edited run.
            Runner(spec, settings, STAGES, RichReporter(err)).require_current("package")
            mar, name = mar_path(settings.stage_root(spec.name, spec.version) / "package", spec), spec.name
        server = TorchServe({name: mar}, settings, port=port)
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


# --- Kubernetes: render, deploy, rehearse ----------------------------------------------------------


def _rendered(spec_path: Path, settings: Settings, spec_only: bool = False, env: str | None = None):
    from torchship.deploy import render as rendering
    from torchship.deploy.inputs import gather_inputs, unmeasured_inputs

    spec = _load(spec_path, env)
    inputs = unmeasured_inputs(spec) if spec_only else gather_inputs(spec, settings)
    return spec, rendering.render(spec, inputs)


def _print_derivations(rendered) -> None:
    c, d = rendered.context, rendered.context.derived
    out.print(
        f"image {c.image} (pinned by {rendered.inputs.image_pinned_by})\n"
        f"time to ready {c.time_to_ready_s:.1f} s ({c.time_to_ready_source}) → startup budget "
        f"{d.startup_budget_s} s, rollout timeout {d.rollout_timeout_s} s\n"
        f"{d.workers} worker(s) x {d.threads} thread(s) on a CPU limit of {c.cpu_limit}; "
        f"termination grace {d.termination_grace_s} s\n"
        f"namespace {c.namespace}; {c.replicas} to {d.max_replicas} replicas",
        highlight=False,
    )


@app.command(name="render")
def render_command(
    spec_path: SpecArg,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="directory for the kustomize base (default: outputs/…/k8s, with --env outputs/…/k8s-ENV)",
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="validate schemas and policy rules; write nothing on failure")
    ] = False,
    spec_only: Annotated[
        bool,
        typer.Option(
            "--spec-only",
            help="ignore outputs/ (image.json, verify): image by version tag, default startup budget "
            "(how the committed k8s/ is rendered)",
        ),
    ] = False,
    env: EnvOpt = None,
) -> None:
    """Render Kubernetes manifests (a kustomize base) for the model; --check validates them."""
    from torchship.deploy.check import check_base
    from torchship.deploy.render import default_out_dir, write_base

    with _reported():
        settings = Settings()
        spec, rendered = _rendered(spec_path, settings, spec_only, env)
        report = check_base(rendered, spec) if check else None
        if report is not None:
            for line in report.lines():
                err.print(line, highlight=False, markup=False)
            report.raise_if_failed()
        root = settings.stage_root(spec.name, spec.version)
        target = write_base(
            rendered.files, out_dir or default_out_dir(root, chosen_environment(env, settings))
        )
    out.print(f"rendered {len(rendered.files)} files into {target}", highlight=False)
    _print_derivations(rendered)
    if report is not None:
        out.print(f"checks passed: {report.summary()}", highlight=False)


@app.command(name="deploy")
def deploy_command(
    spec_path: SpecArg,
    context: Annotated[
        str | None, typer.Option("--context", help="kubeconfig context (default: current)")
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            help="namespace (default: the environment's, else deploy.namespace, else the model name)",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print what would change; apply nothing")
    ] = False,
    smoke: Annotated[
        bool, typer.Option("--smoke/--no-smoke", help="send one example through kubectl port-forward")
    ] = True,
    env: EnvOpt = None,
) -> None:
    """Apply the checked manifests server-side, wait for the rollout, smoke-test it; undo it on failure."""
    from torchship.deploy.kubectl import Kubectl
    from torchship.deploy.render import namespace_of
    from torchship.deploy.rollout import deploy

    with _reported():
        spec = _load(spec_path, env)
        kubectl = Kubectl(context=context, namespace=namespace or namespace_of(spec))
        result = deploy(
            spec, Settings(), kubectl, dry_run=dry_run, smoke=smoke,
            progress=_progress,
        )  # fmt: skip
    if dry_run:
        out.print(result.dry_run_output, highlight=False, markup=False)
        return
    for line in result.applied:
        out.print(line, highlight=False)
    out.print(f"[green]rolled out[/] deployment/{spec.name}", highlight=False)
    if result.smoke:
        out.print(f"smoke: {result.smoke}", highlight=False)


@app.command(name="rehearse")
def rehearse_command(
    spec_path: SpecArg,
    keep: Annotated[bool, typer.Option("--keep", help="keep serving after the checks until Ctrl-C")] = False,
    env: EnvOpt = None,
) -> None:
    """Play the rendered manifests with podman kube play, wait for readiness, check served parity, tear down."""
    import time

    from torchship.deploy.rehearse import container_state, rehearse
    from torchship.serving.signals import install_stop_handlers

    def keep_serving(rehearsal) -> None:
        if not keep:
            return
        name = rehearsal.model
        out.print(
            f"[bold green]serving[/] {name} at {rehearsal.url}/predictions/{name} (no token: see README, Deploy)"
        )
        out.print(
            f"  curl -s {rehearsal.url}/predictions/{name} -H 'Content-Type: application/json' "
            '-d \'{"text": "Hello, world"}\'',
            highlight=False,
        )
        out.print("Ctrl-C stops it and tears everything down.")
        install_stop_handlers()  # SIGTERM/SIGHUP end the wait like Ctrl-C; the pod is then torn down
        try:
            while container_state(rehearsal.container)[0] == "running":
                time.sleep(1.0)
            err.print("[red]the container stopped[/]")
        except KeyboardInterrupt:
            err.print("stopping …")

    with _reported(on_interrupt="[red]interrupted[/]: the rehearsal pod was torn down"):
        spec = _load(spec_path, env)
        rehearsal = rehearse(
            spec, Settings(), on_ready=keep_serving,
            progress=_progress,
        )  # fmt: skip
    parity = rehearsal.parity
    out.print(
        f"rehearsal ok: ready in {rehearsal.ready_s:.1f} s; served parity ok (max |Δ| {parity['max_abs']:.2e} over "
        f"{parity['compared']} results); torn down",
        highlight=False,
    )


# --- image (issue 10): build the verified .mar into an image, run it, check served parity, push ---------
@app.command()
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
            err.print(
                _labelled("error:", "bold red", "--context builds nothing, so it cannot --push"),
                highlight=False,
            )
            raise typer.Exit(2)
        _write_image_context(spec_path, context_dir, tag, base_image)
        return
    with _reported(
        on_interrupt="[red]interrupted[/]: the build directory was removed; no image.json was written"
    ):
        spec = _load(spec_path)
        settings = Settings()
        err.print(f"[bold]{spec.name}[/] {spec.version}: image", highlight=False)
        record = ship_image(
            spec, settings, ImageRequest(base_image=base_image, tag=tag, push=push),
            progress=_progress,
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

    with _reported():
        spec = _load(spec_path)
        context = write_context(spec, Settings(), directory, progress=_progress)
    image_tag = tag or default_tag(spec, context.build_args["MAR_SHA256"])
    out.print(
        f"wrote the build context of {spec.name} {spec.version} to {context.directory}", highlight=False
    )
    out.print("build it with:", highlight=False)
    command = build_command(context, f"{spec.name}:{image_tag}", base_image)
    out.print(f"  {command}", highlight=False, markup=False)


# --- tune (issue 13): serving configurations measured in a real TorchServe ------------------------------


def _print_tune_outcome(outcome: TuneOutcome, spec_backend: str) -> Measurement:
    """Where tune wrote its results and the configuration it chose (the measurement); none met the budget:
    TorchshipError."""
    result = outcome.result
    out.print(f"wrote {outcome.out_dir / 'tune.json'} and {outcome.out_dir / 'tune.html'}", highlight=False)
    if result.chosen is None:
        raise TorchshipError(
            f"no configuration of the {len(result.measurements)} measured met the p95 budget of "
            f"{result.budget_p95_ms:g} ms without failed requests",
            hint="Raise --budget-p95-ms, or see tune.html for the lowest p95 measured.",
        )
    chosen = next(
        m for m in result.measurements if m.config == result.chosen and m.backend == result.chosen_backend
    )
    out.print(
        f"chosen: {chosen.candidate.label}: {chosen.throughput_rps:.1f} req/s, p95 {chosen.p95_ms:.0f} ms, "
        f"p99 {chosen.p99_ms:.0f} ms",
        highlight=False,
    )
    for status in result.backends:
        if status.refused:
            out.print(f"not measured: {status.backend}: {status.refused}", highlight=False, markup=False)
    unchanged = (
        " (unchanged)"
        if chosen.backend == spec_backend
        else " (another backend: `torchship run` compiles and gates it after pasting)"
    )
    out.print("paste into the spec:", highlight=False)
    out.print(f"  {outcome.serve_line}", highlight=False, markup=False)
    out.print(f"  {outcome.compile_line}{unchanged}", markup=False, highlight=False)
    return chosen


@app.command()
def tune(
    spec_path: SpecArg,
    budget_p95_ms: Annotated[
        float | None,
        typer.Option(
            "--budget-p95-ms", help="p95 budget in ms (default: validate.latency_ms.p95, else none)"
        ),
    ] = None,
    minutes: Annotated[float, typer.Option(help="time bound for the whole sweep", min=0.1)] = 10.0,
    texts: Annotated[
        Path | None,
        typer.Option("--texts", help="texts to send, one per line (default: the spec's examples)"),
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
) -> None:
    """Sweep compiled backend × workers × threads × batch size × batch delay in a real TorchServe; pick the
    fastest within budget."""
    from torchship.tune.command import run_tune
    from torchship.tune.spec_edit import write_tuned

    with _reported(on_interrupt="[red]interrupted[/]: TorchServe stopped; tune outputs left as they were"):
        spec = _load(spec_path)
        outcome = run_tune(
            spec,
            Settings(),
            budget_p95_ms=budget_p95_ms,
            minutes=minutes,
            texts_file=texts,
            requests=requests,
            progress=_progress,
            backends=_backend_list(backends),
        )
        chosen = _print_tune_outcome(outcome, spec.compile.backend)
        if write:
            for line in write_tuned(spec.spec_path, chosen.config, chosen.backend):
                out.print(f"wrote {line} into {spec.spec_path}", highlight=False, markup=False)
            out.print("(other lines unchanged)", highlight=False)


def _backend_list(option: str | None) -> list[str] | None:
    """--backends: None (the default candidates), 'spec' (none besides the spec's) or a comma list."""
    if option is None:
        return None
    names = [name.strip() for name in option.split(",") if name.strip()]
    return [] if names == ["spec"] else names


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


if __name__ == "__main__":
    main()
