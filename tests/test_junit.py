"""junit.xml: the gate's checks as JUnit test cases, the file CodeBuild's test reports (and Jenkins) read."""

from __future__ import annotations

import json

import pytest

from conftest import run_stages
from junit_schema import check_junit
from tiny_models import LengthDependent
from torchship.modeling import load_source_model
from torchship.spec import load_spec
from torchship.validate.junit import render_junit
from torchship.validate.records import REPORT_JSON, REPORT_JUNIT, GateReport, read_report

HOSTILE = "<b>\"Tom\" & 'Jerry'</b> \x01\x1b ]]> \ud800"


def _case(name: str, batch: int, length: int, bucket: int | None, task_abs: float) -> dict:
    return {
        "case": name,
        "batch": batch,
        "length": length,
        "bucket": bucket,
        "outputs": {
            "model_output": {"max_abs": 1e-6, "max_rel": 1e-5, "excess": 1e-6 - 1e-4},
            "task_output": {"max_abs": task_abs, "max_rel": task_abs * 10, "excess": task_abs - 1e-4},
        },
        "ok": task_abs <= 1e-4,
    }


def report_dict(**changes) -> dict:
    """A verify report of a token-classification model: one parity case and the PER f1 threshold fail."""
    report = {
        "model": {"name": "ner", "version": "1.3.0", "task": "token-classification"},
        "generated_at": "2026-06-14T09:31:07+00:00",
        "torchship_version": "0.1.0",
        "verdict": "fail",
        "checks": [
            {"name": "source_model", "status": "pass", "message": "fits", "seconds": 0.25},
            {"name": "parity", "status": "fail", "message": "task_output differs", "seconds": 1.5},
            {"name": "agreement", "status": "pass", "message": "12 of 12 texts answered the same"},
            {"name": "metrics", "status": "fail", "message": "f1[PER] below", "seconds": 0.5},
            {"name": "latency", "status": "skipped", "message": "in-process p50 1 ms"},
            {"name": "served_parity", "status": "pass", "message": "17 served results equal"},
            {"name": "served_latency", "status": "skipped", "message": "served p50 3 ms"},
        ],
        "parity": {
            "atol": 1e-4,
            "rtol": 1e-3,
            "outputs": {},
            "cases": [
                _case("examples[0:8]", 8, 41, None, 2e-5),
                _case("bucket 64 (length 64), batch 1", 1, 64, 64, 3e-5),
                _case("bucket 64 + 1 (length 65), batch 3", 3, 65, 128, 0.25),
                _case("max_length (length 128), batch 8", 8, 128, 128, 4e-5),
            ],
        },
        "agreement": {"compared": 12, "agreed": 12, "rate": 1.0, "disagreements": []},
        "metrics": {
            "eval_set": "eval.jsonl",
            "examples": 50,
            "values": {},
            "thresholds": [
                {"metric": "accuracy", "label": None, "threshold": 0.9, "value": 0.95, "ok": True},
                {"metric": "f1", "label": "PER", "threshold": 0.9, "value": 0.8, "ok": False},
                {"metric": "f1", "label": "LOC", "threshold": 0.5, "value": 0.7, "ok": True},
            ],
        },
        "latency": {"in_process": {"samples_ms": [1.0, 2.0], "p50": 1.0, "p95": 2.0}},
    }
    report.update(changes)
    return report


def cases_of(root) -> dict[str, dict]:
    """testcase (classname, name) -> {'outcome': failure|skipped|pass, 'message': ..., 'time': ...}."""
    out = {}
    for case in root.iter("testcase"):
        outcome = next((c for c in case if c.tag in ("failure", "skipped")), None)
        out[(case.get("classname"), case.get("name"))] = {
            "outcome": outcome.tag if outcome is not None else "pass",
            "message": outcome.get("message") if outcome is not None else None,
            "body": (outcome.text if outcome is not None else case.findtext("system-out")) or "",
            "time": case.get("time"),
        }
    return out


def test_one_suite_with_a_test_case_per_parity_case_output_threshold_and_check():
    report = GateReport.model_validate(report_dict())
    root = check_junit(render_junit(report, "verify"))
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "ner 1.3.0 verify"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["torchship_version"] == "0.1.0" and properties["verdict"] == "fail"

    # Counted from the report by hand: 4 cases x 2 outputs, 3 thresholds, 5 other checks.
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == (
        "16",
        "2",
        "2",
        "0",
    )
    cases = cases_of(root)
    failed = {key for key, case in cases.items() if case["outcome"] == "failure"}
    assert failed == {
        ("ner.verify.parity", "bucket 64 + 1 (length 65), batch 3 · task_output"),
        ("ner.verify.metrics", "f1 [PER]"),
    }
    skipped = {key[1]: case["message"] for key, case in cases.items() if case["outcome"] == "skipped"}
    assert skipped == {"latency": "in-process p50 1 ms", "served_latency": "served p50 3 ms"}
    for check in ("source_model", "agreement", "served_parity"):
        assert cases[(f"ner.verify.{check}", check)]["outcome"] == "pass"
    assert {name for (classname, name) in cases if classname == "ner.verify.metrics"} == {
        "accuracy",
        "f1 [PER]",
        "f1 [LOC]",
    }


def test_a_failure_says_which_input_by_how_much_and_the_threshold():
    root = check_junit(render_junit(GateReport.model_validate(report_dict()), "validate"))
    cases = cases_of(root)
    parity = cases[("ner.validate.parity", "bucket 64 + 1 (length 65), batch 3 · task_output")]
    for text in (
        "bucket 64 + 1 (length 65), batch 3",
        "padded to bucket 128",
        "0.25",
        "atol 0.0001",
        "rtol 0.001",
    ):
        assert text in parity["message"], text
    assert "exceeded by: 0.25" in parity["body"]  # 0.25 - 1e-4, to 3 digits
    per = cases[("ner.validate.metrics", "f1 [PER]")]
    assert "0.8" in per["message"] and "threshold 0.9" in per["message"] and "by 0.1" in per["message"]
    assert "50 examples of eval.jsonl" in per["message"]
    # Passing cases say what was measured, in the case's system-out.
    assert "within atol 0.0001" in cases[("ner.validate.parity", "examples[0:8] · model_output")]["body"]


def test_times_are_the_checks_own_and_the_suite_time_their_sum():
    root = check_junit(render_junit(GateReport.model_validate(report_dict()), "verify"))
    cases = cases_of(root)
    assert cases[("ner.verify.source_model", "source_model")]["time"] == "0.250"
    parity_times = [c["time"] for (classname, _), c in cases.items() if classname == "ner.verify.parity"]
    assert parity_times.count("1.500") == 1 and parity_times.count(None) == 7  # one timing for the check
    assert root.find("testsuite").get("time") == "2.250"  # 0.25 + 1.5 + 0.5; the rest were not timed


def test_no_eval_set_is_one_skipped_metrics_case():
    checks = report_dict()["checks"]
    checks[3] = {"name": "metrics", "status": "skipped", "message": "no validate.eval_set"}
    report = GateReport.model_validate(report_dict(metrics=None, checks=checks))
    root = check_junit(render_junit(report, "validate"))
    metrics = {k: v for k, v in cases_of(root).items() if k[0] == "ner.validate.metrics"}
    assert metrics == {
        ("ner.validate.metrics", "metrics"): {
            "outcome": "skipped",
            "message": "no validate.eval_set",
            "body": "",
            "time": None,
        }
    }


def test_a_failed_check_whose_parts_all_pass_still_shows_as_failed():
    # A report whose per-case rows disagree with the check's verdict (hand-edited, or written by an older
    # gate) must not lose the failure from the CI view.
    parity = report_dict()["parity"]
    parity["cases"] = parity["cases"][:2]
    root = check_junit(render_junit(GateReport.model_validate(report_dict(parity=parity)), "validate"))
    cases = cases_of(root)
    assert cases[("ner.validate.parity", "parity")] == {
        "outcome": "failure",
        "message": "task_output differs",
        "body": "task_output differs",
        "time": "1.500",
    }
    assert not [k for k in cases if k[0] == "ner.validate.parity" and k[1] != "parity"]


def test_hostile_text_is_escaped_and_characters_xml_forbids_are_shown_as_codes():
    agreement = {
        "compared": 2,
        "agreed": 1,
        "rate": 0.5,
        "disagreements": [{"text": HOSTILE, "source": [HOSTILE], "compiled": "x"}],
    }
    checks = report_dict()["checks"]
    checks[2] = {"name": "agreement", "status": "fail", "message": f"1 of 2 differ, e.g. '{HOSTILE}'"}
    parity = report_dict()["parity"]
    parity["cases"][2]["case"] = HOSTILE
    report = GateReport.model_validate(report_dict(agreement=agreement, checks=checks, parity=parity))
    text = render_junit(report, "validate")
    root = check_junit(text)  # parses: nothing unescaped, no forbidden character
    cases = cases_of(root)
    shown = "<b>\"Tom\" & 'Jerry'</b> \\x01\\x1b ]]> \\ud800"
    assert cases[("ner.validate.agreement", "agreement")]["message"] == f"1 of 2 differ, e.g. '{shown}'"
    assert shown in cases[("ner.validate.agreement", "agreement")]["body"]
    assert ("ner.validate.parity", f"{shown} · task_output") in cases
    assert "<b>" not in text


@pytest.fixture
def length_dependent_trace(monkeypatch):
    """A compiled model wrong only beyond 16 tokens: the parity cases past that length fail, the rest pass."""
    wrong = lambda model_dir, task, *_: LengthDependent(load_source_model(model_dir, task))  # noqa: E731
    monkeypatch.setattr("torchship.compile.load_source_model", wrong)
    monkeypatch.setattr("torchship.validate.gate.load_source_model", wrong)
    monkeypatch.setattr("torchship.compile.torchscript.probe_inputs", lambda tokenizer, io, max_length: [])


def test_a_gate_failing_on_some_parity_cases_marks_exactly_those_failed(
    tiny_spec_path, settings, length_dependent_trace
):
    spec = load_spec(tiny_spec_path)
    outcomes = run_stages(spec, settings, until="validate")
    assert outcomes[-1].status == "failed"
    failed_dir = settings.stage_root(spec.name, spec.version) / "validate-failed"
    report = json.loads((failed_dir / REPORT_JSON).read_text())
    root = check_junit((failed_dir / REPORT_JUNIT).read_text())
    cases = cases_of(root)
    parity_classname = f"{spec.name}.validate.parity"
    expected_failed = {
        f"{case['case']} · {output}"
        for case in report["parity"]["cases"]
        for output, diff in case["outputs"].items()
        if diff["excess"] > 0
    }
    assert expected_failed  # the trace is wrong beyond 16 tokens: some cases fail
    assert {n for (c, n), case in cases.items() if case["outcome"] == "failure"} == expected_failed
    assert all(c == parity_classname for (c, n), case in cases.items() if case["outcome"] == "failure")
    every_parity = {n for (c, n) in cases if c == parity_classname}
    assert len(every_parity) == sum(len(case["outputs"]) for case in report["parity"]["cases"])
    suite = root.find("testsuite")
    assert suite.get("name") == f"{spec.name} {spec.version} validate"
    assert int(suite.get("failures")) == len(expected_failed)
    # The other checks each have their case, with the report's status.
    for check in report["checks"]:
        if check["name"] != "parity":
            outcome = cases[(f"{spec.name}.validate.{check['name']}", check["name"])]["outcome"]
            assert outcome == {"pass": "pass", "fail": "failure", "skipped": "skipped"}[check["status"]]
    assert not list(failed_dir.parent.glob(".validate-failed*"))  # the atomic write left no temp dir


def test_a_passing_gate_lists_junit_xml_in_its_stage_record(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    outcomes = run_stages(spec, settings, until="validate")
    assert outcomes[-1].status == "ran", outcomes[-1].error
    validate_dir = settings.stage_root(spec.name, spec.version) / "validate"
    record = json.loads((validate_dir / "stage.json").read_text())
    assert {"report.json", "report.html", "junit.xml"} <= set(record["outputs"])
    report = read_report(validate_dir / REPORT_JSON)
    assert report.torchship_version == record["torchship_version"]
    assert [c.name for c in report.checks][:2] == ["source_model", "parity"]
    assert all(c.seconds is not None for c in report.checks)
    root = check_junit((validate_dir / REPORT_JUNIT).read_text())
    suite = root.find("testsuite")
    expected = sum(len(c.outputs) for c in report.parity.cases) + len(report.checks) - 1
    assert int(suite.get("tests")) == expected and suite.get("failures") == "0"
