"""UDP fixtures: an echo server, and a port nothing listens on (the kernel
answers ICMP port unreachable). A bound port that never answers is
``silent_udp_port`` in :mod:`tests.servers.dns`."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

__all__ = ["closed_udp_port", "udp_echo_server"]


@dataclass
class UdpEchoServer:
    """Sends every datagram back, prefixed with ``prefix``; keeps what it got."""

    port: int
    prefix: bytes = b""
    received: list[bytes] = field(default_factory=list)


@contextlib.contextmanager
def run_udp_echo_server(family: int = socket.AF_INET) -> Iterator[UdpEchoServer]:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.05)
    server = UdpEchoServer(sock.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:  # an ICMP error for an earlier reply, or closed
                continue
            server.received.append(data)
            with contextlib.suppress(OSError):
                sock.sendto(server.prefix + data, peer)

    thread = threading.Thread(target=serve, name="udp-echo", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


@pytest.fixture
def udp_echo_server() -> Iterator[UdpEchoServer]:
    """A UDP echo server on 127.0.0.1 (set ``.prefix`` to change its replies)."""
    with run_udp_echo_server() as server:
        yield server


@pytest.fixture
def closed_udp_port() -> int:
    """A loopback UDP port nothing is bound to: a datagram sent there gets an
    ICMP port unreachable."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
