"""Every policy rule both ways: the rendered demo base passes it; a base broken in that one respect makes
`torchship render --check` exit non-zero, name the rule, and write nothing."""

from __future__ import annotations

import copy

import pytest
from typer.testing import CliRunner

from deploy_helpers import DEMO_SPEC, demo
from torchship.cli import app
from torchship.deploy import render as rendering
from torchship.deploy.policy import RULES, PolicyInputs, check_policy
from torchship.deploy.render import Manifest, RenderedBase

runner = CliRunner()


def _pod(docs):
    return docs["Deployment"]["spec"]["template"]["spec"]


def _c(docs):
    return _pod(docs)["containers"][0]


def _sc(docs):
    return _c(docs)["securityContext"]


def _set_pod_uid(docs, uid):
    _pod(docs)["securityContext"]["runAsUser"] = uid
    _sc(docs)["runAsUser"] = uid


# rule name -> a change that breaks exactly that rule (what an overlay or a template edit could do)
BREAKERS = {
    "host-namespaces": lambda d: _pod(d).update(hostNetwork=True),
    "host-ports": lambda d: _c(d)["ports"][0].update(hostPort=8080),
    "volume-types": lambda d: _pod(d)["volumes"].append({"name": "node", "hostPath": {"path": "/var"}}),
    "privileged": lambda d: _sc(d).update(privileged=True),
    "privilege-escalation": lambda d: _sc(d).pop("allowPrivilegeEscalation"),
    "run-as-non-root": lambda d: _sc(d).update(runAsNonRoot=False),
    "seccomp": lambda d: _sc(d).update(seccompProfile={"type": "Unconfined"}),
    "capabilities": lambda d: _sc(d).update(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
    "resources": lambda d: _c(d)["resources"]["limits"].pop("memory"),
    "ephemeral-storage": lambda d: _c(d)["resources"]["requests"].pop("ephemeral-storage"),
    "image-pinned": lambda d: _c(d).update(image="torchship/minilm-embeddings:latest"),
    "image-pull-policy": lambda d: _c(d).update(imagePullPolicy="IfNotPresent"),
    "probes": lambda d: _c(d).pop("startupProbe"),
    "read-only-root-filesystem": lambda d: _sc(d).update(readOnlyRootFilesystem=False),
    "high-uid-gid": lambda d: _set_pod_uid(d, 1000),
    "pod-disruption-budget": lambda d: d["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].update(
        {"app.kubernetes.io/name": "another-app"}
    ),
    "network-policy": lambda d: d["NetworkPolicy"]["spec"].update(policyTypes=["Ingress"]),
    "replicas": lambda d: d["Deployment"]["spec"].update(replicas=1),
    "topology-spread": lambda d: _pod(d).pop("topologySpreadConstraints"),
    "service-account-token": lambda d: (
        _pod(d).pop("automountServiceAccountToken"),
        d["ServiceAccount"].pop("automountServiceAccountToken"),
    ),
    "default-service-account": lambda d: _pod(d).pop("serviceAccountName"),
    "namespace": lambda d: d["Service"]["metadata"].update(namespace="default"),
    "sensitive-env": lambda d: _c(d).update(env=[{"name": "HF_TOKEN", "value": "hf_abc"}]),
    "management-port-private": lambda d: d["Service"]["spec"]["ports"].append(
        {"name": "management", "port": 8081, "targetPort": 8081}
    ),
    "graceful-shutdown": lambda d: _pod(d).update(terminationGracePeriodSeconds=30),
    "cpu-threads": lambda d: d["ConfigMap"]["data"].update(TORCHSHIP_THREADS="4"),
}

# Breaking one thing can honestly break a related rule too (root is also a low UID).
ALSO_REPORTED = {"service-account-token": set(), "default-service-account": set()}


def broken(rule: str) -> list[Manifest]:
    _, rendered = demo()
    docs = {m.kind: copy.deepcopy(m.doc) for m in rendered.manifests}
    BREAKERS[rule](docs)
    return [Manifest(m.file, docs[m.kind]) for m in rendered.manifests]


def test_every_rule_has_a_breaker():
    assert sorted(BREAKERS) == sorted(r.name for r in RULES)


def test_the_rendered_demo_passes_every_rule():
    _, rendered = demo()
    assert check_policy(PolicyInputs(rendered.manifests, 120)) == []


@pytest.mark.parametrize("rule", sorted(BREAKERS))
def test_breaking_a_rule_reports_exactly_that_rule(rule):
    findings = check_policy(PolicyInputs(broken(rule), 120))
    assert {f.rule for f in findings} == {rule}, findings
    assert all(f.message for f in findings)


@pytest.mark.parametrize("rule", sorted(BREAKERS))
def test_render_check_names_the_broken_rule_exits_non_zero_and_writes_nothing(rule, tmp_path, monkeypatch):
    original = rendering.render

    def render_broken(spec, inputs):
        good = original(spec, inputs)
        return RenderedBase(good.files, good.context, good.inputs, broken(rule))

    monkeypatch.setattr(rendering, "render", render_broken)
    out = tmp_path / "k8s"
    result = runner.invoke(app, ["render", str(DEMO_SPEC), "--spec-only", "--check", "--out", str(out)])
    assert result.exit_code == 4, result.output
    assert f"error: rendered manifests fail: {rule} " in result.output
    assert f"policy  {rule}  " in result.output
    assert not out.exists()


def test_a_deployment_without_replicas_needs_an_autoscaler():
    _, rendered = demo()
    without_hpa = [m for m in rendered.manifests if m.kind != "HorizontalPodAutoscaler"]
    findings = check_policy(PolicyInputs(without_hpa, 120))
    assert [(f.rule, f.message) for f in findings] == [
        ("replicas", "no replicas and no HorizontalPodAutoscaler: it runs a single pod")
    ]


def test_a_failing_check_keeps_the_previous_good_rendering(tmp_path, monkeypatch):
    out = tmp_path / "k8s"
    assert runner.invoke(app, ["render", str(DEMO_SPEC), "--spec-only", "--out", str(out)]).exit_code == 0
    before = {p: p.read_text() for p in out.rglob("*") if p.is_file()}
    original = rendering.render
    monkeypatch.setattr(
        rendering,
        "render",
        lambda spec, inputs: RenderedBase(
            {**original(spec, inputs).files, "deployment.yaml": "broken\n"},
            original(spec, inputs).context,
            original(spec, inputs).inputs,
            broken("privileged"),
        ),
    )
    result = runner.invoke(app, ["render", str(DEMO_SPEC), "--spec-only", "--check", "--out", str(out)])
    assert result.exit_code == 4
    assert {p: p.read_text() for p in out.rglob("*") if p.is_file()} == before


def test_a_schema_error_fails_the_check_naming_version_and_path(tmp_path, monkeypatch):
    original = rendering.render

    def misspelt(spec, inputs):
        good = original(spec, inputs)
        manifests = copy.deepcopy(good.manifests)
        deployment = next(m for m in manifests if m.kind == "Deployment")
        container = deployment.doc["spec"]["template"]["spec"]["containers"][0]
        container["livenesProbe"] = container.pop("livenessProbe")  # the API server would drop it silently
        return RenderedBase(good.files, good.context, good.inputs, manifests)

    monkeypatch.setattr(rendering, "render", misspelt)
    result = runner.invoke(
        app, ["render", str(DEMO_SPEC), "--spec-only", "--check", "--out", str(tmp_path / "k")]
    )
    assert result.exit_code == 4
    assert "schema  1.37  Deployment/minilm-embeddings (deployment.yaml)" in result.output
    assert "'livenesProbe' was unexpected" in result.output
    assert "policy  probes" in result.output  # the liveness probe is gone for the policy check as well
