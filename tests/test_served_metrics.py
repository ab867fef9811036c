"""The handler's metrics as Prometheus scrapes them from a real TorchServe's metrics port.

The session's TorchServe serves the tiny classifier; this test sends it good and bad requests and reads
the metrics port before and after. Every expected count is worked out here, from what was sent and what
came back (the reasons from the kind of mistake each request makes, the tokens from the tokenizer, the
labels from the answers), never from torchship's code.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import httpx
from transformers import AutoTokenizer

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*?),?\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server) -> Series:
    """name + labels (Hostname dropped) -> value, from the metrics port's text format."""
    text = httpx.get(f"http://127.0.0.1:{server.ports.metrics}/metrics", timeout=10).text
    series: Series = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = frozenset((k, v) for k, v in _LABEL.findall(match.group(2) or "") if k != "Hostname")
            series[(match.group(1), labels)] = float(match.group(3))
    return series


def of_model(series: Series, name: str, model: str, **fixed: str) -> dict[frozenset, float]:
    """The series `name` of `model` that have the `fixed` labels, keyed by their other labels."""
    found = {}
    for (metric, labels), value in series.items():
        values = dict(labels)
        if metric == name and values.get("model_name") == model and fixed.items() <= values.items():
            rest = {k: v for k, v in values.items() if k not in ("model_name", "model_version", *fixed)}
            found[frozenset(rest.items())] = value
    return found


def delta(after: Series, before: Series, name: str, model: str, **fixed: str) -> Counter:
    now, then = of_model(after, name, model, **fixed), of_model(before, name, model, **fixed)
    return Counter(
        {key: value - then.get(key, 0.0) for key, value in now.items() if value != then.get(key, 0.0)}
    )


def test_requests_texts_tokens_and_labels_are_counted_as_sent(torchserve, sentiment_package):
    spec, _, _ = sentiment_package
    model = spec.name
    tokenizer = AutoTokenizer.from_pretrained(spec.source)
    max_length = spec.compile.max_length
    long_text = " ".join(["the cat sat on the mat"] * 40)  # far over max_length: truncated
    good = [
        {"text": "a great movie"},
        {"texts": ["hello world", "the company is in the city", long_text]},
        {"text": "mary loves london", "top_k": 1},
    ]
    # (body, the reason the handler must give, texts in it): each a different client mistake.
    bad = [
        ({"foo": 1}, "bad_schema", 0),
        ({"texts": []}, "text_count", 0),
        ({"texts": ["x"] * (spec.serve.max_texts_per_request + 1)}, "text_count", 0),
        ({"text": "ok", "bogus": 1}, "bad_option", 0),
        ({"text": "ok", "top_k": 99}, "bad_option", 1),
        ({"text": "   "}, "bad_text", 0),
    ]
    before = scrape(torchserve)
    labels: Counter = Counter()
    with torchserve.client() as client:
        for body in good:
            response = client.post(f"/predictions/{model}", json=body)
            assert response.status_code == 200, response.text
            answer = response.json()
            for ranked in answer if "texts" in body else [answer]:
                labels[ranked[0]["label"]] += 1
        for body, _, _ in bad:
            assert client.post(f"/predictions/{model}", json=body).status_code == 400
        malformed = client.post(
            f"/predictions/{model}", content=b'{"text": ', headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400
    texts = [t for body in good for t in body.get("texts", [body.get("text")])]
    tokens = [len(tokenizer(t)["input_ids"]) for t in texts]

    expected_requests = Counter({frozenset({("code", "200"), ("reason", "ok")}): float(len(good))})
    expected_texts = Counter({frozenset({("code", "200"), ("reason", "ok")}): float(len(texts))})
    for _, reason, count in [*bad, (None, "malformed_json", 0)]:
        expected_requests[frozenset({("code", "400"), ("reason", reason)})] += 1
        expected_texts[frozenset({("code", "400"), ("reason", reason)})] += count

    # The frontend reads the worker's metric lines as they come: wait until the last batch's are in.
    deadline = time.monotonic() + 30
    while True:
        after = scrape(torchserve)
        if (
            delta(after, before, "torchship_requests", model) == expected_requests
            or time.monotonic() > deadline
        ):
            break
        time.sleep(0.2)
    assert delta(after, before, "torchship_requests", model) == expected_requests
    assert +delta(after, before, "torchship_texts", model) == +expected_texts
    assert delta(after, before, "torchship_tokens", model) == Counter(
        {frozenset(): float(sum(min(n, max_length) for n in tokens))}
    )
    assert delta(after, before, "torchship_truncated_texts", model) == Counter(
        {frozenset(): float(sum(n >= max_length for n in tokens))}
    )
    assert delta(after, before, "torchship_text_tokens_bucket", model, le="+Inf") == Counter(
        {frozenset(): float(len(texts))}
    )
    assert delta(after, before, "torchship_text_tokens_bucket", model, le="16") == Counter(
        {frozenset(): float(sum(min(n, max_length) <= 16 for n in tokens))}
    )
    assert delta(after, before, "torchship_served_labels", model) == Counter(
        {frozenset({("label", label)}): float(n) for label, n in labels.items()}
    )
    # Every request of a batch is observed once; TorchServe's own counter saw them too.
    sent = len(good) + len(bad) + 1
    assert delta(after, before, "torchship_request_seconds_count", model) == Counter(
        {frozenset(): float(sent)}
    )
    assert sum(delta(after, before, "ts_inference_requests_total", model).values()) == sent
    assert set(of_model(after, "torchship_handler_seconds_count", model)) == {
        frozenset({("phase", p)}) for p in ("preprocess", "inference", "postprocess")
    }
    fills = delta(after, before, "torchship_batch_fill_count", model)[frozenset()]
    assert 1 <= fills <= sent  # one observation per batch, a batch holds at least one request
    assert of_model(after, "torchship_worker_starts", model) == {frozenset(): 1.0}


def test_the_metrics_config_every_torchserve_reads_declares_the_handlers_metrics(torchserve):
    config = (torchserve.workdir / "metrics.yaml").read_text()
    properties = (torchserve.workdir / "config.properties").read_text()
    assert "metrics_mode=prometheus\n" in properties
    assert f"metrics_config={torchserve.workdir / 'metrics.yaml'}\n" in properties
    import yaml

    declared = yaml.safe_load(config)["model_metrics"]
    names = {m["name"] for kind in declared.values() for m in kind}
    assert {"torchship_requests", "torchship_served_labels", "torchship_request_seconds"} <= names
    assert json.dumps(declared)  # plain YAML values


class _Recorded:
    """A stand-in for TorchServe's context.metrics: what the handler reported, line by line."""

    def __init__(self, fail: bool = False):
        self.lines: list[tuple[str, float, list[str]]] = []
        self.fail = fail

    def get_metric(self, name, kind):
        recorded = self

        class Metric:
            def add_or_update(self, value, dimensions):
                if recorded.fail:
                    raise RuntimeError("metrics cache broken")
                recorded.lines.append((name, value, dimensions))

        return Metric()


def test_label_values_lose_the_characters_torchserves_metric_lines_split_on():
    from torchship.handlers.metrics import BatchRecord, MetricsReporter

    recorded = _Recorded()
    reporter = MetricsReporter(recorded, "m", "1.0.0", batch_size=4)
    record = BatchRecord(size=2)
    record.outcome(200, "ok", 2)
    record.labels.update(["1 star, bad: |x", "1 star, bad: |x"])
    reporter.report(record)
    assert ("torchship_served_labels", 2, ["m", "1.0.0", "1_star_bad_x"]) in recorded.lines
    assert ("torchship_batch_fill", 0.5, ["m", "1.0.0"]) in recorded.lines  # 2 requests of a batch of 4


def test_a_metrics_failure_costs_no_request_and_stops_reporting():
    from torchship.handlers.metrics import BatchRecord, MetricsReporter

    reporter = MetricsReporter(_Recorded(fail=True), "m", "1", batch_size=1)
    reporter.report(BatchRecord(size=1))  # logged, not raised
    assert reporter.metrics is None
