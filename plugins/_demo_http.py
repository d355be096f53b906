"""The HTTP probe's rows of ``anyprobe demo``, and the small HTTP/1.1 server
on anyio that answers them (the tests use it too).

A handler is an async callable given the parsed :class:`Request` and the
stream to answer on; :func:`respond` writes a whole response. The server
answers one request per connection, which is all a probe sends, unless the
handler returns True: it then reads the next request on the connection
(keep-alive, for ``reuse_connections``).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream, SocketAttribute

import anyprobe

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
#: Most requests one kept-alive connection is served.
MAX_REQUESTS_PER_CONNECTION = 10_000

REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Request:
    """A request as the server read it: header names are lower-case."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    #: How many requests the connection carried before this one.
    sequence: int = 0

    @property
    def path(self) -> str:
        """The path of the target, also for the absolute form a proxy receives."""
        target = self.target
        if "://" in target:
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        return target.split("?", 1)[0]


#: Answers a request; True keeps the connection open for the next one.
Handler = Callable[[Request, ByteStream], Awaitable[bool | None]]


async def read_request(stream: ByteStream, sequence: int = 0) -> Request | None:
    """The next request on ``stream`` (after ``sequence`` others on it); None
    when the client sent nothing usable."""
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            return None
        try:
            buffer += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return None
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = min(int(headers.get("content-length", "0") or 0), MAX_BODY)
    body = bytearray(rest)
    while len(body) < length:
        try:
            body += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            break
    return Request(parts[0], parts[1], headers, bytes(body[:length]), sequence)


async def respond(
    stream: ByteStream,
    status: int,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    reason: str | None = None,
) -> None:
    """Write a whole response (with Content-Length) and leave the stream open."""
    lines = [f"HTTP/1.1 {status} {reason or REASONS.get(status, 'Status')}"]
    given = list(headers)
    lines += [f"{k}: {v}" for k, v in given]
    if not any(k.lower() == "content-length" for k, _ in given):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


@asynccontextmanager
async def serve_http(
    handler: Handler,
    *,
    ssl_context: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
    on_connection: Callable[[bool], None] | None = None,
) -> AsyncIterator[int]:
    """Serve ``handler`` on an ephemeral port of ``host``; yields the port.

    ``on_connection(True)`` is called as a connection is accepted,
    ``on_connection(False)`` once it has ended.
    """

    async def connection(client: ByteStream) -> None:
        if on_connection is not None:
            on_connection(True)
        try:
            async with client:
                stream = await _server_side(client, ssl_context)
                if stream is not None:
                    await _serve_requests(stream, handler)
        finally:
            if on_connection is not None:
                on_connection(False)

    listener = await anyio.create_tcp_listener(local_host=host, local_port=0, backlog=1024)
    port: int = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, connection)
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()


async def _server_side(client: ByteStream, ssl_context: ssl.SSLContext | None) -> ByteStream | None:
    """``client``, or its TLS stream with ``ssl_context``; None when the handshake fails."""
    from anyio.streams.tls import TLSStream

    if ssl_context is None:
        return client
    try:
        return await TLSStream.wrap(
            client, server_side=True, ssl_context=ssl_context, standard_compatible=False
        )
    except (ssl.SSLError, OSError, anyio.BrokenResourceError, anyio.EndOfStream):
        return None


async def _serve_requests(stream: ByteStream, handler: Handler) -> None:
    """Answer requests on ``stream`` while the handler keeps the connection."""
    with suppress(
        OSError,
        anyio.BrokenResourceError,
        anyio.ClosedResourceError,
        anyio.EndOfStream,
        ssl.SSLError,
    ):
        for sequence in range(MAX_REQUESTS_PER_CONNECTION):
            request = await read_request(stream, sequence)
            if request is None or not await handler(request, stream):
                return


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
