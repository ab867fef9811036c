"""Kubernetes commands: `render` the manifests (a kustomize base; --check validates them), `deploy` them to a
cluster, `rehearse` them in a local pod."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from torchship.cli.arguments import EnvOpt, SpecArg, load_spec
from torchship.cli.console import err, out, progress
from torchship.cli.failures import reported
from torchship.project import chosen_environment
from torchship.settings import Settings

commands = typer.Typer()


def _rendered(spec_path: Path, settings: Settings, spec_only: bool = False, env: str | None = None):
    from torchship.deploy import render as rendering
    from torchship.deploy.inputs import gather_inputs, unmeasured_inputs

    spec = load_spec(spec_path, env)
    inputs = unmeasured_inputs(spec) if spec_only else gather_inputs(spec, settings)
    return spec, rendering.render(spec, inputs)


CanaryOpt = Annotated[
    int | None,
    typer.Option(
        "--canary",
        metavar="PERCENT",
        help="a canary of the spec's version beside the stable one, with this share of the traffic (1-99)",
    ),
]
CanaryRouteOpt = Annotated[
    str,
    typer.Option(
        "--canary-route",
        help="how the traffic is split: replicas (pods in proportion behind the shared Service) or gateway "
        "(a Gateway API HTTPRoute's weights; needs a mesh that implements it)",
    ),
]


def _route(value: str):
    from torchship.deploy.canary import ROUTES
    from torchship.deploy.errors import DeployError

    if value not in ROUTES:
        raise DeployError(
            f"--canary-route {value!r}: choose one of {', '.join(ROUTES)}",
            hint="replicas works on any cluster; gateway needs the Gateway API CRDs and a mesh.",
        )
    return value


def _rendered_canary(spec_path, settings, spec_only, env, percent, route, stable_version, stable_image):
    from torchship.deploy.canary import CanaryPlan, render_canary, stable_ref
    from torchship.deploy.errors import DeployError
    from torchship.deploy.inputs import gather_inputs, unmeasured_inputs

    spec = load_spec(spec_path, env)
    if not stable_version:
        raise DeployError(
            "--canary needs the version the stable Deployment runs (--stable-version)",
            hint=f"e.g. torchship render {spec_path} --canary {percent} --stable-version <the version serving now> "
            "[--stable-image REPO@sha256:…]; `torchship deploy --canary` reads it from the cluster instead.",
        )
    inputs = unmeasured_inputs(spec) if spec_only else gather_inputs(spec, settings)
    stable = stable_ref(spec, settings, stable_version, stable_image)
    return spec, render_canary(spec, inputs, CanaryPlan(percent, route, stable))


def _print_derivations(rendered) -> None:
    c, d = rendered.context, rendered.context.derived
    k = rendered.context.canary
    if k is not None:
        canary = rendered.canary_context
        out.print(
            f"canary {k.canary_version} ({canary.image}) beside stable {k.stable_version} ({c.image}): "
            + (
                f"HTTPRoute weights {k.weight}/{100 - k.weight}, {k.canary_replicas} canary pod(s)"
                if k.route == "gateway"
                else f"{k.canary_replicas} canary + {k.stable_replicas} stable pod(s) at rest = "
                f"{k.actual_percent:.1f}% of requests to the canary (asked {k.percent}%)"
            ),
            highlight=False,
        )
    out.print(
        f"image {c.image} (pinned by {rendered.inputs.image_pinned_by})\n"
        f"time to ready {c.time_to_ready_s:.1f} s ({c.time_to_ready_source}) → startup budget "
        f"{d.startup_budget_s} s, rollout timeout {d.rollout_timeout_s} s\n"
        f"{d.workers} worker(s) x {d.threads} thread(s) on a CPU limit of {c.cpu_limit}; "
        f"termination grace {d.termination_grace_s} s\n"
        f"namespace {c.namespace}; {c.replicas} to {d.max_replicas} replicas",
        highlight=False,
    )
    if c.autoscaling is not None:
        a = c.autoscaling
        rps = (
            f"{a.rps_target:g} req/s per pod ({a.share:.0%} of tune's {a.measured.throughput_rps:.1f})"
            if a.rps_target is not None and a.measured is not None
            else f"no req/s target: {a.why_no_rps}"
        )
        out.print(
            f"autoscaling on {a.inflight_target:g} requests in flight per pod ({a.share:.0%} of {a.slots} = workers x batch), "
            f"{rps}, CPU {c.target_cpu_percent}%",
            highlight=False,
        )


@commands.command(name="render")
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
    canary: CanaryOpt = None,
    canary_route: CanaryRouteOpt = "replicas",
    stable_version: Annotated[
        str | None,
        typer.Option(
            "--stable-version",
            help="with --canary: the version the stable Deployment runs (its image: that version's image.json, "
            "else deploy.image:VERSION)",
        ),
    ] = None,
    stable_image: Annotated[
        str | None,
        typer.Option("--stable-image", help="with --canary: the stable's image reference, given outright"),
    ] = None,
) -> None:
    """Render Kubernetes manifests (a kustomize base) for the model; --check validates them."""
    from torchship.deploy.check import check_base
    from torchship.deploy.render import default_out_dir, write_base

    with reported():
        settings = Settings()
        if canary is None:
            if stable_version or stable_image or canary_route != "replicas":
                from torchship.deploy.errors import DeployError

                raise DeployError(
                    "--stable-version, --stable-image and --canary-route describe a canary: add --canary PERCENT",
                    hint="Without --canary, render writes the stable base of the spec's own version.",
                )
            spec, rendered = _rendered(spec_path, settings, spec_only, env)
        else:
            spec, rendered = _rendered_canary(
                spec_path,
                settings,
                spec_only,
                env,
                canary,
                _route(canary_route),
                stable_version,
                stable_image,
            )
        report = check_base(rendered, spec) if check else None
        if report is not None:
            for line in report.lines():
                err.print(line, highlight=False, markup=False)
            report.raise_if_failed()
        root = settings.stage_root(spec.name, spec.version)
        environment = chosen_environment(env, settings)
        target = write_base(
            rendered.files, out_dir or default_out_dir(root, environment, canary=canary is not None)
        )
    out.print(f"rendered {len(rendered.files)} files into {target}", highlight=False)
    _print_derivations(rendered)
    if report is not None:
        out.print(f"checks passed: {report.summary()}", highlight=False)


@commands.command(name="deploy")
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
    canary: CanaryOpt = None,
    canary_route: CanaryRouteOpt = "replicas",
    promote_canary: Annotated[
        bool,
        typer.Option(
            "--promote-canary",
            help="move the stable to the canary's version and image, wait for it, then remove the canary",
        ),
    ] = False,
    abort_canary: Annotated[
        bool, typer.Option("--abort-canary", help="send everything back to the stable and remove the canary")
    ] = False,
) -> None:
    """Apply the checked manifests server-side, wait for the rollout, smoke-test it; undo it on failure.

    With --canary PERCENT: start the spec's version beside the stable the cluster runs (the stable is not
    touched); later --promote-canary (the stable moves to the canary's version and image) or --abort-canary."""
    from torchship.deploy.kubectl import Kubectl
    from torchship.deploy.render import namespace_of
    from torchship.deploy.rollout import deploy

    with reported():
        chosen = [flag for flag, on in (("--canary", canary is not None), ("--promote-canary", promote_canary),
                                        ("--abort-canary", abort_canary)) if on]  # fmt: skip
        if len(chosen) > 1:
            from torchship.deploy.errors import DeployError

            raise DeployError(
                f"{' and '.join(chosen)} do different things: choose one",
                hint="Start a canary with --canary, then later either --promote-canary or --abort-canary.",
            )
        spec = load_spec(spec_path, env)
        kubectl = Kubectl(context=context, namespace=namespace or namespace_of(spec))
        if chosen:
            _canary_step(spec, kubectl, canary, _route(canary_route), promote_canary, dry_run, smoke)
            return
        result = deploy(
            spec, Settings(), kubectl, dry_run=dry_run, smoke=smoke,
            progress=progress,
        )  # fmt: skip
    if dry_run:
        out.print(result.dry_run_output, highlight=False, markup=False)
        return
    for line in result.applied:
        out.print(line, highlight=False)
    out.print(f"[green]rolled out[/] deployment/{spec.name}", highlight=False)
    if result.smoke:
        out.print(f"smoke: {result.smoke}", highlight=False)


def _canary_step(spec, kubectl, percent, route, promote, dry_run, smoke) -> None:
    """deploy --canary / --promote-canary / --abort-canary (deploy/canary_rollout.py); inside `reported()`."""
    from torchship.deploy import canary_rollout
    from torchship.deploy.errors import DeployError

    settings = Settings()
    if percent is not None:
        result = canary_rollout.deploy_canary(
            spec, settings, kubectl, percent, route, dry_run=dry_run, smoke=smoke, progress=progress
        )
    elif dry_run:
        raise DeployError(
            "--dry-run previews a deploy or a canary's start, not --promote-canary/--abort-canary",
            hint="Run without --dry-run; each step says what it applies and removes.",
        )
    elif promote:
        result = canary_rollout.promote_canary(spec, settings, kubectl, progress=progress)
    else:
        result = canary_rollout.abort_canary(spec, settings, kubectl, progress=progress)
    if result.dry_run_output:
        out.print(result.dry_run_output, highlight=False, markup=False)
        return
    for line in [*result.applied, *result.removed]:
        out.print(line, highlight=False)
    name = spec.name
    if result.canary is None or result.stable is None:
        out.print(f"no canary of {name} was running; nothing left behind", highlight=False)
    elif result.action == "canary":
        out.print(
            f"[green]canary running[/] deployment/{name}-canary {result.canary.version} beside deployment/{name} "
            f"{result.stable.version}: {result.split}",
            highlight=False,
        )
        if result.smoke:
            out.print(f"smoke: {result.smoke}", highlight=False)
    elif result.action == "promote":
        out.print(
            f"[green]promoted[/] deployment/{name} now runs {result.canary.version} ({result.canary.image}); "
            "the canary is removed",
            highlight=False,
        )
    else:
        out.print(
            f"[yellow]canary aborted[/]: deployment/{name}-canary {result.canary.version} removed; "
            f"deployment/{name} {result.stable.version} takes all requests",
            highlight=False,
        )


@commands.command(name="rehearse")
def rehearse_command(
    spec_path: SpecArg,
    keep: Annotated[bool, typer.Option("--keep", help="keep serving after the checks until Ctrl-C")] = False,
    env: EnvOpt = None,
    canary: CanaryOpt = None,
    stable_version: Annotated[
        str | None,
        typer.Option(
            "--stable-version",
            help="with --canary: the stable version to play beside the spec's (its image.json must exist)",
        ),
    ] = None,
    prometheus: Annotated[
        bool | None,
        typer.Option(
            "--prometheus/--no-prometheus",
            help="prove the pod's metrics with a real local Prometheus (default: when /usr/bin/prometheus exists)",
        ),
    ] = None,
) -> None:
    """Play the rendered manifests with podman kube play, wait for readiness, check served parity, prove the
    metrics arrive in a local Prometheus, tear down.

    With --canary PERCENT --stable-version V: the stable (V's image) and the canary side by side."""
    import time

    from torchship.deploy.rehearse import container_state, rehearse
    from torchship.serving.signals import install_stop_handlers

    def wait_for_ctrl_c(containers: list[str]) -> None:
        install_stop_handlers()  # SIGTERM/SIGHUP end the wait like Ctrl-C; the pod is then torn down
        try:
            while all(container_state(container)[0] == "running" for container in containers):
                time.sleep(1.0)
            err.print("[red]a container stopped[/]")
        except KeyboardInterrupt:
            err.print("stopping …")

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
        wait_for_ctrl_c([rehearsal.container])

    def keep_serving_both(result) -> None:
        if not keep:
            return
        for track in result.tracks.values():
            rehearsal = track.rehearsal
            out.print(
                f"[bold green]serving[/] {track.track} {track.version} at {rehearsal.url}/predictions/{rehearsal.model}",
                highlight=False,
            )
        stable_pod, canary_pod = result.tracks["stable"].rehearsal, result.tracks["canary"].rehearsal
        out.print(
            f"  compare them live: torchship diff {spec_path} --live {stable_pod.url} {canary_pod.url} "
            "--replay requests.jsonl",
            highlight=False,
        )
        out.print("Ctrl-C stops both and tears everything down.")
        wait_for_ctrl_c([track.rehearsal.container for track in result.tracks.values()])

    with reported(on_interrupt="[red]interrupted[/]: the rehearsal pod was torn down"):
        spec = load_spec(spec_path, env)
        if canary is not None:
            from torchship.deploy.canary import check_percent
            from torchship.deploy.errors import DeployError
            from torchship.deploy.rehearse_canary import rehearse_canary

            check_percent(canary)
            if not stable_version:
                raise DeployError(
                    "rehearse --canary needs the stable version to play beside the spec's (--stable-version)",
                    hint="Its image must be built: torchship image SPEC_OF_THAT_VERSION.",
                )
            both = rehearse_canary(
                spec, Settings(), canary, stable_version, on_ready=keep_serving_both, progress=progress
            )
            _print_canary_rehearsal(both)
            return
        rehearsal = rehearse(
            spec, Settings(), on_ready=keep_serving,
            progress=progress, prometheus=prometheus,
        )  # fmt: skip
    parity = rehearsal.parity
    if rehearsal.metrics is not None:
        out.print(f"metrics ok: {rehearsal.metrics.summary()}", highlight=False)
    else:
        out.print(
            "metrics not proven: no Prometheus installed (apt-get install prometheus), or --no-prometheus"
        )
    out.print(
        f"rehearsal ok: ready in {rehearsal.ready_s:.1f} s; served parity ok (max |Δ| {parity['max_abs']:.2e} over "
        f"{parity['compared']} results); torn down",
        highlight=False,
    )


def _print_canary_rehearsal(both) -> None:
    for track in both.tracks.values():
        out.print(
            f"{track.track} {track.version}: ready in {track.rehearsal.ready_s:.1f} s; {track.checked}",
            highlight=False,
        )
    out.print(f"canary rehearsal ok ({both.split}); torn down", highlight=False)
