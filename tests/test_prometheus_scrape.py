"""A real Prometheus scraping a real TorchServe: the handler's metrics arrive with the values sent.

Prometheus (Debian's `prometheus` package, /usr/bin/prometheus) scrapes the session TorchServe's metrics
port every 2 s; the test sends the tiny classifier good requests and bad ones of known kinds, counts them
itself, and asks Prometheus' HTTP API (/api/v1/query) for the increase of torchship_requests by code and
reason, of the texts and of TorchServe's own request counter.
"""

from __future__ import annotations

from collections import Counter

import pytest

from torchship.deploy.prometheus_local import LocalPrometheus, ScrapeTarget, prometheus_binary

needs_prometheus = pytest.mark.skipif(
    prometheus_binary() is None,
    reason="Prometheus is not installed (apt-get install prometheus; scripts/install-lint-tools.sh does)",
)

JOB = "torchship-test"


def by_code_and_reason(samples) -> Counter:
    return Counter({(s.labels.get("code"), s.labels.get("reason")): s.value for s in samples})


@needs_prometheus
def test_prometheus_scrapes_the_requests_by_reason_as_the_test_counted_them(torchserve, sentiment_package):
    spec, _, _ = sentiment_package
    model = spec.name
    # The labels a ServiceMonitor's scrape adds in a cluster, which prometheus-adapter's rules group by.
    target = ScrapeTarget(
        JOB, f"127.0.0.1:{torchserve.ports.metrics}", labels={"namespace": "rehearsal", "pod": "tiny-pod"}
    )
    select = f'job="{JOB}",model_name="{model}",namespace="rehearsal"'
    requests_query = f"sum by (code, reason) (torchship_requests{{{select}}})"
    with LocalPrometheus([target]) as prometheus:
        assert prometheus.wait_for_scrape(JOB, timeout_s=60), prometheus.target_health()
        # Series only exist once TorchServe has seen their first request: absent before is zero.
        before = by_code_and_reason(prometheus.query(requests_query))
        texts_before = sum(s.value for s in prometheus.query(f"torchship_texts{{{select},code='200'}}"))
        served_before = sum(s.value for s in prometheus.query(f"ts_inference_requests_total{{{select}}}"))

        sent: Counter = Counter()
        good_texts = 0
        with torchserve.client() as client:
            for body in ({"text": "a fine film"}, {"texts": ["one", "two", "three"]}, {"text": "yes"}):
                assert client.post(f"/predictions/{model}", json=body).status_code == 200
                sent["200", "ok"] += 1
                good_texts += len(body.get("texts", [body.get("text")]))
            for body, reason in (
                ({"nope": 1}, "bad_schema"),
                ({"nope": 2}, "bad_schema"),
                ({"texts": []}, "text_count"),
                ({"text": "ok", "unknown_option": True}, "bad_option"),
            ):
                assert client.post(f"/predictions/{model}", json=body).status_code == 400
                sent["400", reason] += 1
            malformed = client.post(
                f"/predictions/{model}", content=b"{", headers={"content-type": "application/json"}
            )
            assert malformed.status_code == 400
            sent["400", "malformed_json"] += 1

        def increase(samples) -> Counter:
            now = by_code_and_reason(samples)
            return +Counter({key: now[key] - before.get(key, 0.0) for key in now})

        after = prometheus.wait_until(requests_query, lambda s: increase(s) == sent, timeout_s=60)
        assert increase(after) == sent
        texts = prometheus.wait_until(
            f"torchship_texts{{{select},code='200'}}",
            lambda s: sum(x.value for x in s) - texts_before == good_texts,
        )
        assert sum(s.value for s in texts) - texts_before == good_texts
        served = prometheus.wait_until(
            f"ts_inference_requests_total{{{select}}}",
            lambda s: sum(x.value for x in s) - served_before == sum(sent.values()),
        )
        assert sum(s.value for s in served) - served_before == sum(sent.values())
        assert prometheus.target_health()[JOB].health == "up"

        # The HPA's load metrics, as prometheus-adapter asks for them (the rendered rules' queries): one value
        # for the pod, above zero right after the requests (requests in flight on average, requests/s).
        from deploy_helpers import demo
        from torchship.deploy.monitoring_check import adapter_queries

        for metric, query in adapter_queries(demo()[1].files, namespace="rehearsal").items():
            # Fresh requests: the queries are rates over the last minute, and on a loaded machine the
            # checks above can take longer than that.
            with torchserve.client() as client:
                for _ in range(3):
                    assert client.post(f"/predictions/{model}", json={"text": "again"}).status_code == 200
            samples = prometheus.wait_until(query, lambda s: any(x.value > 0 for x in s), timeout_s=30)
            assert [s.labels for s in samples] == [{"pod": "tiny-pod"}], (metric, query, samples)
            assert samples[0].value > 0, (metric, query)
    assert prometheus.process is None and prometheus.directory is None  # stopped, its data removed


@needs_prometheus
def test_the_rehearsals_metrics_proof_against_a_local_torchserve(torchserve, sentiment_package):
    """deploy/metrics_proof.py, as `torchship rehearse` runs it against the played pod: 3 good requests,
    2 with an unknown key and 1 malformed body must arrive in Prometheus as exactly those counts."""
    from torchship.deploy.metrics_proof import prove_metrics

    spec, _, _ = sentiment_package
    proof = prove_metrics(
        torchserve.inference_url,
        f"127.0.0.1:{torchserve.ports.metrics}",
        spec.name,
        {"text": "a sentence"},
        headers={"Authorization": f"Bearer {torchserve.inference_token}"},
        labels={"namespace": "proof"},
    )
    expected = {"200 ok": 3, "400 bad_schema": 2, "400 malformed_json": 1}
    assert proof.sent == expected
    assert proof.seen == expected
    assert proof.requests_total_seen == 6
    assert proof.ok and "arrived as sent" in proof.summary()


def test_without_prometheus_the_proof_says_how_to_get_it(monkeypatch):
    from torchship.deploy import prometheus_local
    from torchship.deploy.prometheus_local import PrometheusUnavailable

    monkeypatch.setattr(prometheus_local, "prometheus_binary", lambda: None)
    prometheus = LocalPrometheus([ScrapeTarget(JOB, "127.0.0.1:9")])
    with pytest.raises(PrometheusUnavailable) as raised:
        prometheus.start()
    assert "apt-get install prometheus" in raised.value.hint
    assert prometheus.process is None and prometheus.directory is None  # nothing started, nothing left


@needs_prometheus
def test_a_target_that_does_not_answer_is_reported_down():
    from torchship.serving.ports import free_port

    with LocalPrometheus([ScrapeTarget(JOB, f"127.0.0.1:{free_port()}")]) as prometheus:
        assert not prometheus.wait_for_scrape(JOB, timeout_s=6)
        health = prometheus.target_health()[JOB]
        assert health.health == "down" and "connection refused" in health.last_error
