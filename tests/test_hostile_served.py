"""Hostile and good requests mixed against the real TorchServe, for every task: each good request 200 and
equal to the source model's answer, each hostile one its own 4xx, and no worker ever restarts. And a worker
SIGKILLed under load: TorchServe restarts it and every request sent after recovery succeeds."""

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from test_torchserve import post
from torchship.reference import source_results

pytestmark = pytest.mark.torchserve

SENTENCES = [
    "TorchServe is a flexible tool for serving PyTorch models in production.",
    "John lives in Paris and works for Google.",
    "a great movie , i love it !",
    "Fresh basil, ripe tomatoes and good olive oil make a simple summer pasta sauce.",
]


def distinct_words(count: int, offset: int = 0) -> str:
    """Words that are all different and none a stop word, so each is its own candidate phrase."""
    return " ".join(f"w{offset + i}q" for i in range(count))


NESTED = b"[" * 100_000 + b"]" * 100_000
# (body, content type, status, message) sent to every task.
HOSTILE = [
    (json.dumps({"text": "abc \ud800"}).encode(), "application/json", 400, "not valid UTF-8/Unicode"),
    (json.dumps({"texts": ["ok", "\udfff"]}).encode(), "application/json", 400, "not valid UTF-8/Unicode"),
    (NESTED, "application/json", 400, "nested too deeply"),
    (b'{"text": ' + NESTED + b"}", "application/json", 400, "nested too deeply"),
    (b"\xed\xa0\x80 surrogate as UTF-8 bytes", "text/plain", 400, "not valid UTF-8"),
    (b"{not json", "application/json", 400, "malformed JSON"),
    (json.dumps({"texts": []}).encode(), "application/json", 400, "empty list"),
    (json.dumps({"text": "ok", "bogus": [[[]]]}).encode(), "application/json", 400, "unknown option"),
]
KEYWORDS_HOSTILE = [
    # The 45-second request: 48 texts of hundreds of candidates each, MMR and top_n 50.
    (
        json.dumps(
            {"texts": [distinct_words(300, 300 * i) for i in range(48)], "use_mmr": True, "top_n": 50}
        ).encode(),
        "application/json",
        413,
        "keywords.max_candidates_per_request",
    ),
    (
        json.dumps({"text": distinct_words(1500)}).encode(),
        "application/json",
        413,
        "keywords.max_candidates)",
    ),
    (json.dumps({"text": "ok", "diversity": float("nan")}).encode(), "application/json", 400, "diversity"),
]
TASK_PACKAGES = ["tiny_package", "keywords_package", "sentiment_package", "ner_package"]


def describe(server, name) -> dict:
    token = server.keys()["management"]
    return httpx.get(
        f"{server.management_url}/models/{name}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()[0]


def agrees(task: str, served, expected) -> bool:
    if task == "embeddings":
        return (
            len(served) == len(expected)
            and max(abs(a - b) for a, b in zip(served, expected, strict=True)) < 1e-4
        )
    if task == "text-classification":
        return [r["label"] for r in served] == [r["label"] for r in expected] and all(
            abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(served, expected, strict=True)
        )
    if task == "token-classification":
        key = ("entity_group", "start", "end")
        return [tuple(e[k] for k in key) for e in served] == [tuple(e[k] for k in key) for e in expected]
    return [k["keyword"] for k in served] == [k["keyword"] for k in expected]


@pytest.mark.parametrize("package", TASK_PACKAGES)
def test_mixed_hostile_and_good_load(torchserve, request, package):
    spec, settings, _ = request.getfixturevalue(package)
    model_dir = settings.stage_root(spec.name, spec.version) / "fetch" / "model"
    expected = source_results(spec, model_dir, SENTENCES)
    hostile = HOSTILE + (KEYWORDS_HOSTILE if spec.task == "keywords" else [])
    good = [(json.dumps({"text": s}).encode(), "application/json", 200, i) for i, s in enumerate(SENTENCES)]
    mixed = [r for pair in zip(good * 3, hostile + hostile[:4], strict=False) for r in pair]
    pids_before = [w["pid"] for w in describe(torchserve, spec.name)["workers"]]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda r: post(torchserve, spec.name, r[0], r[1]), mixed))
    elapsed = time.monotonic() - started
    for (_, _, status, what), response in zip(mixed, responses, strict=True):
        assert response.status_code == status, (what, response.status_code, response.text[:300])
        if status == 200:
            assert agrees(spec.task, response.json(), expected[what]), (SENTENCES[what], response.text[:300])
        else:
            body = response.json()
            assert body["code"] == status and what in body["message"], body
    # No worker died or restarted: same pids, all READY, nothing in the log.
    workers = describe(torchserve, spec.name)["workers"]
    assert [w["pid"] for w in workers] == pids_before and {w["status"] for w in workers} == {"READY"}
    assert "Backend worker process died" not in "\n".join(torchserve.log_lines())
    assert elapsed < spec.serve.response_timeout_s / 4, elapsed


def test_a_worker_killed_under_load_is_restarted(tiny_package):
    """Its own TorchServe: killing the session's worker would show up in every other test's log check."""
    from torchship.serving.torchserve import TorchServe

    spec, settings, mar = tiny_package
    outcomes: list[tuple[float, int | None]] = []  # (time sent, status or None for a broken connection)
    stop = threading.Event()

    def load(server):
        with server.client(timeout_s=60) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status = client.post(
                        f"/predictions/{spec.name}", json={"text": "the cat sat"}
                    ).status_code
                except httpx.TransportError:
                    status = None
                outcomes.append((sent, status))

    with TorchServe({spec.name: mar}, settings) as server:
        [old] = [w["pid"] for w in describe(server, spec.name)["workers"]]
        threads = [threading.Thread(target=load, args=(server,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        killed = time.monotonic()
        os.kill(old, signal.SIGKILL)
        recovered = None
        while time.monotonic() - killed < 90:
            workers = describe(server, spec.name)["workers"]
            if workers and workers[0]["pid"] not in (old, -1) and workers[0]["status"] == "READY":
                recovered = time.monotonic()
                break
            time.sleep(0.2)
        time.sleep(1.5)  # keep the load on after recovery
        stop.set()
        for thread in threads:
            thread.join(timeout=70)
    assert recovered is not None, "TorchServe did not restart the killed worker within 90 s"
    failed = [status for _, status in outcomes if status != 200]
    after = [status for sent, status in outcomes if sent > recovered]
    print(
        f"\nworker SIGKILL: {len(failed)} of {len(outcomes)} requests failed ({sorted(set(map(str, failed)))}), "
        f"recovered in {recovered - killed:.1f} s"
    )
    assert after and all(status == 200 for status in after), after
    assert all(status is None or status >= 500 for status in failed)
    assert len(failed) <= 16, failed  # only what was in flight or queued at the kill
