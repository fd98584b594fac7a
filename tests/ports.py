"""Loopback ports for the processes tests and benchmarks start (standard library only).

`loadtest/` imports these from here; nothing in `tests/` imports `loadtest/` except the tests
of the load-test tools themselves.
"""

from __future__ import annotations

import socket

__all__ = ["connects", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now, for a child process to bind."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connects(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
