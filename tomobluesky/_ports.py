"""Local TCP ports for the servers tomobluesky starts (Tiled, the Kafka broker)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; another process may take it before us)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nothing listens on ``port``. Bound with SO_REUSEADDR, as uvicorn and the JVM bind theirs:
    connections of a stopped server lingering in TIME_WAIT do not keep it from restarting on its port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
