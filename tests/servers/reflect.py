"""A loopback HTTP server that reflects what it was sent, and redirects on demand.

- ``GET /echo``: 200; the body holds every request header as ``Name: value``
  and as ``b64 Name: <base64 of the value>``; the response carries
  ``X-Echo-Authorization`` (the request's Authorization) and a
  ``Set-Cookie: session=<SESSION_COOKIE>``.
- ``GET /redirect?to=URL``: 302 to ``URL``.
- anything else: 200 ``UP``.

``.requests`` records (path with query, headers as sent) of every request, in
order. It is :class:`anyprobe.testing.HttpServer`, in a thread with its own
event loop.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs

import pytest

from anyprobe.testing import HttpReply, HttpRequest, HttpServer, running

__all__ = ["SESSION_COOKIE", "ReflectServer", "reflect_server", "start_reflect_server"]

SESSION_COOKIE = "c00kie-Session-4f9a1e"


@dataclass
class ReflectServer:
    server: HttpServer

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url("").rstrip("/")

    @property
    def requests(self) -> list[tuple[str, dict[str, str]]]:
        return [(r.target, dict(r.raw_headers)) for r in list(self.server.requests)]


def _redirect(request: HttpRequest) -> HttpReply:
    location = parse_qs(request.query)["to"][0]
    return HttpReply(302, headers={"Location": location}, content_type=None)


def _echo(request: HttpRequest) -> HttpReply:
    lines = []
    for name, value in request.raw_headers:
        lines.append(f"{name}: {value}")
        lines.append(f"b64 {name}: {base64.b64encode(value.encode()).decode()}")
    headers = {
        "X-Echo-Authorization": request.header("authorization") or "",
        "Set-Cookie": f"session={SESSION_COOKIE}; Path=/; HttpOnly",
    }
    return HttpReply(200, "\n".join(lines) + "\n", headers=headers, content_type=None)


ROUTES = {"/redirect": _redirect, "/echo": _echo}
UP = HttpReply(200, "UP\n", content_type=None)


@pytest.fixture
def reflect_server(anyprobe_http_server: Callable[..., HttpServer]) -> ReflectServer:
    """A reflecting server on 127.0.0.1."""
    return ReflectServer(anyprobe_http_server(ROUTES, default=UP))


@contextmanager
def start_reflect_server(host: str) -> Iterator[ReflectServer]:
    """A reflecting server on ``host`` (any loopback address), until the block ends."""
    with running(HttpServer(ROUTES, default=UP, host=host)) as server:
        yield ReflectServer(server)
