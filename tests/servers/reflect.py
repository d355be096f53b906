"""A loopback HTTP server that reflects what it was sent, and redirects on demand.

- ``GET /echo``: 200; the body holds every request header as ``Name: value``
  and as ``b64 Name: <base64 of the value>``; the response carries
  ``X-Echo-Authorization`` (the request's Authorization) and a
  ``Set-Cookie: session=<SESSION_COOKIE>``.
- ``GET /redirect?to=URL``: 302 to ``URL``.
- anything else: 200 ``UP``.

``.requests`` records (path, headers) of every request, in order.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

__all__ = ["SESSION_COOKIE", "ReflectServer", "reflect_server", "start_reflect_server"]

SESSION_COOKIE = "c00kie-Session-4f9a1e"


@dataclass
class ReflectServer:
    host: str
    port: int
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _handler(server: ReflectServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            headers = {name: value for name, value in self.headers.items()}
            with server.lock:
                server.requests.append((self.path, headers))
            parts = urlsplit(self.path)
            extra: list[tuple[str, str]] = []
            if parts.path == "/redirect":
                status, body = 302, b""
                extra.append(("Location", parse_qs(parts.query)["to"][0]))
            elif parts.path == "/echo":
                status = 200
                lines = []
                for name, value in headers.items():
                    lines.append(f"{name}: {value}")
                    encoded = base64.b64encode(value.encode()).decode()
                    lines.append(f"b64 {name}: {encoded}")
                body = ("\n".join(lines) + "\n").encode()
                extra.append(("X-Echo-Authorization", headers.get("Authorization", "")))
                extra.append(("Set-Cookie", f"session={SESSION_COOKIE}; Path=/; HttpOnly"))
            else:
                status, body = 200, b"UP\n"
            self.send_response(status)
            for name, value in extra:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def reflect_server() -> Iterator[ReflectServer]:
    """A reflecting server on 127.0.0.1."""
    with start_reflect_server("127.0.0.1") as server:
        yield server


@contextmanager
def start_reflect_server(host: str) -> Iterator[ReflectServer]:
    """A reflecting server on ``host`` (any loopback address), until the block ends."""
    httpd = ThreadingHTTPServer((host, 0), BaseHTTPRequestHandler)
    httpd.daemon_threads = True
    server = ReflectServer(host, httpd.server_address[1])
    httpd.RequestHandlerClass = _handler(server)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
