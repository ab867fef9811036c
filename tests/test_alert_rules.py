"""The rendered alert rules under `promtool test rules`: series that must fire each alert, and series that
must not. The series are written here from what each alert is meant to catch (README "Monitoring").
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from deploy_helpers import rendered_for
from test_monitoring import classifier
from torchship.deploy.monitoring import PROMETHEUS_RULE

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (Debian: apt-get install prometheus; scripts/install-lint-tools.sh)",
)

MODEL = 'namespace="tiny-sentiment",model_name="tiny-sentiment"'


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{MODEL}{extra}}}", "values": values}


def alert(name: str, at: str, fires: list[dict[str, str]] | None = None) -> dict:
    """Expect `name` at `at` with these labels each (besides the model's), or silent with fires=None."""
    base = {"namespace": "tiny-sentiment", "model_name": "tiny-sentiment"}
    expected = [{"exp_labels": {**base, **labels}} for labels in fires or []]
    return {"eval_time": at, "alertname": name, "exp_alerts": expected}


def case(inputs: list[dict], *alerts: dict) -> dict:
    return {"interval": "1m", "input_series": inputs, "alert_rule_test": list(alerts)}


WARN, CRIT = {"severity": "warning"}, {"severity": "critical"}


def latency(le_counts: dict[str, int]) -> list[dict]:
    """A request_seconds histogram whose buckets each grow by their count a minute."""
    return [series("torchship_request_seconds_bucket", f"0+{n}x40", le=le) for le, n in le_counts.items()]


CASES = [
    # 10 of 100 requests a minute fail with a 5xx: over monitoring.error_ratio 0.05; 1 in 100 is not.
    case(
        [series("torchship_requests", "0+90x30", code="200", reason="ok"),
         series("torchship_requests", "0+10x30", code="500", reason="model_error")],
        alert("TorchshipErrorRatio", "15m", [CRIT]),
    ),
    case(
        [series("torchship_requests", "0+99x30", code="200", reason="ok"),
         series("torchship_requests", "0+1x30", code="500", reason="model_error"),
         series("torchship_requests", "0+50x30", code="400", reason="bad_schema")],  # clients' mistakes
        alert("TorchshipErrorRatio", "15m"),
    ),
    # Every request between 50 and 100 ms: p99 ~99 ms over the 40 ms budget; all under 25 ms: fine.
    case(latency({"0.025": 0, "0.05": 0, "0.1": 10, "+Inf": 10}), alert("TorchshipLatencyP99", "25m", [WARN])),
    case(latency({"0.025": 10, "0.05": 10, "0.1": 10, "+Inf": 10}), alert("TorchshipLatencyP99", "25m")),
    # Batches 95% full for half an hour: saturated; half full: not.
    case(
        [series("torchship_batch_fill_sum", "0+0.95x60"), series("torchship_batch_fill_count", "0+1x60")],
        alert("TorchshipBatchesFull", "40m", [WARN]),
    ),
    case(
        [series("torchship_batch_fill_sum", "0+0.5x60"), series("torchship_batch_fill_count", "0+1x60")],
        alert("TorchshipBatchesFull", "40m"),
    ),
    # 300 ms mean queue wait (over 250); 100 ms.
    case(
        [series("ts_queue_latency_microseconds", "0+3000000x40"), series("ts_inference_requests_total", "0+10x40")],
        alert("TorchshipQueueWait", "25m", [WARN]),
    ),
    case(
        [series("ts_queue_latency_microseconds", "0+1000000x40"), series("ts_inference_requests_total", "0+10x40")],
        alert("TorchshipQueueWait", "25m"),
    ),
    # No request for 40 minutes after some; pods up and never a request; steady traffic.
    case([series("ts_inference_requests_total", "5x60")], alert("TorchshipNoTraffic", "45m", [WARN])),
    case(
        [{"series": 'up{namespace="tiny-sentiment",service="tiny-sentiment",pod="tiny-sentiment-1"}', "values": "1x30"}],
        alert("TorchshipNoTraffic", "20m", [{"severity": "warning", "model_name": None}]),
    ),
    case([series("ts_inference_requests_total", "0+5x60")], alert("TorchshipNoTraffic", "45m")),
    # A worker loaded the model again 10 minutes in; a container restarted; a steady worker.
    case([series("torchship_worker_starts", "1x9 2x20")], alert("TorchshipWorkerRestarts", "15m", [WARN])),
    case(
        [{"series": 'kube_pod_container_status_restarts_total{namespace="tiny-sentiment",container="torchserve",'
                    'pod="tiny-sentiment-5d9c7-abcde"}', "values": "0x9 1x20"}],
        alert("TorchshipWorkerRestarts", "15m", [{"severity": "warning", "model_name": None}]),
    ),
    case([series("torchship_worker_starts", "1x30")], alert("TorchshipWorkerRestarts", "15m")),
    # Verified: positive 75%, negative 25%. Served the other way round: both moved by 0.5 (over 0.2).
    case(
        [series("torchship_served_labels", "0+10x120", label="positive"),
         series("torchship_served_labels", "0+30x120", label="negative")],
        alert("TorchshipLabelShift", "100m", [{**WARN, "label": "positive"}, {**WARN, "label": "negative"}]),
    ),
    # A label verify never gave ("neutral", 27%), and "negative" never served (25% verified): both count.
    case(
        [series("torchship_served_labels", "0+40x120", label="positive"),
         series("torchship_served_labels", "0+15x120", label="neutral")],
        alert("TorchshipLabelShift", "100m", [{**WARN, "label": "negative"}, {**WARN, "label": "neutral"}]),
    ),
    # Served as verified; and a shifted distribution on too little traffic (under 100 texts an hour).
    case(
        [series("torchship_served_labels", "0+30x120", label="positive"),
         series("torchship_served_labels", "0+10x120", label="negative")],
        alert("TorchshipLabelShift", "100m"),
    ),
    case(
        [series("torchship_served_labels", "0+0.5x120", label="positive"),
         series("torchship_served_labels", "0+1x120", label="negative")],
        alert("TorchshipLabelShift", "100m"),
    ),
]  # fmt: skip


def _without_none(cases: list[dict]) -> list[dict]:
    """Labels set to None above are ones the alert does not carry (a clause without model_name)."""
    for c in cases:
        for test in c["alert_rule_test"]:
            for expected in test["exp_alerts"]:
                expected["exp_labels"] = {k: v for k, v in expected["exp_labels"].items() if v is not None}
    return cases


def test_each_alert_fires_on_its_series_and_not_on_healthy_ones(tmp_path):
    spec, inputs = classifier(tmp_path, "{label_shift: 0.2}")
    rule = yaml.safe_load(rendered_for(spec, inputs).files[PROMETHEUS_RULE])
    groups = rule["spec"]["groups"]
    # promtool compares annotations too; they are prose for people, so the test drops them.
    for group in groups:
        for r in group["rules"]:
            r.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": _without_none(CASES)}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        ["promtool", "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    fired = {t["alertname"] for c in CASES for t in c["alert_rule_test"] if t["exp_alerts"]}
    assert fired == {name for g in groups for r in g["rules"] if (name := r.get("alert"))}
