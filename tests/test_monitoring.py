"""`torchship render`'s monitoring folder: the ServiceMonitor, the alert rules that fit the model, the
dashboard, what `render --check` refuses, and the spec values that cannot make a sensible alert."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from deploy_helpers import rendered_for, spec_file
from torchship.deploy.check import check_base
from torchship.deploy.inputs import DeployInputs, gather_inputs, unmeasured_inputs
from torchship.deploy.monitoring import DASHBOARD, PROMETHEUS_RULE, SERVICE_MONITOR, MonitoringError
from torchship.settings import Settings
from torchship.spec import load_spec

CLASSIFIER = """name: tiny-sentiment
version: 0.1.0
task: text-classification
source: ./model
validate: {{latency_ms: {{p95: 40}}}}
monitoring: {monitoring}
"""
# What verify's answer sheet gave: 3 texts "positive", 1 "negative".
VERIFIED = {"positive": 3, "negative": 1}


def classifier(tmp_path, monitoring: str = "{}", **measured) -> tuple:
    path = tmp_path / "spec" / "model.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CLASSIFIER.format(monitoring=monitoring))
    spec = load_spec(path)
    inputs = dataclasses.replace(
        unmeasured_inputs(spec), **{"verified_labels": VERIFIED, "served_p50_ms": 12.0, **measured}
    )
    return spec, inputs


def rules_of(rendered) -> dict[str, dict]:
    doc = yaml.safe_load(rendered.files[PROMETHEUS_RULE])
    return {r.get("alert") or f"{r['record']}{r.get('labels', {}).get('label', '')}": r
            for g in doc["spec"]["groups"] for r in g["rules"]}  # fmt: skip


def test_a_classifier_gets_every_alert_its_label_shares_and_passes_the_check(tmp_path):
    spec, inputs = classifier(tmp_path, "{labels: {release: kube-prometheus-stack}}")
    rendered = rendered_for(spec, inputs)
    rules = rules_of(rendered)
    assert {name for name in rules if name.startswith("Torchship")} == {
        "TorchshipErrorRatio", "TorchshipLatencyP99", "TorchshipBatchesFull", "TorchshipQueueWait",
        "TorchshipNoTraffic", "TorchshipWorkerRestarts", "TorchshipLabelShift",
    }  # fmt: skip
    assert rules["torchship:verified_label_sharepositive"]["expr"] == "vector(0.75)"
    assert rules["torchship:verified_label_sharenegative"]["expr"] == "vector(0.25)"
    assert "> 0.04" in rules["TorchshipLatencyP99"]["expr"]  # validate.latency_ms.p95 40 ms, in seconds
    assert "> 0.25" in rules["TorchshipLabelShift"]["expr"]  # the default shift
    monitor = yaml.safe_load(rendered.files[SERVICE_MONITOR])
    service = next(m.doc for m in rendered.manifests if m.kind == "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    dashboard = json.loads(rendered.files[DASHBOARD])
    assert "Served label distribution" in [p["title"] for p in dashboard["panels"]]
    report = check_base(rendered, spec)
    assert report.ok, report.lines()
    assert "ServiceMonitor" in report.own_schema_kinds and "PrometheusRule" in report.own_schema_kinds
    assert "0 monitoring finding(s)" in report.summary()


def test_an_embedding_model_has_no_label_alert_and_asking_for_one_names_its_metrics(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    rendered = rendered_for(spec)
    assert "TorchshipLabelShift" not in rules_of(rendered)
    assert "torchship_served_labels" not in rendered.files[DASHBOARD]
    path = spec_file(tmp_path / "asks")
    path.write_text(path.read_text() + "monitoring: {label_shift: 0.3}\n")
    with pytest.raises(MonitoringError) as info:
        rendered_for(load_spec(path))
    assert "task 'embeddings' answers with no label" in info.value.message
    assert "torchship_requests" in info.value.message and "torchship_served_labels" not in info.value.message
    assert "monitoring.label_shift" in info.value.hint


def test_a_p99_budget_below_the_measured_p50_is_refused_at_render(tmp_path):
    spec, inputs = classifier(tmp_path, "{latency_p99_ms: 10}", served_p50_ms=12.5)
    with pytest.raises(
        MonitoringError,
        match=r"10 ms \(monitoring.latency_p99_ms\) is below the p50 verify measured, 12.5 ms",
    ):
        rendered_for(spec, inputs)
    spec, inputs = classifier(tmp_path / "ok", "{latency_p99_ms: 30}", served_p50_ms=12.5)
    assert "> 0.03" in rules_of(rendered_for(spec, inputs))["TorchshipLatencyP99"]["expr"]


def test_null_thresholds_leave_their_alerts_out_and_no_verified_answers_no_shift_alert(tmp_path):
    spec, inputs = classifier(tmp_path, "{error_ratio: null, no_traffic_minutes: null}", verified_labels={})
    rendered = rendered_for(spec, inputs)
    names = set(rules_of(rendered))
    assert not {"TorchshipErrorRatio", "TorchshipNoTraffic", "TorchshipLabelShift"} & names
    assert "no label-shift alert: no verified answers" in rendered.files[PROMETHEUS_RULE]


def test_the_check_rejects_a_broken_dashboard_and_a_query_on_a_metric_the_model_lacks(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    rendered = rendered_for(spec)
    dashboard = json.loads(rendered.files[DASHBOARD])
    del dashboard["panels"][0]["gridPos"]
    broken = dataclasses.replace(rendered, files={**rendered.files, DASHBOARD: json.dumps(dashboard)})
    report = check_base(broken, spec)
    assert not report.ok
    assert any("'gridPos' is a required property" in line for line in report.lines()), report.lines()
    rule = rendered.files[PROMETHEUS_RULE].replace("torchship_worker_starts{", "torchship_served_labels{")
    report = check_base(dataclasses.replace(rendered, files={**rendered.files, PROMETHEUS_RULE: rule}), spec)
    assert any(
        "queries torchship_served_labels, which this model does not have" in line for line in report.lines()
    )
    with pytest.raises(Exception, match="monitoring"):
        report.raise_if_failed()


def test_render_reads_the_verified_label_shares_and_the_served_p50_from_verify(tmp_path):
    path = tmp_path / "spec" / "model.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(CLASSIFIER.format(monitoring="{}"))
    spec = load_spec(path)
    verify = tmp_path / "outputs" / spec.name / spec.version / "verify"
    verify.mkdir(parents=True)
    ranked = lambda label: [{"label": label, "score": 0.9}, {"label": "other", "score": 0.1}]  # noqa: E731
    requests = [{"text": "a"}, {"texts": ["b", "c"]}, {"text": "d", "top_k": 1}]
    answers = [ranked("positive"), [ranked("negative"), ranked("positive")], ranked("positive")[:1]]
    (verify / "answers.json").write_text(json.dumps({"requests": requests, "answers": answers}))
    (verify / "stage.json").write_text(json.dumps({"details": {"latency_ms": {"p50": 7.5, "p95": 9.0}}}))
    inputs: DeployInputs = gather_inputs(spec, Settings(outputs_dir=tmp_path / "outputs"))
    assert inputs.verified_labels == {"positive": 3, "negative": 1}
    assert inputs.served_p50_ms == 7.5
