"""`torchship deploy`: server-side apply, a rollout that checks itself, and an undo when it does not.

Every decision is taken from what kubectl reports: `rollout status` exits non-zero when the progress
deadline passes (the Deployment's own verdict, sized from the startup budget), and the smoke request goes
through `kubectl port-forward` to the Service, past nothing but the pod itself.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from torchship.deploy.check import check_base
from torchship.deploy.errors import DeployError, RolloutFailed
from torchship.deploy.inputs import gather_inputs
from torchship.deploy.kubectl import FIELD_MANAGER, Kubectl, last_line
from torchship.deploy.render import RenderedBase, render, write_base
from torchship.examples import load_examples
from torchship.processes import stop_process
from torchship.settings import Settings
from torchship.spec import ModelSpec

REVISION = "deployment.kubernetes.io/revision"
PORT_FORWARD_WAIT_S = 30
SMOKE_TIMEOUT_S = 60
EVENTS_SHOWN = 10
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


@dataclass
class DeployResult:
    applied: list[str] = field(default_factory=list)
    dry_run_output: str = ""
    rollout_timeout_s: int = 0
    smoke: str = ""
    previous_revision: str | None = None


def with_namespace(spec: ModelSpec, namespace: str | None) -> ModelSpec:
    """The spec with --namespace in its deploy section, so kustomize's namespace and kubectl's agree."""
    if namespace is None:
        return spec
    deploy = spec.deploy.model_copy(update={"namespace": namespace})
    return spec.model_copy(update={"deploy": deploy})


def rendered_checked(spec: ModelSpec, settings: Settings) -> RenderedBase:
    rendered = render(spec, gather_inputs(spec, settings))
    check_base(rendered, spec).raise_if_failed()  # never apply what `render --check` would refuse
    return rendered


def pod_events(kubectl: Kubectl, name: str) -> list[str]:
    """Recent events of the Deployment's pods and ReplicaSets: what explains a failed rollout."""
    result = kubectl.run("get", "events", "--output=json", timeout_s=30)
    if result.returncode != 0:
        return [f"(could not read events: {last_line(result.stderr)})"]
    items = json.loads(result.stdout).get("items", [])
    mine = [e for e in items if str(e.get("involvedObject", {}).get("name", "")).startswith(f"{name}-")]
    mine.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return [
        f"{e.get('type', '')} {e.get('reason', '')} {e['involvedObject'].get('kind', '').lower()}/"
        f"{e['involvedObject'].get('name')}: {e.get('message', '').strip()}"
        + (f" (x{e['count']})" if e.get("count", 1) > 1 else "")
        for e in mine[-EVENTS_SHOWN:]
    ]


def current_revision(kubectl: Kubectl, name: str) -> str | None:
    result = kubectl.run("get", "deployment", name, "--output=json", timeout_s=30)
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise DeployError(f"kubectl could not read deployment/{name}: {last_line(result.stderr)}")
    return json.loads(result.stdout).get("metadata", {}).get("annotations", {}).get(REVISION)


def smoke_request(url: str, model: str, body: Any) -> str:
    """One prediction through the forwarded port: a 200 with a JSON answer, or the reason it failed."""
    try:
        response = httpx.post(
            f"{url}/predictions/{model}", json=body, timeout=SMOKE_TIMEOUT_S,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
    except httpx.HTTPError as exc:
        raise DeployError(f"smoke request to {url} failed: {exc}") from None
    if response.status_code != 200:
        raise DeployError(f"smoke request answered {response.status_code}: {response.text[:200]}")
    try:
        response.json()
    except ValueError:
        raise DeployError(f"smoke request answered 200 but not JSON: {response.text[:200]}") from None
    return f"POST /predictions/{model} → 200 ({len(response.content)} bytes)"


def port_forward_smoke(kubectl: Kubectl, name: str, port: int, body: Any, target: str | None = None) -> str:
    """One example through `kubectl port-forward` to `target` (default the model's Service; a canary's smoke
    request goes to its own Deployment, so it is the canary that answers)."""
    cmd = kubectl.command("port-forward", target or f"service/{name}", f":{port}", "--address=127.0.0.1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=PORT_FORWARD_WAIT_S)
            except queue.Empty:
                raise DeployError(
                    f"kubectl port-forward printed no local port within {PORT_FORWARD_WAIT_S} s"
                ) from None
            if line is None:
                stderr = proc.stderr.read() if proc.stderr else ""
                raise DeployError(f"kubectl port-forward failed: {last_line(stderr) or 'it exited'}")
            match = _FORWARDING.search(line)
            if match:
                return smoke_request(f"http://127.0.0.1:{match.group(1)}", name, body)
    finally:
        stop_process(proc)


def server_side_apply(kubectl: Kubectl, *targets: str) -> list[str]:
    """`kubectl apply --server-side` as torchship's field manager on `targets` (`-k BASE` or `-f FILE ...`);
    the lines kubectl printed, one per object. A refusal is a DeployError with kubectl's reason."""
    applied = kubectl.run(
        "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", *targets, timeout_s=120
    )
    if applied.returncode != 0:
        raise DeployError(
            f"kubectl apply failed: {last_line(applied.stderr)}",
            details=applied.stderr.strip(),
            hint="A field conflict means another manager owns that field: resolve it, or apply with kubectl "
            "--force-conflicts yourself.",
        )
    return [line.strip() for line in applied.stdout.splitlines() if line.strip()]


def deploy(
    spec: ModelSpec,
    settings: Settings,
    kubectl: Kubectl,
    dry_run: bool = False,
    smoke: bool = True,
    progress: Callable[[str], None] = lambda message: None,
) -> DeployResult:
    spec = with_namespace(spec, kubectl.namespace)
    rendered = rendered_checked(spec, settings)
    name, result = spec.name, DeployResult(rollout_timeout_s=rendered.context.derived.rollout_timeout_s)
    with tempfile.TemporaryDirectory(prefix="torchship-deploy-") as tmp:
        base = write_base(rendered.files, Path(tmp) / "k8s")
        if dry_run:
            result.dry_run_output = dry_run_diff(kubectl, base, progress)
            return result
        server = kubectl.require_cluster()
        progress(f"cluster {server} ({kubectl.where()})")
        result.previous_revision = current_revision(kubectl, name)
        result.applied = server_side_apply(kubectl, "-k", str(base))
        progress(
            f"applied {len(result.applied)} objects; waiting up to {result.rollout_timeout_s} s for the rollout"
        )
        status = kubectl.run(
            "rollout", "status", f"deployment/{name}", f"--timeout={result.rollout_timeout_s}s",
            timeout_s=result.rollout_timeout_s + 30,
        )  # fmt: skip
        failure = (
            None
            if status.returncode == 0
            else f"rollout did not complete: {last_line(status.stderr or status.stdout)}"
        )
        if failure is None and smoke:
            bodies = load_examples(spec)
            try:
                progress("smoke request through kubectl port-forward")
                result.smoke = port_forward_smoke(kubectl, name, rendered.context.ports.inference, bodies[0])
            except DeployError as exc:
                failure = f"smoke request failed: {exc.message}"
        if failure is not None:
            roll_back(kubectl, name, result.previous_revision, failure, progress)
    return result


def roll_back(kubectl: Kubectl, name: str, previous: str | None, failure: str, progress) -> None:
    events = pod_events(kubectl, name)
    details = "\n".join(["pod events:", *(f"  {e}" for e in events)] if events else ["(no pod events)"])
    if previous is None:
        raise RolloutFailed(
            f"{failure}; this was the first rollout of deployment/{name}, so there is nothing to roll back to",
            details=details,
            hint=f"Inspect with `kubectl describe deployment/{name}`; remove it with `kubectl delete -k <rendered dir>`.",
        )
    progress(f"rolling back deployment/{name} to revision {previous}")
    undo = kubectl.run("rollout", "undo", f"deployment/{name}", timeout_s=60)
    undone = (
        f"rolled back to revision {previous}"
        if undo.returncode == 0
        else f"`kubectl rollout undo` failed too: {last_line(undo.stderr)}"
    )
    raise RolloutFailed(
        f"{failure}; {undone}",
        details=details,
        hint="The events above say why the new pods failed; `torchship rehearse SPEC` reproduces a pod locally.",
    )


def dry_run_diff(kubectl: Kubectl, base: Path, progress) -> str:
    """What would change: a server-side diff when the cluster answers, else the objects that would be applied."""
    diff = kubectl.run(
        "diff", "--server-side", f"--field-manager={FIELD_MANAGER}", "-k", str(base), timeout_s=120
    )
    if diff.returncode == 0:
        return "no changes: the cluster already runs exactly these manifests"
    if diff.returncode == 1 and diff.stdout:
        return diff.stdout
    if not kubectl.unreachable(diff):
        raise DeployError(f"kubectl diff failed: {last_line(diff.stderr)}", details=diff.stderr.strip())
    progress(f"cluster unreachable ({last_line(diff.stderr)}); listing what would be applied instead")
    built = kubectl.run("kustomize", str(base), timeout_s=60)
    if built.returncode != 0:
        raise DeployError(f"kubectl kustomize failed: {last_line(built.stderr)}")
    import yaml

    objects = [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in yaml.safe_load_all(built.stdout) if d]
    return "cluster not reachable, so no diff; these objects would be applied:\n" + "\n".join(
        f"  {o}" for o in objects
    )
