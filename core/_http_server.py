"""The one small HTTP/1.1 server on anyio that anyprobe starts itself.

``anyprobe demo`` answers its HTTP rows with it, and :class:`anyprobe.testing.HttpServer`
(the test server of plugin authors and of anyprobe's own tests) is built on it.

A handler is an async callable given the parsed :class:`Request` and the
stream to answer on (so it may also misbehave: trickle, reset, send garbage);
:func:`respond` writes a whole response. The server answers one request per
connection, which is all a probe sends, unless the handler returns True: it
then reads the next request on the connection (keep-alive). A request whose
head is not HTTP gets ``400 Bad Request`` and the connection is closed.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import anyio
from anyio.abc import ByteStream, SocketAttribute

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
#: Most requests one kept-alive connection is served.
MAX_REQUESTS_PER_CONNECTION = 10_000

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class Request:
    """A request as the server read it.

    ``headers`` has lower-case names (the last value of a repeated header);
    ``raw_headers`` keeps every header line in order, names as sent.
    """

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    #: How many requests the connection carried before this one.
    sequence: int = 0
    raw_headers: tuple[tuple[str, str], ...] = field(default=())
    version: str = "HTTP/1.1"

    @property
    def path(self) -> str:
        """The path of the target, also for the absolute form a proxy receives."""
        target = self.target.split("?", 1)[0]
        if not target.startswith("/") and "://" in target:
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        return target

    @property
    def query(self) -> str:
        """What follows ``?`` in the target, without it ("" if none)."""
        return self.target.partition("?")[2]


#: Answers a request; True keeps the connection open for the next one.
Handler = Callable[[Request, ByteStream], Awaitable[bool | None]]


class BadRequest(Exception):
    """The client sent a head that is not an HTTP/1.x request."""


async def read_request(stream: ByteStream, sequence: int = 0) -> Request | None:
    """The next request on ``stream`` (after ``sequence`` others on it); None
    when the client sent nothing more. Raises :class:`BadRequest` for a head
    that is not HTTP."""
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            raise BadRequest("request head too long")
        try:
            buffer += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            if buffer.strip():
                raise BadRequest("incomplete request head") from None
            return None
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"not an HTTP request line: {lines[0][:80]!r}")
    raw: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        raw.append((name.strip(), value.strip()))
    headers = {name.lower(): value for name, value in raw}
    try:
        length = min(int(headers.get("content-length", "0") or 0), MAX_BODY)
    except ValueError:
        raise BadRequest("bad Content-Length") from None
    body = bytearray(rest)
    while len(body) < length:
        try:
            body += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            break
    return Request(
        parts[0], parts[1], headers, bytes(body[:length]), sequence, tuple(raw), parts[2]
    )


def response_head(
    status: int, headers: Iterable[tuple[str, str]], length: int, *, reason: str | None = None
) -> bytes:
    """The head of a response: ``headers``, then Content-Length (unless given)
    and ``Connection: close``."""
    lines = [f"HTTP/1.1 {status} {reason or REASONS.get(status, 'Status')}"]
    given = list(headers)
    lines += [f"{k}: {v}" for k, v in given]
    if not any(k.lower() == "content-length" for k, _ in given):
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def respond(
    stream: ByteStream,
    status: int,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    reason: str | None = None,
) -> None:
    """Write a whole response (with Content-Length) and leave the stream open."""
    await stream.send(response_head(status, headers, len(body), reason=reason) + body)


@asynccontextmanager
async def serve_http(
    handler: Handler,
    *,
    ssl_context: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
    on_connection: Callable[[bool], None] | None = None,
    backlog: int = 1024,
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

    listener = await anyio.create_tcp_listener(local_host=host, local_port=0, backlog=backlog)
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
            try:
                request = await read_request(stream, sequence)
            except BadRequest:
                await stream.send(_BAD_REQUEST)
                return
            if request is None or not await handler(request, stream):
                return
