"""bench/drills.py's fault drills, against the tiny model: a worker SIGKILLed under load and the image's
entrypoint (run outside a container) with a corrupted model, ~30 s together; the entrypoint under SIGTERM is
marked e2e (its drain and stop take ~16 s more). The figures themselves are the bench's
(bench/results/drills-*.json)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from drills import kill_drill

CLIENT_TIMEOUT_S = 10.0
CONCURRENCY = 8  # the drill's clients


@pytest.mark.torchserve
def test_a_worker_killed_under_load_is_restarted_and_requests_succeed_again(tiny_package):
    spec, settings, mar = tiny_package
    result = kill_drill(mar, spec.name, settings, client_timeout_s=CLIENT_TIMEOUT_S, load_s=2.0)
    # Lost: at most the requests in flight when the worker died, one per client.
    assert result["failed"] <= CONCURRENCY
    assert result["requests"] - result["failed"] == result["by_status"]["200"]
    # TorchServe started a new worker, counted by the handler's own metric, and it answered again.
    assert result["worker_ready_s"] is not None and result["recovered_s"] is not None
    assert result["worker_starts"] == 2
    # Every request ended within the client's bound: an answer, TorchServe's 507 or the client's timeout.
    assert result["longest_request_s"] <= CLIENT_TIMEOUT_S + 1
    assert set(result["by_status"]) <= {"200", "500", "503", "507", "ReadTimeout"}


@pytest.mark.torchserve
def test_a_model_that_cannot_load_never_gets_ready_and_the_logs_say_why(tiny_package):
    from drills import bad_model_drill

    spec, _, mar = tiny_package
    result = bad_model_drill(mar, spec.name, spec, budget_s=60, enough_failed_probes=5)
    assert result["corrupted_file"] == "compiled/model.pt"  # the tiny spec compiles with TorchScript
    assert not result["ever_ready"] and result["probes"] >= 5
    assert result["last_probe"].startswith("ready: not ok")
    # torch.jit.load's own words for a file that is not a TorchScript zip archive.
    assert any(
        "PytorchStreamReader failed reading zip archive" in line for line in result["telling_log_lines"]
    )


@pytest.mark.e2e
def test_sigterm_under_load_lets_requests_in_flight_finish_and_refuses_new_ones(tiny_package):
    from drills import sigterm_drill

    spec, _, mar = tiny_package
    result = sigterm_drill(mar, spec.name, spec, load_s=2.0, drain_timeout_s=3.0)
    assert result["in_flight_at_signal"] >= 1 and result["in_flight_failed"] == 0
    assert result["exit_code"] == 0 and result["stop_s"] < result["grace_s"]
    # After the stop the late client's connections are refused at once, none hangs.
    assert result["late_after_stop"] >= 1
    assert result["late_after_stop_refused"] == result["late_after_stop"]
    assert result["hung"] == 0 and result["late_longest_s"] < 5
