"""Small network helpers shared by the stages, benches and tests."""

from __future__ import annotations

import socket


def hold_free_port(ip: str = "127.0.0.1") -> socket.socket:
    """A socket bound to a TCP port that was free on ``ip`` (the OS picks it), not
    listening. While it is open no other bind to port 0 on the host gets that port,
    so several servers reserved side by side get distinct ports; close it right
    before the server binds the port (``getsockname()[1]``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((ip, 0))
    except OSError:
        sock.close()
        raise
    return sock


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``ip`` now (the OS picks it; another process may
    still take it before the caller binds, so bind soon). To reserve several ports
    at once, hold them with ``hold_free_port``: a port released here can be handed
    out again by the next call."""
    with hold_free_port(ip) as sock:
        return sock.getsockname()[1]
