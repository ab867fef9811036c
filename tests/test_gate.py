"""The fail-closed gate: each way a compiled model can differ from its source is caught, explained, and
stops the pipeline before anything is packaged."""

import json

import pytest
import torch

from conftest import run_stages
from tiny_models import LengthDependent, save_tiny_classifier, write_spec
from torchship.errors import ServedParityError, ValidationFailed
from torchship.modeling import load_source_model
from torchship.spec import load_spec


def root_of(settings, spec):
    return settings.stage_root(spec.name, spec.version)


def failed(outcomes):
    assert outcomes[-1].status == "failed", [o.status for o in outcomes]
    return outcomes[-1].error


def test_a_trace_wrong_at_other_lengths_fails_the_gate(tiny_spec_path, settings, monkeypatch):
    length_dependent = lambda model_dir, task, *_: LengthDependent(load_source_model(model_dir, task))  # noqa: E731
    monkeypatch.setattr("torchship.compile.load_source_model", length_dependent)
    monkeypatch.setattr("torchship.validate.gate.load_source_model", length_dependent)
    # Defeat compile's own shape probes, so that only the gate stands between this trace and a .mar.
    monkeypatch.setattr("torchship.compile.torchscript.probe_inputs", lambda tokenizer, max_length: [])
    spec = load_spec(tiny_spec_path)
    error = failed(run_stages(spec, settings, until="package"))
    assert isinstance(error, ValidationFailed) and error.exit_code == 3
    assert "validation gate failed: parity" in str(error) and "length" in str(error)
    root = root_of(settings, spec)
    assert not (root / "validate").exists() and not (root / "package").exists()
    report = json.loads((root / "validate-failed" / "report.json").read_text())
    bad = [c for c in report["parity"]["cases"] if not c["ok"]]
    assert bad and all(c["length"] > 16 for c in bad)
    assert all(c["ok"] for c in report["parity"]["cases"] if c["length"] <= 16)
    assert (root / "validate-failed" / "report.html").is_file()
    assert "validate-failed/report.html" in error.hint


def test_a_perturbed_weight_in_the_compiled_copy_fails_the_gate(tiny_spec_path, settings, monkeypatch):
    def perturbed(model_dir, task, *_):
        model = load_source_model(model_dir, task)
        with torch.no_grad():
            model.model.encoder.layer[1].attention.self.query.weight[0, 0] += 0.5
        return model

    monkeypatch.setattr("torchship.compile.load_source_model", perturbed)
    spec = load_spec(tiny_spec_path)
    error = failed(run_stages(spec, settings, until="package"))
    assert isinstance(error, ValidationFailed)
    assert "parity" in str(error) and "differs from the source" in str(error) and "by up to" in str(error)
    assert not (root_of(settings, spec) / "package").exists()


@pytest.fixture
def sentiment_with_eval_set(tmp_path, tiny_model_dir):
    model_dir = save_tiny_classifier(tmp_path / "model", "bert")
    texts = [
        "a great movie , i love it !",
        "this film was terrible",
        "ok",
        "the cat sat on the mat",
        "hello world",
    ]
    eval_lines = [
        json.dumps({"text": t, "label": label})
        for t, label in zip(texts, ["positive", "negative", "neutral", "neutral", "positive"], strict=True)
    ]
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "eval.jsonl").write_text("\n".join(eval_lines) + "\n")

    def spec_with(thresholds: str):
        return write_spec(
            tmp_path / "spec",
            str(model_dir),
            name="tiny-sentiment",
            task="text-classification",
            extra=f"validate: {{examples: examples.jsonl, eval_set: eval.jsonl, thresholds: {thresholds}}}\n",
        )

    return spec_with


def _without_duplicate_validate(path):
    """write_spec writes a validate line; the test's own validate line (appended) must be the only one."""
    lines = path.read_text().splitlines()
    validate = [i for i, line in enumerate(lines) if line.startswith("validate:")]
    del lines[validate[0]]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_metric_below_its_threshold_fails_the_gate(sentiment_with_eval_set, settings):
    spec = load_spec(
        _without_duplicate_validate(sentiment_with_eval_set("{accuracy: 0.99, f1: {positive: 0.95}}"))
    )
    error = failed(run_stages(spec, settings, until="package"))
    assert isinstance(error, ValidationFailed)
    assert "validation gate failed: metrics" in str(error) and "below its threshold" in str(error)
    report = json.loads((root_of(settings, spec) / "validate-failed" / "report.json").read_text())
    assert report["metrics"]["examples"] == 5
    assert any(not row["ok"] for row in report["metrics"]["thresholds"])


def test_met_thresholds_pass_and_reach_the_package_manifest(sentiment_with_eval_set, settings):
    import zipfile

    spec = load_spec(
        _without_duplicate_validate(sentiment_with_eval_set("{accuracy: 0.0, f1: {neutral: 0.0}}"))
    )
    outcomes = run_stages(spec, settings, until="package")
    assert outcomes[-1].status == "ran", outcomes[-1].error
    mar = root_of(settings, spec) / "package" / "tiny-sentiment.mar"
    with zipfile.ZipFile(mar) as archive:
        gate = json.loads(archive.read("torchship.json"))["gate"]
    assert gate["verdict"] == "pass"
    assert {c["name"]: c["status"] for c in gate["checks"]}["metrics"] == "pass"


def test_a_latency_budget_that_is_missed_fails_the_gate(tiny_spec_path, settings):
    text = tiny_spec_path.read_text().replace("rtol: 1.0e-4}", "rtol: 1.0e-4, latency_ms: {p95: 0.001}}")
    tiny_spec_path.write_text(text)
    spec = load_spec(tiny_spec_path)
    error = failed(run_stages(spec, settings, until="validate"))
    assert "validation gate failed: latency" in str(error) and "over the budget of 0.001 ms" in str(error)


@pytest.mark.torchserve
def test_a_served_response_that_differs_fails_verify(tiny_spec_path, settings, monkeypatch):
    from torchship.archiver import package

    real = package.handler_config

    def unnormalized(spec, model_dir, compiled_dir=None):
        return {**real(spec, model_dir, compiled_dir), "normalize": False}  # only the .mar's copy is wrong

    monkeypatch.setattr(package, "handler_config", unnormalized)
    spec = load_spec(tiny_spec_path)
    error = failed(run_stages(spec, settings))
    assert isinstance(error, ServedParityError)
    assert "served_parity" in str(error) and "differs from the source model at [0]" in str(error)
    report = json.loads((root_of(settings, spec) / "verify-failed" / "report.json").read_text())
    assert report["verdict"] == "fail"
    assert {c["name"]: c["status"] for c in report["checks"]}["served_parity"] == "fail"
    assert report["latency"]["served"]["samples_ms"]


def test_the_served_check_uses_only_the_shared_report_module_not_gate_internals():
    # served.py (verify stage) once imported seven private helpers of gate.py (validate stage); what both
    # stages need now lives in validate/records.py under public names.
    import ast
    from pathlib import Path

    import torchship.validate.served as served

    tree = ast.parse(Path(served.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "torchship.validate.gate" not in imported
    assert "torchship.validate.records" in imported


def test_percentile_is_the_nearest_rank_numpy_computes():
    import numpy as np

    from torchship.validate.records import percentile

    samples = [float(x) for x in torch.randperm(37, generator=torch.Generator().manual_seed(3)).tolist()]
    for q in (0.0, 0.5, 0.95, 1.0):
        assert percentile(samples, q) == float(np.percentile(samples, q * 100, method="nearest"))


def test_a_check_verdict_fails_on_any_failure_but_not_on_a_skip():
    from torchship.validate.records import LatencyRun, check, latency_failure, verdict_of

    passing, skipped = check("parity", None, "ok"), check("latency", None, "no budget", skipped=True)
    failing = check("metrics", "accuracy 0.5 < 0.9", "ok")
    assert (passing.status, skipped.status, failing.status) == ("pass", "skipped", "fail")
    assert failing.message == "accuracy 0.5 < 0.9"
    assert verdict_of([passing, skipped]) == "pass"
    assert verdict_of([passing, skipped, failing]) == "fail"
    over = latency_failure(LatencyRun(samples_ms=[4.0, 12.5], p50=4.0, p95=12.5), {"p95": 10.0}, "served")
    assert over is not None and "p95" in over and "2.5 ms" in over
    within = LatencyRun(samples_ms=[4.0, 9.0], p50=4.0, p95=9.0)
    assert latency_failure(within, {"p50": 5.0, "p95": 10.0}, "served") is None
