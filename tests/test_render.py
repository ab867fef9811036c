"""`torchship render`: the kustomize base, its derivations from measurements, and the committed k8s/."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from deploy_helpers import REPO, container, demo, doc, rendered_for, spec_file, write_image_record
from torchship.cli import app
from torchship.deploy.check import check_base
from torchship.deploy.errors import DeployError
from torchship.deploy.inputs import gather_inputs
from torchship.deploy.monitoring import MONITORING_FILES
from torchship.deploy.render import RENDERED_FILES, write_base
from torchship.errors import SpecError
from torchship.settings import Settings
from torchship.spec import load_spec

runner = CliRunner()


def test_demo_base_passes_schemas_of_the_three_newest_versions_and_every_rule():
    spec, rendered = demo()
    report = check_base(rendered, spec)
    assert report.versions == ["1.35", "1.36", "1.37"]
    assert report.ok, report.lines()
    kinds = sorted(m.kind for m in rendered.manifests)
    assert kinds == sorted(
        ["ServiceAccount", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
         "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"]
    )  # fmt: skip


def test_committed_k8s_is_the_rendering_of_the_demo_spec():
    _, rendered = demo()
    committed = sorted(str(p.relative_to(REPO / "k8s")) for p in (REPO / "k8s").rglob("*") if p.is_file())
    assert committed == sorted([*RENDERED_FILES, *MONITORING_FILES])
    for name, text in rendered.files.items():
        assert (REPO / "k8s" / name).read_text() == text, (
            f"k8s/{name} is stale: torchship render models/minilm-embeddings/model.yaml --out k8s --spec-only"
        )


def test_service_and_network_policy_expose_only_inference_and_metrics():
    _, rendered = demo()
    ports = {p["port"] for p in doc(rendered, "Service")["spec"]["ports"]}
    assert ports == {8080, 8082}
    assert {p["containerPort"] for p in container(rendered)["ports"]} == {8080, 8082}
    policy = doc(rendered, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []
    inference, metrics = policy["ingress"]
    assert inference["from"] == [
        {"podSelector": {"matchLabels": {"torchship/client-of": "minilm-embeddings"}}}
    ]
    assert inference["ports"] == [{"port": "http-inference", "protocol": "TCP"}]
    assert metrics["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert doc(rendered, "ServiceAccount")["automountServiceAccountToken"] is False


def test_restricted_security_context_and_writable_paths_as_emptydirs():
    _, rendered = demo()
    pod = doc(rendered, "Deployment")["spec"]["template"]["spec"]
    sc = container(rendered)["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (10001, 10001, True)
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert (
        sc["capabilities"] == {"drop": ["ALL"]}
        and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    )
    mounts = {m["mountPath"]: m["name"] for m in container(rendered)["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/var/log/torchship"}
    assert all({"name": name, "emptyDir": {}} in pod["volumes"] for name in mounts.values())
    # The autoscaler owns the scale (re-applying a replicas field would fight it): two pods at least.
    assert "replicas" not in doc(rendered, "Deployment")["spec"]
    assert doc(rendered, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 2
    assert doc(rendered, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "minilm-embeddings"


def test_image_json_names_the_image_and_sizes_the_startup_probe(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    outputs = tmp_path / "outputs"
    write_image_record(outputs, spec, time_to_ready_s=19.2)
    rendered = rendered_for(spec, gather_inputs(spec, Settings(outputs_dir=outputs)))
    c = container(rendered)
    # Not pushed: image.json's digest is the local image ID, which no registry serves; the tag pins it.
    assert c["image"] == "localhost/torchship/tiny-embeddings:0.1.0"
    assert rendered.inputs.image_pinned_by == "tag"
    # 3 x 19.2 s + 30 s = 87.6 → 88 s of budget in 5 s periods = 18 tries.
    assert c["startupProbe"]["failureThreshold"] == 18 and c["startupProbe"]["periodSeconds"] == 5
    assert c["startupProbe"]["exec"]["command"] == ["/opt/torchship/bin/probe", "ready"]
    assert c["readinessProbe"]["exec"]["command"] == ["/opt/torchship/bin/probe", "ready"]
    assert c["livenessProbe"]["exec"]["command"] == ["/opt/torchship/bin/probe", "live"]
    # Rollout: 2 pods one after the other, each 88 s + one 5 s readiness period, + 120 s image pull.
    assert rendered.context.derived.rollout_timeout_s == 2 * (88 + 5) + 120
    assert doc(rendered, "Deployment")["spec"]["progressDeadlineSeconds"] == 88 + 5 + 120


def test_a_pushed_image_is_deployed_from_its_registry_by_digest(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    pushed = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/torchship/tiny@sha256:" + "cd" * 32
    write_image_record(tmp_path / "out", spec, pushed=pushed)
    rendered = rendered_for(spec, gather_inputs(spec, Settings(outputs_dir=tmp_path / "out")))
    assert container(rendered)["image"] == pushed and rendered.inputs.image_pinned_by == "digest"
    assert check_base(rendered, spec).ok


def test_verify_startup_is_the_measurement_when_no_image_was_built(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    record = tmp_path / "out" / spec.name / spec.version / "verify" / "stage.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"details": {"startup_s": 10.0}}))
    inputs = gather_inputs(spec, Settings(outputs_dir=tmp_path / "out"))
    assert (inputs.time_to_ready_s, inputs.time_to_ready_source) == (10.0, "verify")
    # 3 x 10 + 30 = 60 s → 12 tries of 5 s
    assert container(rendered_for(spec, inputs))["startupProbe"]["failureThreshold"] == 12
    assert inputs.image == "torchship/tiny-embeddings:0.1.0" and inputs.image_pinned_by == "tag"


@pytest.mark.parametrize(
    ("cpu_limit", "workers", "threads"), [("4", 2, "2"), ("1500m", 1, "1"), ("2", 1, "2"), ("1", 3, "1")]
)
def test_threads_follow_the_cpu_limit_and_workers(tmp_path, cpu_limit, workers, threads):
    spec = load_spec(spec_file(tmp_path, deploy=f"{{cpu_limit: '{cpu_limit}'}}", workers=workers))
    env = doc(rendered_for(spec), "ConfigMap")["data"]
    assert env["TORCHSHIP_THREADS"] == threads and env["OMP_NUM_THREADS"] == threads
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"  # serve.omp_wait_policy's default
    assert env["TORCHSHIP_WORKERS"] == str(workers)


def test_grace_covers_prestop_and_the_response_timeout(tmp_path):
    spec = load_spec(spec_file(tmp_path, deploy="{prestop_sleep_s: 7}", timeout=60))
    rendered = rendered_for(spec)
    pod = doc(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 7 + 60 + 5
    assert container(rendered)["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "7"]


def test_neuron_spec_asks_for_devices_nodes_and_tolerations(tmp_path):
    spec = load_spec(spec_file(tmp_path, deploy="{neuron: 2}", backend="neuron"))
    rendered = rendered_for(spec)
    c = container(rendered)
    assert c["resources"]["limits"]["aws.amazon.com/neuron"] == 2
    assert c["resources"]["requests"]["aws.amazon.com/neuron"] == 2
    pod = doc(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "inf2.xlarge"}
    assert pod["tolerations"] == [
        {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert check_base(rendered, spec).ok
    cpu = rendered_for(load_spec(spec_file(tmp_path)))
    assert "aws.amazon.com/neuron" not in container(cpu)["resources"]["limits"]
    assert "tolerations" not in doc(cpu, "Deployment")["spec"]["template"]["spec"]


def test_neuron_devices_without_a_neuron_compile_is_an_error(tmp_path):
    spec = load_spec(spec_file(tmp_path, deploy="{neuron: 1}"))
    with pytest.raises(DeployError, match=re.escape("compile.backend is 'torchscript'")):
        rendered_for(spec)


def test_bad_deploy_values_name_the_key(tmp_path):
    with pytest.raises(SpecError, match=re.escape("deploy.cpu_limit")):
        load_spec(spec_file(tmp_path, deploy="{cpu_limit: two}"))
    with pytest.raises(SpecError, match=re.escape("unknown key 'deploy.replica'")):
        load_spec(spec_file(tmp_path, deploy="{replica: 3}"))


def test_unsupported_kubernetes_version_is_a_clear_error(tmp_path):
    spec = load_spec(spec_file(tmp_path, deploy="{kubernetes_versions: ['1.20']}"))
    with pytest.raises(DeployError, match=re.escape("no bundled schemas for 1.20")):
        check_base(rendered_for(spec), spec)


def test_write_refuses_a_directory_with_foreign_files_and_leaves_it_alone(tmp_path):
    target = tmp_path / "k8s"
    target.mkdir()
    (target / "mine.yaml").write_text("keep me\n")
    _, rendered = demo()
    with pytest.raises(DeployError, match="did not render"):
        write_base(rendered.files, target)
    assert [p.name for p in target.iterdir()] == ["mine.yaml"]
    write_base(rendered.files, tmp_path / "fresh")
    write_base(rendered.files, tmp_path / "fresh")  # re-rendering our own output replaces it
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == sorted([*RENDERED_FILES, "monitoring"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_render_check_writes_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    result = runner.invoke(
        app, ["render", str(spec_file(tmp_path)), "--out", str(tmp_path / "k8s"), "--check"]
    )
    assert result.exit_code == 0, result.output
    assert "0 policy finding(s) from 26 rules" in result.output
    assert "against Kubernetes 1.35, 1.36, 1.37" in result.output
    deployment = yaml.safe_load((tmp_path / "k8s" / "deployment.yaml").read_text())
    assert deployment["kind"] == "Deployment"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_the_committed_base():
    built = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "k8s")], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(built.stdout) if d]
    assert "Deployment" in kinds and len(kinds) == 7


def test_a_broken_image_record_is_a_clear_error(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    path = write_image_record(tmp_path / "out", spec)
    path.write_text(path.read_text().replace('"uid": 10001', '"uid": "ten"'))
    with pytest.raises(DeployError, match=r"image\.json is not a valid image record") as info:
        gather_inputs(spec, Settings(outputs_dir=tmp_path / "out"))
    assert "torchship image" in info.value.hint
