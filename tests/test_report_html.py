"""The validation report page: self-contained HTML (escaped, no network assets) and the terminal summary."""

from __future__ import annotations

import copy
import html
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from torchship.validate.report import render_html, summary_lines

SCRIPT = "<script>alert(1)</script>"
SCREENSHOT_COPY = Path("/tmp/torchship-report-screenshot.png")


def _samples(seed: int, n: int, median: float) -> list[float]:
    rng = random.Random(seed)
    return [round(median * rng.lognormvariate(0.0, 0.18), 3) for _ in range(n)]


def _case(
    name: str, batch: int, length: int, bucket: int | None, model_abs: float, task_abs: float, ok: bool
):
    return {
        "case": name,
        "batch": batch,
        "length": length,
        "bucket": bucket,
        "outputs": {
            "model_output": {"max_abs": model_abs, "max_rel": model_abs * 40, "excess": model_abs - 1e-4},
            "task_output": {"max_abs": task_abs, "max_rel": task_abs * 12, "excess": task_abs - 1e-4},
        },
        "ok": ok,
    }


@pytest.fixture
def report() -> dict:
    """A failing token-classification run: parity and agreement pass, the PER f1 threshold and served p95 fail."""
    return {
        "model": {"name": "bert-base-ner", "version": "1.3.0", "task": "token-classification"},
        "generated_at": "2025-06-14T09:31:07+00:00",
        "verdict": "fail",
        "checks": [
            {"name": "parity", "status": "pass", "message": "max abs 3.2e-05 within atol 1e-4 + rtol 1e-3"},
            {"name": "agreement", "status": "pass", "message": "99.50% of 200 texts agree"},
            {"name": "metrics", "status": "fail", "message": "f1[PER] 0.8812 < 0.9"},
            {"name": "latency", "status": "pass", "message": "p95 14.2 ms <= budget 25 ms"},
            {"name": "served_parity", "status": "skipped", "message": "no TorchServe in this run"},
            {"name": "served_latency", "status": "fail", "message": "p95 31.7 ms > budget 25 ms"},
        ],
        "parity": {
            "atol": 1e-4,
            "rtol": 1e-3,
            "outputs": {
                "model_output": {
                    "max_abs": 3.2e-05,
                    "max_rel": 0.0041,
                    "worst_case": "synthetic[batch=8,len=128]",
                    "worst_excess": -6.8e-05,
                    "ok": True,
                },
                "task_output": {
                    "max_abs": 1.7e-05,
                    "max_rel": 0.00093,
                    "worst_case": "examples[0:8]",
                    "worst_excess": -8.3e-05,
                    "ok": True,
                },
            },
            "cases": [
                _case("examples[0:8]", 8, 41, 64, 2.1e-05, 1.7e-05, True),
                _case("examples[8:12]", 4, 37, 64, 1.4e-05, 9e-06, True),
                _case("synthetic[batch=1,len=1]", 1, 1, None, 4e-06, 2e-06, True),
                _case("synthetic[batch=8,len=128]", 8, 128, 128, 3.2e-05, 1.1e-05, True),
                _case("synthetic[batch=3,len=<pad>]", 3, 77, 128, 2.5e-04, 1.3e-05, False),
            ],
        },
        "agreement": {
            "compared": 200,
            "agreed": 199,
            "rate": 0.995,
            "disagreements": [
                {
                    "request": f"Angela Merkel met {SCRIPT} in Paris",
                    "source": [{"entity": "PER", "word": "Angela Merkel", "score": 0.998}],
                    "compiled": [{"entity": "PER", "word": "Angela", "score": 0.61}],
                }
            ],
        },
        "metrics": {
            "eval_set": "conll2003-validation-sample",
            "examples": 500,
            "values": {
                "accuracy": 0.9731,
                "f1": {"overall": 0.9124, "PER": 0.8812, "ORG": 0.8907, "LOC": 0.9402, "MISC": 0.8366},
            },
            "thresholds": [
                {"metric": "accuracy", "label": None, "threshold": 0.95, "value": 0.9731, "ok": True},
                {"metric": "f1", "label": "overall", "threshold": 0.9, "value": 0.9124, "ok": True},
                {"metric": "f1", "label": "PER", "threshold": 0.9, "value": 0.8812, "ok": False},
            ],
        },
        "latency": {
            "in_process": {"samples_ms": _samples(1, 200, 11.8), "p50": 11.9, "p95": 14.2},
            "served": {"samples_ms": _samples(2, 120, 22.4), "p50": 22.6, "p95": 31.7},
            "budget_ms": {"p95": 25.0},
        },
    }


# ---------------------------------------------------------------------------------------------- unit


def test_page_shows_verdict_model_and_checks(report):
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert 'class="banner fail"' in page and ">FAIL<" in page
    for text in ("bert-base-ner", "1.3.0", "token-classification", "2025-06-14T09:31:07+00:00"):
        assert text in page
    for check in report["checks"]:
        assert f"<b>{check['name']}</b>" in page
    assert '<span class="badge skipped">SKIPPED</span>' in page
    assert "Failed checks: metrics, served_latency" in page


def test_page_shows_parity_numbers_and_highlights_failing_case(report):
    page = render_html(report)
    for number in ("3.2e-05", "0.0041", "1.7e-05", "0.00093", "-6.8e-05", "0.0001", "0.001"):
        assert number in page, number
    assert "synthetic[batch=8,len=128]" in page
    # the failing case row is highlighted, its excess marked, and its name escaped
    row = re.search(
        r'<tr class="bad"><td class="code">synthetic\[batch=3,len=&lt;pad&gt;\]</td>.*?</tr>', page
    )
    assert row, "failing case row is not highlighted"
    assert '<td class="num over">0.00015</td>' in row.group(0)
    assert "5 cases, 1 failing" in page


def test_page_shows_agreement_and_escapes_report_text(report):
    page = render_html(report)
    assert SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert "99.50%" in page and ">200<" in page and ">199<" in page
    assert "Angela Merkel" in page


def test_every_report_value_is_escaped_in_text_and_attributes(report):
    hostile = 'A&B "quoted" <i>'
    report["model"]["name"] = hostile
    report["checks"][0]["name"] = hostile
    report["parity"]["outputs"] = {hostile: {"max_abs": 1.0, "ok": True}}
    page = render_html(report)
    assert hostile not in page
    # each place the value lands holds it escaped (no raw <, >, " or bare &) and unescapes back to it
    places = [
        r"<title>torchship report · (.*?) 1\.3\.0 · FAIL</title>",
        r'<div class="model">(.*?)</div>',
        r'<th colspan="2" class="num">(.*?)</th>',  # per-case group header
    ]
    found = [re.search(p, page).group(1) for p in places]
    found += [b for b in re.findall(r"<b>(.*?)</b>", page) if html.unescape(b) == hostile]
    assert len(found) == 5  # title, banner, group header, check name, output name
    for text in found:
        assert html.unescape(text) == hostile
        assert not re.search(r'[<>"]|&(?![a-z]+;|#[0-9]+;)', text), text


def test_agreement_lists_at_most_ten_disagreements(report):
    report["agreement"]["disagreements"] = [
        {"request": f"text number {i}", "source": i, "compiled": -i} for i in range(14)
    ]
    page = render_html(report)
    assert "text number 9<" in page and "text number 10<" not in page
    assert "and 4 more not shown" in page


def test_page_shows_metrics_rows(report):
    page = render_html(report)
    assert "conll2003-validation-sample" in page
    metrics = page[page.index('id="metrics"') : page.index('id="latency"')]
    assert metrics.count('<tr class="bad">') == 1
    assert '<td class="num over">0.8812</td>' in metrics
    for value in ("0.9731", "0.9124", "0.95", "0.9"):
        assert f">{value}<" in metrics
    assert "f1.MISC" in metrics


def test_two_histograms_with_served_latency_and_one_without(report):
    page = render_html(report)
    assert page.count("<svg") == 2
    assert "p50 11.9 ms" in page and "p95 14.2 ms" in page and "p95 31.7 ms" in page
    assert "budget p95 25.0 ms" in page
    assert "over budget" in page and "within budget" in page

    report["latency"]["served"] = None
    page = render_html(report)
    assert page.count("<svg") == 1
    assert "no served latency" in page


def test_page_has_no_network_assets(report):
    page = render_html(report)
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"\b(src|href)\s*=", page, re.IGNORECASE)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "<script" not in page.lower()


@pytest.mark.parametrize("samples", [[12.5], [7.0, 7.0, 7.0, 7.0], [0.0], []])
def test_histogram_degenerate_samples(report, samples):
    report["latency"]["in_process"] = {
        "samples_ms": samples,
        "p50": samples[0] if samples else None,
        "p95": None,
    }
    report["latency"]["budget_ms"] = None
    page = render_html(report)
    assert "nan" not in page.lower().replace("nans", "")
    assert page.count("<svg") == (2 if samples else 1)


def test_none_and_missing_sections_render(report):
    sparse = copy.deepcopy(report)
    sparse["agreement"] = None
    sparse["metrics"] = None
    sparse["latency"]["served"] = None
    sparse["latency"]["budget_ms"] = None
    sparse["parity"]["cases"] = []
    sparse["parity"]["outputs"] = {}
    page = render_html(sparse)
    assert "No eval set" in page
    assert "Not measured" in page
    assert "No cases." in page and "No outputs compared." in page
    assert "No latency budget set." in page

    bare = {"model": {"name": "m", "version": "1", "task": "embeddings"}, "verdict": "pass", "checks": []}
    page = render_html(bare)
    assert 'class="banner pass"' in page and ">PASS<" in page
    assert "No parity results." in page and "No latency measured." in page
    assert render_html({}).startswith("<!DOCTYPE html>")


def test_summary_lines(report):
    lines = summary_lines(report)
    assert lines[0].startswith("Verdict: FAIL")
    assert "bert-base-ner 1.3.0 (token-classification)" in lines[0]
    text = "\n".join(lines)
    failing = [c for c in report["checks"] if c["status"] == "fail"]
    for check in failing:
        line = next(line for line in lines if f"] {check['name']} " in line)
        assert "FAIL" in line and check["message"] in line
    for check in report["checks"]:
        assert check["name"] in text
    assert "f1[PER]: 0.8812 vs threshold 0.9  FAIL" in text
    assert "accuracy: 0.9731 vs threshold 0.95  ok" in text
    assert "Latency in-process: p50 11.9 ms, p95 14.2 ms" in text
    assert "Latency served: p50 22.6 ms, p95 31.7 ms" in text

    report["metrics"] = None
    report["latency"]["served"] = None
    lines = summary_lines(report)
    assert "Metrics: no eval set" in lines
    assert not any(line.startswith("Latency served") for line in lines)
    assert summary_lines({})[0].startswith("Verdict: UNKNOWN")


def test_summary_lines_of_a_hand_edited_report_mark_an_odd_ok_unknown():
    """summary_lines reads loose dicts too; an "ok" that is neither true nor false (a list: unhashable) is
    shown as "?" instead of crashing the summary (mypy found the dict lookup on it)."""
    report = {
        "verdict": "fail",
        "metrics": {
            "eval_set": "eval.jsonl",
            "examples": 3,
            "thresholds": [
                {"metric": "f1", "value": 0.5, "threshold": 0.9, "ok": []},
                {"metric": "recall", "value": 0.2, "threshold": 0.9, "ok": False},
            ],
        },
    }
    text = "\n".join(summary_lines(report))
    assert "f1: 0.5 vs threshold 0.9  ?" in text
    assert "recall: 0.2 vs threshold 0.9  FAIL" in text


# ---------------------------------------------------------------------------------------------- browser


def _chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1200,1600",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_report_renders_in_headless_chromium(report, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium): cannot render report.html"
        )
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    url = page.resolve().as_uri()

    screenshot = tmp_path / "report.png"
    run = _chromium(chromium, tmp_path / "profile-shot", f"--screenshot={screenshot}", url)
    assert screenshot.exists(), f"no screenshot (rc {run.returncode}):\n{run.stderr[-3000:]}"
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    assert screenshot.stat().st_size > 10_000, "screenshot is suspiciously small (blank page?)"
    shutil.copyfile(screenshot, SCREENSHOT_COPY)
    print(f"report screenshot: {screenshot} (copy: {SCREENSHOT_COPY})")

    dom = _chromium(chromium, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-3000:]
    assert ">FAIL<" in dom.stdout
    assert "bert-base-ner" in dom.stdout
    assert dom.stdout.count("<svg") == 2
    assert "<script>alert(1)" not in dom.stdout
