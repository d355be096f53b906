"""The HTTP probe's rows of ``anyprobe demo``, answered by anyprobe's small
HTTP/1.1 server (``anyprobe._http_server``, which the test server of
``anyprobe.testing`` is built on too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import ByteStream

import anyprobe
from anyprobe._http_server import Request, respond, serve_http


class DemoRoutes:
    """``/health`` answers UP, ``/slow`` answers after half a second, ``/fail`` is a 503."""

    async def __call__(self, request: Request, stream: ByteStream) -> None:
        if request.path == "/health":
            await respond(stream, 200, b'{"status": "UP"}', [("Content-Type", "application/json")])
        elif request.path == "/slow":
            await anyio.sleep(0.5)
            await respond(stream, 200, b"slow but fine\n")
        elif request.path == "/fail":
            await respond(stream, 503, b"down for maintenance\n")
        else:
            await respond(stream, 404, b"not found\n")


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """An endpoint that answers, a slow one, a failing one (plain HTTP on loopback)."""
    async with serve_http(DemoRoutes()) as port:
        base = f"http://127.0.0.1:{port}"
        yield [
            anyprobe.DemoCheck(
                "http: healthy endpoint",
                f"{base}/health",
                anyprobe.Status.OK,
                options={"json_assertions": ["status == 'UP'"]},
            ),
            anyprobe.DemoCheck(
                "http: slow endpoint",
                f"{base}/slow",
                anyprobe.Status.WARNING,
                options={"warning_after": 0.2},
            ),
            anyprobe.DemoCheck("http: failing endpoint", f"{base}/fail", anyprobe.Status.CRITICAL),
        ]
