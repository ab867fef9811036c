"""`torchship.diff.live`: a replay against two real HTTP servers on loopback standing in for the stable and
the canary TorchServe (deterministic answers, one refusal, one changed answer)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from torchship.diff.live import LiveEndpointUnreachable, LiveReplayError, replay_live
from torchship.diff.record import SkippedInput
from torchship.serving.ports import free_port

MODEL = "tiny"
TOKEN = "s3cret"
# The canary answers differently to this text, and refuses the one below with TorchServe's 400 shape.
CHANGED = "the canary answers this one differently"
REFUSED = "too long for the canary"


class Endpoint:
    """One fake TorchServe inference API: /ping and /predictions/<MODEL>, answering {"len": …, "by": …}."""

    def __init__(self, side: str, log: list[tuple[str, str]], lock: threading.Lock, token: str | None = None):
        self.side, self.log, self.lock, self.token = side, log, lock, token
        self.predictions = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, payload) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if endpoint.token and self.headers.get("Authorization") != f"Bearer {endpoint.token}":
                    self._send(401, {"code": 401, "message": "Token Authorization failed"})
                    return False
                return True

            def do_GET(self) -> None:
                if self.path == "/ping" and self._authorized():
                    self._send(200, {"status": "Healthy"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self._authorized():
                    return
                assert self.path == f"/predictions/{MODEL}"
                with endpoint.lock:
                    endpoint.predictions += 1
                    endpoint.log.append((endpoint.side, body["text"]))
                text = body["text"]
                if endpoint.side == "canary" and text == REFUSED:
                    return self._send(400, {"code": 400, "type": "BadRequest", "message": "text is too long"})
                answer = len(text) + (1 if endpoint.side == "canary" and text == CHANGED else 0)
                self._send(200, {"len": answer})

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints():
    log: list[tuple[str, str]] = []
    lock = threading.Lock()
    started = []

    def start(token: str | None = None) -> tuple[Endpoint, Endpoint]:
        pair = Endpoint("stable", log, lock, token), Endpoint("canary", log, lock, token)
        for endpoint in pair:
            endpoint.thread.start()
            started.append(endpoint)
        return pair

    start.log = log
    yield start
    for endpoint in started:
        endpoint.stop()


def write_replay(tmp_path, lines: list[str]):
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replay_collects_both_answers_and_reports_bad_lines_and_refusals(endpoints, tmp_path):
    stable, canary = endpoints()
    replay = write_replay(
        tmp_path,
        [
            json.dumps({"text": "hello"}),  # 1
            "{not json",  # 2
            json.dumps({"text": CHANGED}),  # 3
            "",  # 4: blank, neither a request nor an error
            json.dumps({}),  # 5
            json.dumps({"text": REFUSED}),  # 6
            "42",  # 7
            json.dumps({"text": "a third request"}),  # 8
        ],
    )
    answers = replay_live(stable.url, canary.url, MODEL, replay, clients=3)
    assert answers.requests == [{"text": "hello"}, {"text": CHANGED}, {"text": "a third request"}]
    assert answers.origins == ["requests.jsonl:1", "requests.jsonl:3", "requests.jsonl:8"]
    assert answers.stable == [{"len": 5}, {"len": len(CHANGED)}, {"len": 15}]
    assert answers.canary == [{"len": 5}, {"len": len(CHANGED) + 1}, {"len": 15}]
    assert [s.where for s in answers.skipped] == [
        "requests.jsonl:2", "requests.jsonl:5", "requests.jsonl:6", "requests.jsonl:7",
    ]  # fmt: skip
    assert answers.skipped[0].reason.startswith("not JSON (Expecting property name")
    assert answers.skipped[1] == SkippedInput(
        where="requests.jsonl:5", reason="empty object: nothing to send"
    )
    assert answers.skipped[2] == SkippedInput(
        where="requests.jsonl:6", reason="canary answered 400: text is too long"
    )
    assert "bare int" in answers.skipped[3].reason
    # Every good line went to both sides (the refused one too: it was sent, then skipped).
    assert stable.predictions == canary.predictions == 4
    latency = answers.latency
    assert latency.clients == 3
    assert latency.old.requests == latency.new.requests == 3
    assert len(latency.old.samples_ms) == 3 and all(ms > 0 for ms in latency.new.samples_ms)
    assert latency.old.p50_ms == sorted(latency.old.samples_ms)[1]
    assert latency.old.p99_ms == max(latency.old.samples_ms)
    expected_rps = 3 / (sum(latency.new.samples_ms) / 1000 / 3)
    assert latency.new.throughput_rps == pytest.approx(expected_rps)


def test_sides_alternate_which_is_asked_first(endpoints, tmp_path):
    stable, canary = endpoints()
    texts = [f"request {i}" for i in range(6)]
    replay = write_replay(tmp_path, [json.dumps({"text": t}) for t in texts])
    replay_live(stable.url, canary.url, MODEL, replay, clients=1)
    # One client: the log is the exact order of arrival.
    expected = []
    for i, text in enumerate(texts):
        first, second = ("stable", "canary") if i % 2 == 0 else ("canary", "stable")
        expected += [(first, text), (second, text)]
    assert endpoints.log == expected


def test_an_unreachable_url_fails_before_any_request_is_sent(endpoints, tmp_path):
    stable, _ = endpoints()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    replay = write_replay(tmp_path, [json.dumps({"text": "hello"})])
    with pytest.raises(LiveEndpointUnreachable) as info:
        replay_live(stable.url, closed, MODEL, replay)
    assert f"the canary endpoint {closed} is unreachable" in info.value.message
    assert "nothing was sent to either endpoint" in info.value.message
    assert f"{closed}/ping" in info.value.hint
    assert stable.predictions == 0
    with pytest.raises(LiveEndpointUnreachable, match=f"the stable endpoint {closed} is unreachable"):
        replay_live(closed, stable.url, MODEL, replay)
    assert stable.predictions == 0


def test_the_bearer_token_reaches_both_sides(endpoints, tmp_path):
    stable, canary = endpoints(token=TOKEN)
    replay = write_replay(tmp_path, [json.dumps({"text": "hello"})])
    with pytest.raises(
        LiveEndpointUnreachable, match=r"answered 401 to GET /ping: .*Token Authorization failed"
    ):
        replay_live(stable.url, canary.url, MODEL, replay)
    assert stable.predictions == canary.predictions == 0
    answers = replay_live(stable.url, canary.url, MODEL, replay, token=TOKEN)
    assert answers.stable == answers.canary == [{"len": 5}]


def test_a_file_without_one_usable_line_is_an_error(endpoints, tmp_path):
    stable, canary = endpoints()
    replay = write_replay(tmp_path, ["nope", "[]", '""'])
    with pytest.raises(LiveReplayError, match=r"has no request to replay \(3 bad line\(s\)\)") as info:
        replay_live(stable.url, canary.url, MODEL, replay)
    assert "requests.jsonl:2: empty list: nothing to send" in info.value.details
    with pytest.raises(LiveReplayError, match="cannot read the replay file"):
        replay_live(stable.url, canary.url, MODEL, tmp_path / "missing.jsonl")
