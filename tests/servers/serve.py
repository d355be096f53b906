"""Loopback servers for the ``anyprobe serve`` and pushgateway tests.

They run in their own threads (the standard library's servers), so they answer
the same way whichever event loop the test runs on:

- ``web_target``: answers every GET with 200 and records the Host headers;
- ``silent_target``: accepts connections and never answers (a slow target),
  until the test ends; ``.connected`` counts the connections it holds;
- ``push_receiver``: records every PUT and POST, as a Pushgateway would get them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["push_receiver", "silent_target", "web_target"]

#: Longest a silent connection is held open.
SILENCE_LIMIT = 60.0


@dataclass
class WebTarget:
    url: str
    port: int
    hosts: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _web_handler(target: WebTarget) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with target.lock:
                target.hosts.append(self.headers.get("Host", ""))
                target.paths.append(self.path)
            body = b"UP\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def web_target() -> Iterator[WebTarget]:
    """An HTTP server on 127.0.0.1 answering 200 ``UP``; ``.url`` ends with ``/``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    port = server.server_address[1]
    target = WebTarget(f"http://127.0.0.1:{port}/", port)
    server.RequestHandlerClass = _web_handler(target)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield target
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass
class SilentTarget:
    port: int
    connected: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait (in a thread) until one more connection arrived."""
        return self.connected.acquire(timeout=timeout)


@pytest.fixture
def silent_target() -> Iterator[SilentTarget]:
    """A TCP server on 127.0.0.1 that accepts and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    target = SilentTarget(listener.getsockname()[1])
    held: list[socket.socket] = []

    def accept() -> None:
        while not target.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            target.connected.release()

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield target
    finally:
        target.stop.set()
        thread.join(10)
        for conn in held:
            conn.close()
        listener.close()


@dataclass
class Push:
    method: str
    path: str
    content_type: str
    body: bytes


@dataclass
class PushReceiver:
    url: str
    pushes: list[Push] = field(default_factory=list)
    status: int = 200


def _push_handler(receiver: PushReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver.pushes.append(
                Push(self.command, self.path, self.headers.get("Content-Type", ""), body)
            )
            answer = b"" if receiver.status < 300 else b"pushed metrics are invalid\n"
            self.send_response(receiver.status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_PUT = _record
        do_POST = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def push_receiver() -> Iterator[PushReceiver]:
    """An HTTP server on 127.0.0.1 recording pushes; ``.url`` is its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    receiver = PushReceiver(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _push_handler(receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
