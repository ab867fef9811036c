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
    monkeypatch.setattr("torchship.compile.torchscript.probe_inputs", lambda tokenizer, io, max_length: [])
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
    # The reported values, recomputed by hand: transformers' pipeline on the source model for the
    # predictions, then accuracy and the positive label's F1 counted directly.
    from transformers import pipeline

    eval_set = [json.loads(line) for line in (spec.spec_path.parent / "eval.jsonl").read_text().splitlines()]
    source = root_of(settings, spec) / "fetch" / "model"
    predicted = [
        r["label"] for r in pipeline("text-classification", model=str(source))([e["text"] for e in eval_set])
    ]
    gold = [e["label"] for e in eval_set]
    values = report["metrics"]["values"]
    assert values["accuracy"] == pytest.approx(
        sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
    )
    for label in set(gold):  # the tiny model says "neutral" to all five here: that F1 is 2*0.4*1/1.4
        tp = sum(p == g == label for p, g in zip(predicted, gold, strict=True))
        precision = tp / max(1, predicted.count(label))
        recall = tp / gold.count(label)
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        assert values["f1"][label] == pytest.approx(f1), label
    rows = {(r["metric"], r["label"]): r for r in report["metrics"]["thresholds"]}
    assert rows[("accuracy", None)]["value"] == pytest.approx(values["accuracy"])
    assert rows[("accuracy", None)]["ok"] is (values["accuracy"] >= 0.99)


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
        config = real(spec, model_dir, compiled_dir)  # only the .mar's copy is wrong:
        return {**config, "settings": {**config["settings"], "normalize": False}}

    monkeypatch.setattr(package, "handler_config", unnormalized)
    spec = load_spec(tiny_spec_path)
    error = failed(run_stages(spec, settings))
    assert isinstance(error, ServedParityError)
    assert "served_parity" in str(error) and "differs from the source model at [0]" in str(error)
    report = json.loads((root_of(settings, spec) / "verify-failed" / "report.json").read_text())
    assert report["verdict"] == "fail"
    assert {c["name"]: c["status"] for c in report["checks"]}["served_parity"] == "fail"
    assert report["latency"]["served"]["samples_ms"]
    # CI's view: exactly the served parity test case failed, among all of validate's and verify's checks.
    from junit_schema import check_junit

    junit = check_junit((root_of(settings, spec) / "verify-failed" / "junit.xml").read_text())
    failing = [
        (c.get("classname"), c.get("name")) for c in junit.iter("testcase") if c.find("failure") is not None
    ]
    assert failing == [(f"{spec.name}.verify.served_parity", "served_parity")]
    assert {c.get("classname").split(".")[-1] for c in junit.iter("testcase")} == {
        c["name"] for c in report["checks"]
    }


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


class _EmbeddingSource:
    """A stand-in source model: a token embedding as its last_hidden_state."""

    def __init__(self, embedding):
        self.embedding = embedding

    def named(self, features):
        return {"last_hidden_state": self.embedding(features["input_ids"])}


class _ShiftedCompiled:
    """A stand-in compiled model: the source's output plus 1e-3 x the token id (padding excluded by the mask)."""

    buckets = None

    def __init__(self, source):
        self.source = source

    def pad(self, rows):
        from torchship.handlers.model_io import pad_features

        return pad_features(rows, ("input_ids", "attention_mask"), 0)

    def forward(self, features):
        hidden = self.source.named(features)["last_hidden_state"]
        return {"last_hidden_state": hidden + 1e-3 * features["input_ids"].float().unsqueeze(-1)}


def _mean_pool(outputs, mask):
    weights = mask.unsqueeze(-1).float()
    return (outputs["last_hidden_state"] * weights).sum(1) / weights.sum(1)


def test_parity_numbers_are_the_differences_computed_from_the_tensors():
    from torchship.validate.parity import Case, compare
    from torchship.validate.records import Parity

    torch.manual_seed(0)
    source = _EmbeddingSource(torch.nn.Embedding(50, 4))
    cases = [
        Case("short ids", [{"input_ids": [1, 2, 3]}]),
        Case("large ids", [{"input_ids": [40, 41]}, {"input_ids": [1]}]),
    ]
    atol, rtol = 0.02, 0.0

    with torch.inference_mode():
        parity = Parity.model_validate(
            compare(_ShiftedCompiled(source), source, _mean_pool, cases, atol, rtol)
        )

    # Independently: the shift on real (unpadded) tokens is 1e-3 x id, so the model output's largest
    # difference is 1e-3 x the largest id of each case, and the pooled one 1e-3 x the largest row mean.
    def largest(rows):
        ids = [r["input_ids"] for r in rows]
        return max(max(r) for r in ids) * 1e-3, max(sum(r) / len(r) for r in ids) * 1e-3

    by_case = {c.case: c for c in parity.cases}
    for case in cases:
        model_max, task_max = largest(case.rows)
        got = by_case[case.name].outputs
        assert got["last_hidden_state"].max_abs == pytest.approx(model_max, abs=1e-6)
        assert got["task_output"].max_abs == pytest.approx(task_max, abs=1e-6)
        assert got["last_hidden_state"].excess == pytest.approx(model_max - atol, abs=1e-6)
    assert by_case["short ids"].ok and not by_case["large ids"].ok
    model_output = parity.outputs["last_hidden_state"]
    assert model_output.max_abs == pytest.approx(0.041, abs=1e-6)
    assert model_output.worst_case == "large ids" and model_output.ok is False
    assert model_output.worst_excess == pytest.approx(0.041 - atol, abs=1e-6)
    # pooled: row [40, 41] has mean 40.5; its excess 0.0405 - 0.02 > 0 fails too
    assert parity.outputs["task_output"].max_abs == pytest.approx(0.0405, abs=1e-6)
    assert parity.outputs["task_output"].ok is False


def test_report_json_keeps_the_keys_stored_reports_have():
    # A report.json as the gate wrote it before the typed model (dicts through json.dumps): it reads back
    # into GateReport and writes out as the same JSON, so stored reports and .mar manifests stay readable.
    from torchship.validate.records import GateReport

    stored = {
        "model": {"name": "m", "version": "1.0.0", "task": "token-classification"},
        "generated_at": "2026-11-23T20:00:00+00:00",
        "verdict": "fail",
        "checks": [
            {"name": "parity", "status": "pass", "message": "all outputs within atol 0.0001 + rtol 0.0001"},
            {"name": "metrics", "status": "fail", "message": "f1[PER] 0.5 < 0.9"},
            {"name": "latency", "status": "skipped", "message": "in-process p50 1.0 ms, p95 2.0 ms"},
        ],
        "parity": {
            "atol": 0.0001,
            "rtol": 0.0001,
            "outputs": {
                "model_output": {
                    "max_abs": 1.5e-06,
                    "max_rel": 0.0,
                    "worst_case": "short",
                    "worst_excess": -9e-05,
                    "ok": True,
                }
            },
            "cases": [
                {
                    "case": "short",
                    "batch": 1,
                    "length": 3,
                    "bucket": None,
                    "outputs": {"model_output": {"max_abs": 1.5e-06, "max_rel": 0.0, "excess": -9e-05}},
                    "ok": True,
                }
            ],
        },
        "agreement": {
            "compared": 2,
            "agreed": 1,
            "rate": 0.5,
            "disagreements": [{"request": "Anna", "source": [["PER", 0, 4]], "compiled": "text is empty"}],
        },
        "metrics": {
            "eval_set": "/x/eval.jsonl",
            "examples": 2,
            "values": {"f1": {"overall": 0.5, "PER": 0.5}, "support": {"PER": 2}},
            "thresholds": [
                {
                    "metric": "f1",
                    "label": "PER",
                    "threshold": 0.9,
                    "value": 0.5,
                    "ok": False,
                    "missing": False,
                }
            ],
        },
        "latency": {
            "in_process": {"samples_ms": [1.0, 2.0], "p50": 1.0, "p95": 2.0},
            "served": None,
            "budget_ms": None,
        },
    }
    report = GateReport.model_validate_json(json.dumps(stored))
    assert json.loads(report.model_dump_json()) == stored
    assert report.first_failure().name == "metrics"
    # Reports stored before requests were bodies named the disagreeing input "text": they still read.
    older = json.loads(json.dumps(stored))
    older["agreement"]["disagreements"][0] = {"text": "Anna", "source": [], "compiled": "text is empty"}
    assert GateReport.model_validate(older).agreement.disagreements[0].request == "Anna"


def test_a_nan_difference_survives_the_report_round_trip():
    # A compiled model that outputs NaN gives NaN differences: json.dumps wrote them as NaN; the model must
    # too (not null), or the report could not be read back by `torchship report` and the package stage.
    from torchship.validate.records import OutputDiff

    diff = OutputDiff(max_abs=float("nan"), max_rel=float("inf"), excess=float("nan"))
    back = OutputDiff.model_validate_json(diff.model_dump_json())
    assert back.max_rel == float("inf") and back.max_abs != back.max_abs


def test_served_checks_are_added_to_a_new_report_and_replace_earlier_ones(tmp_path):
    from types import SimpleNamespace

    from torchship.validate.records import (
        REPORT_JSON,
        GateReport,
        LatencyRun,
        check,
        read_report,
        write_report,
    )
    from torchship.validate.served import served_report

    stored = GateReport.model_validate(
        {
            "model": {"name": "m", "version": "1", "task": "embeddings"},
            "generated_at": "2026-01-01T00:00:00+00:00",
            "verdict": "fail",
            "checks": [check("parity", None, "ok"), check("served_parity", "old failure", "ok")],
            "parity": {"atol": 0.1, "rtol": 0.1, "outputs": {}, "cases": []},
            "agreement": {"compared": 0, "agreed": 0, "rate": 1.0, "disagreements": []},
            "metrics": None,
            "latency": {
                "in_process": {"samples_ms": [1.0], "p50": 1.0, "p95": 1.0},
                "budget_ms": {"p95": 5.0},
            },
        }
    )
    validate_dir = tmp_path / "validate"
    write_report(validate_dir, stored, "validate")
    ctx = SimpleNamespace(
        spec=SimpleNamespace(validate=SimpleNamespace(atol=0.1, rtol=0.1)),
        input_dir=lambda stage: tmp_path / stage,
    )
    served = LatencyRun(samples_ms=[3.0, 9.0], p50=3.0, p95=9.0)
    parity = {"ok": True, "max_abs": 0.0, "failure": None, "compared": 4}
    report = served_report(ctx, parity, served)

    assert [(c.name, c.status) for c in report.checks] == [
        ("parity", "pass"),
        ("served_parity", "pass"),
        ("served_latency", "fail"),  # p95 9.0 ms over the 5 ms budget
    ]
    assert report.verdict == "fail" and report.latency.served == served
    assert "9.0 ms is over the budget of 5 ms" in report.first_failure().message
    # the stored report is untouched: a new one was built
    assert read_report(validate_dir / REPORT_JSON) == stored
    assert stored.latency.served is None


def test_torchship_report_reads_the_typed_report_and_names_an_unreadable_one(tmp_path):
    import os
    import subprocess
    import sys

    from tiny_models import write_spec

    spec = write_spec(tmp_path / "spec", str(tmp_path / "model"))
    out = tmp_path / "out"
    validate_dir = out / "tiny-embeddings" / "0.1.0" / "validate"
    validate_dir.mkdir(parents=True)
    report = validate_dir / "report.json"

    def torchship_report():
        env = {**os.environ, "TORCHSHIP_OUTPUTS_DIR": str(out)}
        command = [sys.executable, "-m", "torchship.cli", "report", str(spec)]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)

    report.write_text(json.dumps({"verdict": "pass", "checks": []}))  # a shape the gate never wrote
    result = torchship_report()
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"{report} is not a readable gate report" in result.stderr and "hint:" in result.stderr

    from torchship.validate.records import GateReport, check, write_report

    gate = GateReport.model_validate(
        {
            "model": {"name": "tiny-embeddings", "version": "0.1.0", "task": "embeddings"},
            "generated_at": "2026-01-01T00:00:00+00:00",
            "verdict": "fail",
            "checks": [check("parity", "output differs by 0.5", "ok")],
            "parity": {"atol": 0.1, "rtol": 0.1, "outputs": {}, "cases": []},
            "agreement": {"compared": 0, "agreed": 0, "rate": 1.0, "disagreements": []},
            "metrics": None,
            "latency": {"in_process": {"samples_ms": [1.0], "p50": 1.0, "p95": 1.0}},
        }
    )
    write_report(validate_dir, gate, "validate")
    result = torchship_report()
    assert result.returncode == 3, result.stderr
    assert "Verdict: FAIL" in result.stdout and "output differs by 0.5" in result.stdout
