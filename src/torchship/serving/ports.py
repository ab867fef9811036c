"""Free loopback ports, and a clear error for a port that is taken."""

from __future__ import annotations

import socket

from torchship.errors import ServingError

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ensure_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            raise ServingError(
                f"port {port} on {HOST} is already in use",
                hint="Stop whatever listens there, or choose another port with --port.",
            ) from None
