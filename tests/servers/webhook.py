"""A loopback HTTP receiver for webhook tests: it records every request it gets.

It runs in its own threads (the standard library's ThreadingHTTPServer), so it
answers the same way whichever event loop the test runs on. Tests script its
answers (``statuses``) and can hold requests until they release them (``hold``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["webhook_receiver"]

#: Longest a held request waits for the test to release it.
HOLD_LIMIT = 30.0


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """What the receiver got, and how it answers.

    ``statuses`` are the status codes of the next answers, in order; once
    used up, every answer is ``default_status``. An answer that is not a
    success carries ``error_headers`` (``{"Retry-After": "0"}``). While
    ``hold`` is set, each request waits (in its own thread) until
    :meth:`release` is called.
    """

    url: str
    requests: list[ReceivedRequest] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    default_status: int = 200
    error_headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False
    arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def release(self) -> None:
        """Let held requests (and any later one) through."""
        self.hold = False
        self._released.set()

    def bodies(self) -> list[Any]:
        with self._lock:
            return [request.json() for request in self.requests]

    def _answer(self, request: ReceivedRequest) -> int:
        with self._lock:
            self.requests.append(request)
            status = self.statuses.pop(0) if self.statuses else self.default_status
        self.arrived.release()
        if self.hold:
            self._released.wait(HOLD_LIMIT)
        return status


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            request = ReceivedRequest(
                "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
            status = receiver._answer(request)
            answer = b'{"ok": true}' if status < 400 else b'{"ok": false}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            for name, value in receiver.error_headers.items() if status >= 400 else ():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP server on 127.0.0.1 that records POSTs; ``.url`` is ``http://.../hook``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(WebhookReceiver("")))
    server.daemon_threads = True
    receiver = WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    server.RequestHandlerClass = _handler(receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release()
        server.shutdown()
        server.server_close()
        thread.join(10)
