"""Small network helpers shared by the stages, benches and tests."""

from __future__ import annotations

import socket


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``ip`` now (the OS picks it; another process may
    still take it before the caller binds, so bind soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]
