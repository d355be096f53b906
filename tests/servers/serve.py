"""Loopback servers for the ``anyprobe serve`` and pushgateway tests.

The HTTP ones are :class:`anyprobe.testing.HttpServer` (in a thread with its
own event loop), so they answer the same way whichever event loop the test
runs on, if any:

- ``web_target``: answers every request with 200 ``UP`` and records the Host headers;
- ``silent_target``: accepts connections and never answers (a slow target),
  until the test ends; ``.connected`` counts the connections it holds;
- ``push_receiver``: records every PUT and POST, as a Pushgateway would get them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import pytest

from anyprobe.testing import HttpReply, HttpRequest, HttpServer

__all__ = ["asgi_server", "push_receiver", "silent_target", "web_target"]

#: The (backend, --server) pairs anyprobe serve runs on: uvicorn serves asyncio only.
BACKEND_SERVERS = [
    ("asyncio", "hypercorn"),
    ("asyncio", "uvicorn"),
    ("asyncio", "builtin"),
    ("trio", "hypercorn"),
    ("trio", "builtin"),
]


@pytest.fixture(params=["hypercorn", "uvicorn", "builtin", "builtin-h11"])
def asgi_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The HTTP server ``serve()`` picks in this test (``--server auto``):
    each test using it runs with hypercorn, the built-in server (with
    httptools' parser when installed, and with h11's) and, on asyncio, uvicorn."""
    from anyprobe import _serve_asgi, _serve_lean_parse

    name: str = request.param
    on_trio = (
        "anyio_backend" in request.fixturenames
        and request.getfixturevalue("anyio_backend") == "trio"
    )
    if name == "uvicorn" and on_trio:
        pytest.skip("uvicorn serves asyncio only (trio is served by hypercorn and builtin)")
    if name == "uvicorn" and not _serve_asgi.uvicorn_available():
        pytest.skip("uvicorn and httptools are not installed")
    if name == "builtin-h11":
        monkeypatch.setattr(_serve_lean_parse, "PARSER_PREFERENCE", ("h11",))
        name = "builtin"
    monkeypatch.setattr(_serve_asgi, "AUTO_PREFERENCE", (name,))
    return name


@dataclass
class WebTarget:
    server: HttpServer

    @property
    def url(self) -> str:
        return self.server.url("/")

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def hosts(self) -> list[str]:
        return [r.header("host") or "" for r in list(self.server.requests)]

    @property
    def paths(self) -> list[str]:
        return [r.target for r in list(self.server.requests)]


@pytest.fixture
def web_target(anyprobe_http_server: Callable[..., HttpServer]) -> WebTarget:
    """An HTTP server on 127.0.0.1 answering 200 ``UP``; ``.url`` ends with ``/``."""
    return WebTarget(
        anyprobe_http_server(default=HttpReply(200, "UP\n", content_type="text/plain"))
    )


@dataclass
class SilentTarget:
    server: HttpServer | None = None
    connected: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait (in a thread) until one more client connected and sent its request."""
        return self.connected.acquire(timeout=timeout)

    async def hang(self, request: HttpRequest) -> HttpReply:
        self.connected.release()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


@pytest.fixture
def silent_target(anyprobe_http_server: Callable[..., HttpServer]) -> SilentTarget:
    """A server on 127.0.0.1 that accepts, reads a request and never answers."""
    target = SilentTarget()
    target.server = anyprobe_http_server(default=target.hang)
    return target


@dataclass
class Push:
    method: str
    path: str
    content_type: str
    body: bytes


@dataclass
class PushReceiver:
    server: HttpServer | None = None
    status: int = 200

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url("").rstrip("/")

    @property
    def pushes(self) -> list[Push]:
        assert self.server is not None
        return [
            Push(r.method, r.target, r.header("content-type") or "", r.body)
            for r in list(self.server.requests)
            if r.method in ("PUT", "POST")
        ]

    def answer(self, request: HttpRequest) -> HttpReply:
        return HttpReply(self.status, "" if self.status < 300 else "pushed metrics are invalid\n")


@pytest.fixture
def push_receiver(anyprobe_http_server: Callable[..., HttpServer]) -> PushReceiver:
    """An HTTP server on 127.0.0.1 recording pushes; ``.url`` is its base URL."""
    receiver = PushReceiver()
    receiver.server = anyprobe_http_server(default=receiver.answer)
    return receiver
