"""Servers on blocking sockets in a thread, for what the anyio servers cannot do.

OpenSSL on a real socket sends the TLS alert that ends a failed server-side
handshake (the anyio servers' memory BIO drops it), as nginx or Postfix do, so
a client can see why it was refused.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

__all__: list[str] = []  # helpers, not fixtures


@contextlib.contextmanager
def accept_in_thread(
    handle: Callable[[socket.socket], None], *, backlog: int = 128
) -> Iterator[int]:
    """A loopback listener whose connections ``handle`` serves, one at a time,
    in a thread; each connection is closed after it. Yields the port."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0), backlog=backlog)
    listener.settimeout(0.05)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                client.settimeout(2)
                handle(client)
            finally:
                client.close()

    thread = threading.Thread(target=serve, name="threaded-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@contextlib.contextmanager
def blocking_tls_server(
    context: ssl.SSLContext, after_handshake: Callable[[ssl.SSLSocket], None]
) -> Iterator[int]:
    """A TLS server that does the handshake, then ``after_handshake``; yields its port."""

    def handle(client: socket.socket) -> None:
        tls = context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        try:
            tls.do_handshake()
            after_handshake(tls)
        except (OSError, ssl.SSLError):
            # A lingering close: closing with the client's data unread would
            # send a reset that could overtake the alert OpenSSL has just sent.
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_WR)
                for _ in range(1000):
                    if not tls.recv(4096):
                        break
        finally:
            tls.close()

    with accept_in_thread(handle) as port:
        yield port
