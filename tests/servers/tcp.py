"""Plain TCP fixtures: a port that accepts, one that refuses, one that never answers."""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Iterator

import pytest

from .threaded import accept_in_thread

__all__ = ["blackhole_port", "closed_port", "listening_port"]


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A loopback port that accepts every connection and closes it at once.

    It accepts in a thread (not only through the kernel's backlog), so any
    number of checks can connect without the accept queue filling up.
    """
    with accept_in_thread(lambda client: None, backlog=1024) as port:
        yield port


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A loopback port whose SYNs go unanswered: a listener with a full backlog.

    The listener never accepts; once its (tiny) accept queue is full, the
    kernel drops further SYNs, so a connect hangs until the caller gives up.
    """
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    # Fill the queue: connect until a connect no longer completes at once.
    for _ in range(64):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            client.connect(("127.0.0.1", port))
        fillers.append(client)
        _, writable, _ = select.select([], [client], [], 0.2)
        if not writable:
            break
    try:
        yield port
    finally:
        for client in fillers:
            client.close()
        server.close()
