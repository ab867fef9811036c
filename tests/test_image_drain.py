"""The entrypoint's drain against a real HTTP server on 127.0.0.1: it waits for a slow request in flight, returns
once it has its answer, and is bounded when an idle keep-alive connection never closes."""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from torchship.image.runtime.drain import established_on_port, wait_for_drain

if not Path("/proc/net/tcp").is_file():  # pragma: no cover - Linux CI always has it
    pytest.skip("the drain reads /proc/net/tcp, which only Linux has", allow_module_level=True)

SLOW_S = 1.5


class SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like TorchServe's Netty frontend

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(SLOW_S)
        body = b"done"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_no_connection_drains_at_once(server):
    assert established_on_port(server) == 0
    result = wait_for_drain(server, timeout_s=5, poll_s=0.05)
    assert result.drained and result.waited_s < 0.5


def test_waits_for_the_slow_request_in_flight_then_returns(server):
    answer = {}

    def client() -> None:
        # Connection: close, as a one-shot client does: the socket closes once the answer is in.
        connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        connection.request("GET", "/slow", headers={"Connection": "close"})
        response = connection.getresponse()
        answer["status"], answer["body"] = response.status, response.read()
        answer["at"] = time.monotonic()
        connection.close()

    sent = time.monotonic()
    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 5
    while established_on_port(server) == 0:  # the request is in flight once the server side is ESTABLISHED
        assert time.monotonic() < deadline, "the client never connected"
        time.sleep(0.01)
    messages = []
    result = wait_for_drain(server, timeout_s=10, poll_s=0.05, log=messages.append)
    returned = time.monotonic()
    thread.join(5)
    assert answer["status"] == 200 and answer["body"] == b"done"
    assert result.drained and result.left == 0
    # It waited for the answer, not for the timeout: returned after the response arrived, within a few polls.
    assert answer["at"] <= returned < answer["at"] + 1.0
    assert returned - sent >= SLOW_S
    assert messages and "1 connection(s)" in messages[0]


def test_an_idle_keep_alive_connection_is_bounded_by_the_timeout(server):
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    connection.request("GET", "/fast")
    assert connection.getresponse().read() == b"done"  # answered; the connection stays open, idle
    try:
        started = time.monotonic()
        result = wait_for_drain(server, timeout_s=0.6, poll_s=0.05)
        took = time.monotonic() - started
        assert not result.drained and result.left == 1
        assert 0.6 <= took < 1.5
    finally:
        connection.close()


def test_the_drain_ends_when_the_server_has_exited(server):
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    connection.request("GET", "/fast")
    connection.getresponse().read()
    try:
        result = wait_for_drain(server, timeout_s=10, poll_s=0.05, child_exited=lambda: True)
        assert not result.drained and result.waited_s < 0.5
    finally:
        connection.close()


def test_counts_only_established_sockets_on_that_local_port(tmp_path):
    # Independent values: a hand-written /proc/net/tcp table (port 8080 = 0x1F90, 40000 = 0x9C40).
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n"  # LISTEN
        "   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 0 0 2 1\n"  # server side
        "   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 0 0 3 1\n"  # client side
        "   3: 0100007F:1F90 0100007F:9C41 06 00000000:00000000 00:00000000 00000000 0 0 0 1\n"  # TIME_WAIT
    )
    assert established_on_port(8080, (table, tmp_path / "absent")) == 1
    assert established_on_port(40000, (table,)) == 1
