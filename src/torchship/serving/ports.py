"""Free loopback ports, and a clear error for a port that is taken."""

from __future__ import annotations

import socket

from torchship.errors import ServingError

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all sockets stay bound until every port is chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def ensure_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            raise ServingError(
                f"port {port} on {HOST} is already in use",
                hint="Stop whatever listens there, or choose another port with --port.",
            ) from None
