import errno
import socket

import pytest

from graphtrain.net import free_port, hold_free_port


def test_held_ports_are_distinct_and_not_bindable_until_released():
    held = [hold_free_port("127.0.0.1") for _ in range(50)]
    try:
        ports = [sock.getsockname()[1] for sock in held]
        assert len(set(ports)) == len(ports)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
            with pytest.raises(OSError) as refused:
                other.bind(("127.0.0.1", ports[0]))
            assert refused.value.errno == errno.EADDRINUSE
        held[0].close()  # released: the server can bind it now
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", ports[0]))
            server.listen()
    finally:
        for sock in held:
            sock.close()


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", port))
