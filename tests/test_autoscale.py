"""The HPA's load metrics: in-flight requests per pod (Little's law) and, with a tune measurement of the
deployed configuration, requests/s per pod; targets worked out here from the spec and the tune record the
test writes; prometheus-adapter's rules checked by `render --check`."""

from __future__ import annotations

import json
from dataclasses import replace

import yaml

from deploy_helpers import rendered_for
from torchship.deploy.check import check_base
from torchship.deploy.inputs import gather_inputs
from torchship.deploy.monitoring import ADAPTER_RULES
from torchship.settings import Settings
from torchship.spec import load_spec

SPEC = """name: tiny-embeddings
version: 0.1.0
task: embeddings
source: ./model
serve: {workers: 2, batch_size: 4, max_batch_delay_ms: 5}
compile: {backend: torchscript}
deploy: {cpu_limit: "2"}
"""


def write_spec(tmp_path):
    path = tmp_path / "spec" / "model.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(SPEC)
    return load_spec(path)


def measurement(workers, threads, batch, delay, rps, failures=0):
    return {
        "config": {"workers": workers, "threads": threads, "batch_size": batch, "max_batch_delay_ms": delay},
        "backend": "torchscript", "precision": "fp32", "requests": 256, "failures": failures,
        "throughput_rps": rps, "p50_ms": 60.0, "p95_ms": 90.0, "p99_ms": 110.0,
        "client_cpu_cores": 0.4, "start_s": 5.0,
    }  # fmt: skip


def write_tune(outputs, measurements):
    path = outputs / "tiny-embeddings" / "0.1.0" / "tune" / "tune.json"
    path.parent.mkdir(parents=True)
    config = {"workers": 1, "threads": 2, "batch_size": 8, "max_batch_delay_ms": 5}
    path.write_text(json.dumps({
        "model": "tiny-embeddings", "version": "0.1.0", "backend": "torchscript", "budget_p95_ms": None,
        "concurrency": 16, "requests_origin": "examples", "request_bodies": 5,
        "machine": "x86_64, 2 cores, Python 3.11.7", "load_average": [1.0, 1.0, 1.0],
        "started": "2026-12-04T05:00:00+00:00", "duration_s": 60.0, "time_bound_s": 600.0,
        "measurements": measurements, "not_measured": [], "chosen": config, "baseline": config,
    }))  # fmt: skip


def hpa_of(rendered):
    (manifest,) = [m for m in rendered.manifests if m.kind == "HorizontalPodAutoscaler"]
    return manifest.doc, rendered.files[manifest.file]


def pods_targets(hpa) -> dict[str, str]:
    return {
        m["pods"]["metric"]["name"]: m["pods"]["target"]["averageValue"]
        for m in hpa["spec"]["metrics"]
        if m["type"] == "Pods"
    }


def test_without_tune_the_hpa_scales_on_in_flight_requests_and_cpu(tmp_path):
    spec = write_spec(tmp_path)
    hpa, text = hpa_of(rendered_for(spec))
    # 2 workers x batch 4 = 8 requests run at once; 70% of them.
    assert pods_targets(hpa) == {"torchship_inflight_requests": "5600m"}
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert cpu[0]["resource"]["target"]["averageUtilization"] == 70  # the existing CPU target stays
    assert "workers x batch_size = 8" in text and "no tune.json" in text
    assert "rate(ts_inference_latency_microseconds[1m]) / 1e6" in text


def test_a_tune_measurement_of_the_deployed_configuration_sets_a_requests_per_second_target(tmp_path):
    spec = write_spec(tmp_path)
    settings = Settings(outputs_dir=tmp_path / "outputs")
    # The deployed threads: CPU limit 2 // 2 workers = 1. Another configuration measured faster: ignored.
    write_tune(settings.outputs_dir, [measurement(1, 2, 8, 5, 300.0), measurement(2, 1, 4, 5, 120.8)])
    hpa, text = hpa_of(rendered_for(spec, gather_inputs(spec, settings)))
    assert pods_targets(hpa) == {
        "torchship_inflight_requests": "5600m",
        "torchship_requests_per_second": "84500m",  # 0.7 x 120.8 = 84.56, rounded down to 84.5
    }
    assert "tune measured 120.8 req/s" in text and "x86_64, 2 cores" in text


def test_a_tune_record_without_the_deployed_configuration_says_so(tmp_path):
    spec = write_spec(tmp_path)
    settings = Settings(outputs_dir=tmp_path / "outputs")
    # The deployed configuration measured only with failures, another without: neither is its capacity.
    write_tune(
        settings.outputs_dir, [measurement(2, 1, 4, 5, 150.0, failures=3), measurement(1, 2, 8, 5, 90.0)]
    )
    hpa, text = hpa_of(rendered_for(spec, gather_inputs(spec, settings)))
    assert set(pods_targets(hpa)) == {"torchship_inflight_requests"}
    assert "measured no torchscript fp32 configuration equal to the deployed one" in text


def test_render_check_holds_the_hpa_to_the_adapter_rules(tmp_path):
    spec = write_spec(tmp_path)
    rendered = rendered_for(spec)
    assert check_base(rendered, spec).ok
    rules = yaml.safe_load(rendered.files[ADAPTER_RULES])["rules"]
    assert {r["name"]["as"] for r in rules} == {
        "torchship_inflight_requests",
        "torchship_requests_per_second",
    }

    hpa_file = next(m.file for m in rendered.manifests if m.kind == "HorizontalPodAutoscaler")
    renamed = rendered.files[hpa_file].replace("torchship_inflight_requests", "torchship_inflight")
    report = check_base(replace(rendered, files={**rendered.files, hpa_file: renamed}), spec)
    assert [f.message for f in report.monitoring_findings] == [
        f"scales on the Pods metric torchship_inflight, which {ADAPTER_RULES} does not serve"
    ]
    misspelt = rendered.files[ADAPTER_RULES].replace("metricsQuery:", "metricQuery:", 1)
    report = check_base(replace(rendered, files={**rendered.files, ADAPTER_RULES: misspelt}), spec)
    assert [f.file for f in report.monitoring_findings] == [ADAPTER_RULES]
    assert (
        "rules.0: Additional properties are not allowed ('metricQuery'"
        in report.monitoring_findings[0].message
    )
