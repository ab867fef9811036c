"""`torchship render --canary`: the canary beside the stable, its split, its labels, and the checks."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from deploy_helpers import spec_file, write_image_record
from torchship.cli import app
from torchship.deploy.canary import CanaryPlan, TrackImage, render_canary, stable_ref
from torchship.deploy.check import check_base
from torchship.deploy.errors import DeployError
from torchship.deploy.inputs import unmeasured_inputs
from torchship.deploy.policy import PolicyInputs, check_policy
from torchship.deploy.render import Manifest
from torchship.settings import Settings
from torchship.spec import load_spec

runner = CliRunner()
NAME = "tiny-embeddings"
STABLE = TrackImage("0.0.9", "registry.example/tiny@sha256:" + "ab" * 32, "digest")
BASE_LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": NAME}


def canary_base(tmp_path, percent=10, route="replicas", deploy="{}", stable=STABLE):
    spec = load_spec(spec_file(tmp_path, deploy=deploy))
    return spec, render_canary(spec, unmeasured_inputs(spec), CanaryPlan(percent, route, stable))


def docs(rendered, kind: str) -> dict[str, dict]:
    return {m.name: m.doc for m in rendered.manifests if m.kind == kind}


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize(
    ("total", "percent", "canary", "stable"),
    [
        (2, 10, 1, 1),  # 0.2 pods: at least one canary, at least one stable
        (10, 10, 1, 9),
        (10, 25, 3, 7),  # 2.5 rounds up, not to the even 2
        (10, 5, 1, 9),  # 0.5 rounds up
        (4, 50, 2, 2),
        (3, 99, 3, 1),  # the stable keeps one pod
    ],
)
def test_replicas_split_in_proportion_and_the_comment_says_the_actual_share(
    tmp_path, total, percent, canary, stable
):
    spec, rendered = canary_base(tmp_path, percent, deploy=f"{{replicas: {total}}}")
    hpas = docs(rendered, "HorizontalPodAutoscaler")
    assert hpas[f"{NAME}-canary"]["spec"]["minReplicas"] == canary
    assert hpas[f"{NAME}-canary"]["spec"]["scaleTargetRef"]["name"] == f"{NAME}-canary"
    assert hpas[NAME]["spec"]["minReplicas"] == stable
    # Ceilings share deploy.max_replicas (2 x total by default) the same way.
    most = 2 * total
    canary_max = max(canary, int(most * percent / 100 + 0.5))
    assert hpas[f"{NAME}-canary"]["spec"]["maxReplicas"] == canary_max
    assert hpas[NAME]["spec"]["maxReplicas"] == max(stable, most - canary_max)
    actual = f"{100 * canary / (canary + stable):.1f}%"
    assert f"= {actual} of requests to the canary at rest" in rendered.files["deployment-canary.yaml"]
    assert f"Asked {percent}% of deploy.replicas {total}" in rendered.files["deployment.yaml"]
    assert check_base(rendered, spec).ok, check_base(rendered, spec).lines()


def test_both_tracks_are_labelled_and_one_service_selects_both(tmp_path):
    _, rendered = canary_base(tmp_path)
    deployments = docs(rendered, "Deployment")
    stable, canary = deployments[NAME], deployments[f"{NAME}-canary"]
    assert pod_labels(stable)["torchship.dev/track"] == "stable"
    assert pod_labels(stable)["app.kubernetes.io/version"] == "0.0.9"
    assert pod_labels(canary)["torchship.dev/track"] == "canary"
    assert pod_labels(canary)["app.kubernetes.io/version"] == "0.1.0"
    # The stable keeps the selector it was created with (immutable); the canary's never matches stable pods.
    assert stable["spec"]["selector"] == {"matchLabels": BASE_LABELS}
    assert canary["spec"]["selector"] == {"matchLabels": {**BASE_LABELS, "torchship.dev/track": "canary"}}
    assert not set(canary["spec"]["selector"]["matchLabels"].items()) <= set(pod_labels(stable).items())
    # Images: the stable's as given, the canary's the spec's own version.
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == STABLE.image
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == "torchship/tiny-embeddings:0.1.0"
    env = canary["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"]
    assert env == f"{NAME}-canary-env" and f"{NAME}-canary-env" in docs(rendered, "ConfigMap")
    (service,) = docs(rendered, "Service").values()
    assert service["spec"]["selector"] == BASE_LABELS  # no track, no version: both tracks' pods
    for deployment in (stable, canary):
        labels = pod_labels(deployment)
        assert service["spec"]["selector"].items() <= labels.items()
        assert (
            docs(rendered, "PodDisruptionBudget")[NAME]["spec"]["selector"]["matchLabels"].items()
            <= labels.items()
        )
        policy = docs(rendered, "NetworkPolicy")[NAME]["spec"]["podSelector"]["matchLabels"]
        assert policy.items() <= labels.items()
    kustomization = yaml.safe_load(rendered.files["kustomization.yaml"])
    assert kustomization["resources"][-3:] == [
        "configmap-canary.yaml",
        "deployment-canary.yaml",
        "hpa-canary.yaml",
    ]


def test_gateway_route_weights_two_track_services_and_leaves_the_stable_scale(tmp_path):
    spec, rendered = canary_base(tmp_path, 15, "gateway", deploy="{replicas: 4}")
    (route,) = docs(rendered, "HTTPRoute").values()
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"group": "", "kind": "Service", "name": NAME}]
    assert route["spec"]["rules"] == [
        {
            "backendRefs": [
                {"name": f"{NAME}-stable", "port": 8080, "weight": 85},
                {"name": f"{NAME}-canary", "port": 8080, "weight": 15},
            ]
        }
    ]
    services = docs(rendered, "Service")
    assert services[f"{NAME}-stable"]["spec"]["selector"] == {**BASE_LABELS, "torchship.dev/track": "stable"}
    assert services[f"{NAME}-canary"]["spec"]["selector"] == {**BASE_LABELS, "torchship.dev/track": "canary"}
    assert services[NAME]["spec"]["selector"] == BASE_LABELS
    hpas = docs(rendered, "HorizontalPodAutoscaler")
    assert (hpas[NAME]["spec"]["minReplicas"], hpas[NAME]["spec"]["maxReplicas"]) == (4, 8)  # untouched
    assert hpas[f"{NAME}-canary"]["spec"]["minReplicas"] == 1  # round(4 x 15%) = round(0.6)
    report = check_base(rendered, spec)
    assert report.ok, report.lines()
    assert "HTTPRoute against torchship's own CRD schemas" in report.summary()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r["spec"]["rules"][0]["backendRefs"][1].update(weight=-1),
            "-1 is less than the minimum of 0",
        ),
        (lambda r: r["spec"]["rules"][0]["backendRefs"][0].update(wieght=5), "'wieght' was unexpected"),
        (lambda r: r["spec"]["parentRefs"][0].pop("name"), "'name' is a required property"),
        (lambda r: r.update(apiVersion="gateway.networking.k8s.io/v1beta2"), "no schema for kind HTTPRoute"),
    ],
)
def test_a_broken_route_fails_the_schema_check(tmp_path, change, message):
    spec, rendered = canary_base(tmp_path, route="gateway")
    manifests = [Manifest(m.file, copy.deepcopy(m.doc)) for m in rendered.manifests]
    change(next(m.doc for m in manifests if m.kind == "HTTPRoute"))
    report = check_base(type(rendered)(rendered.files, rendered.context, rendered.inputs, manifests), spec)
    assert not report.ok
    assert any(message in f.message and "HTTPRoute" in f.resource for f in report.schema_findings), (
        report.lines()
    )


def test_a_lone_one_pod_deployment_is_still_a_single_point_of_failure(tmp_path):
    _, rendered = canary_base(tmp_path)
    without_service = [m for m in rendered.manifests if m.kind != "Service"]
    findings = {(f.rule, f.resource) for f in check_policy(PolicyInputs(without_service, 120))}
    assert findings == {
        ("replicas", f"HorizontalPodAutoscaler/{NAME}"),
        ("replicas", f"HorizontalPodAutoscaler/{NAME}-canary"),
    }
    assert not check_policy(PolicyInputs(rendered.manifests, 120))


@pytest.mark.parametrize("percent", [0, 100, -5])
def test_a_percentage_outside_1_to_99_is_refused(tmp_path, percent):
    with pytest.raises(
        DeployError, match=re.escape(f"--canary {percent}: a canary's share is a percentage from 1 to 99")
    ):
        canary_base(tmp_path, percent)


def test_a_canary_of_the_stable_version_is_refused(tmp_path):
    with pytest.raises(
        DeployError, match=re.escape("the canary would be version 0.1.0, the version the stable already runs")
    ):
        canary_base(tmp_path, stable=TrackImage("0.1.0", "torchship/tiny-embeddings:0.1.0", "tag"))


def test_the_stable_image_comes_from_its_versions_image_json(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    outputs = tmp_path / "outputs"
    pushed = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/torchship/tiny@sha256:" + "cd" * 32
    write_image_record(outputs, spec.model_copy(update={"version": "0.0.9"}), pushed=pushed)
    settings = Settings(outputs_dir=outputs)
    assert stable_ref(spec, settings, "0.0.9") == TrackImage("0.0.9", pushed, "digest")
    # No record for that version: the repository with the version as tag, as a plain render would.
    assert stable_ref(spec, settings, "0.0.8") == TrackImage(
        "0.0.8", "torchship/tiny-embeddings:0.0.8", "tag"
    )
    assert stable_ref(spec, settings, "0.0.8", "mine:0.0.8").image == "mine:0.0.8"


def test_cli_render_canary_check_writes_beside_the_stable_rendering(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    spec = spec_file(tmp_path, deploy="{replicas: 4}")
    args = ["render", str(spec), "--canary", "25", "--stable-version", "0.0.9", "--check"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    target = tmp_path / "outputs" / NAME / "0.1.0" / "k8s-canary"
    assert f"rendered 11 files into {target}" in result.output
    assert "1 canary + 3 stable pod(s) at rest = 25.0% of requests to the canary (asked 25%)" in result.output
    assert "0 policy finding(s)" in result.output
    deployment = yaml.safe_load((target / "deployment-canary.yaml").read_text())
    assert deployment["metadata"]["name"] == f"{NAME}-canary"
    result = runner.invoke(app, [*args, "--canary-route", "gateway", "--out", str(tmp_path / "gw")])
    assert result.exit_code == 0, result.output
    assert "HTTPRoute weights 25/75, 1 canary pod(s)" in result.output
    assert (tmp_path / "gw" / "httproute.yaml").is_file() and (
        tmp_path / "gw" / "service-tracks.yaml"
    ).is_file()
    # Re-rendering the same directory without the canary replaces the canary's files too.
    result = runner.invoke(app, ["render", str(spec), "--out", str(tmp_path / "gw")])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "gw" / "httproute.yaml").exists()


def test_cli_render_canary_needs_the_stable_version(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    result = runner.invoke(app, ["render", str(spec_file(tmp_path)), "--canary", "10"])
    assert result.exit_code == 1
    assert "error: --canary needs the version the stable Deployment runs (--stable-version)" in result.output
    result = runner.invoke(app, ["render", str(spec_file(tmp_path)), "--stable-version", "0.0.9"])
    assert result.exit_code == 1 and "add --canary PERCENT" in result.output


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("route", ["replicas", "gateway"])
def test_kubectl_kustomize_builds_the_canary_base(tmp_path, route):
    from torchship.deploy.render import write_base

    _, rendered = canary_base(tmp_path, route=route)
    base = write_base(rendered.files, tmp_path / "k8s")
    built = subprocess.run(["kubectl", "kustomize", str(base)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(built.stdout) if d)
    extra = ["HTTPRoute", "Service", "Service"] if route == "gateway" else []
    assert kinds == sorted(
        ["ServiceAccount", "ConfigMap", "ConfigMap", "Deployment", "Deployment", "Service",
         "HorizontalPodAutoscaler", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", *extra]
    )  # fmt: skip
