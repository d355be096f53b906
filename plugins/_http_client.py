"""anyprobe's HTTP client: one request over a stream that is already open.

:func:`exchange_h11` speaks HTTP/1.1 with h11, :func:`exchange_h2` HTTP/2
through httpcore's connection on the same socket. Both send the request and
read the response head and a bounded body, each part timed as the phase the
caller names. The HTTP probe and DNS over HTTPS both go through here.

Socket errors (``OSError``, ``anyio.BrokenResourceError``) propagate: the
caller knows what it was talking to and says so. What the server sent that
is not HTTP, or a connection closed before the answer, is a
:class:`anyprobe.CheckFailed`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote

import anyio
from anyio.abc import ByteStream

import anyprobe
from anyprobe.net import describe_os_error, fail_from_os_error
from anyprobe.tls import TlsInfo, describe_tls_error, find_ssl_error

#: Bytes asked of the stream at a time.
READ_SIZE = 65536
#: The longest response head (status line and headers) read by default.
MAX_HEAD_BYTES = 64 * 1024
#: The phases a request is timed in by default: up to the response head, then the body.
PHASES = ("first_byte", "transfer")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What goes out: ``target`` is the request target (``/path?query``, or
    the absolute form a proxy wants); header names are ASCII tokens."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]]
    body: bytes | None = None


@dataclass(slots=True)
class Response:
    """What came back: header names are lower-case; ``body`` holds what was
    kept of ``body_bytes`` read, ``truncated`` when the body passed the limit."""

    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytearray
    body_bytes: int
    address: str = ""
    tls: TlsInfo | None = None
    truncated: bool = False

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def add_body(self, chunk: bytes, limit: int, keep: bool) -> bool:
        """Count ``chunk`` (and keep it when ``keep``); False once the body
        passed ``limit`` bytes: it is then truncated, the rest is not read."""
        size = len(chunk)
        if self.body_bytes + size > limit:
            if keep:
                self.body += chunk[: limit - self.body_bytes]
            self.body_bytes = limit
            self.truncated = True
            return False
        self.body_bytes += size
        if keep:
            self.body += chunk
        return True


class StaleConnection(Exception):
    """A reused connection that the server had closed while it was idle."""


def encode_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header names are ASCII tokens (validated); values go out as UTF-8."""
    return [(name.encode("ascii"), value.encode("utf-8")) for name, value in headers]


def io_failure(exc: BaseException, server_name: str) -> anyprobe.CheckFailed:
    """The verdict on a socket or TLS error while talking to ``server_name``."""
    if find_ssl_error(exc) is not None:
        return anyprobe.CheckFailed(describe_tls_error(exc, server_name), error=find_ssl_error(exc))
    if isinstance(exc, anyio.EndOfStream):
        return anyprobe.CheckFailed(
            "the server closed the connection without a response", error=exc
        )
    return fail_from_os_error(exc)


@contextmanager
def _timed(ctx: anyprobe.CheckContext, phase: str | None) -> Iterator[None]:
    with ctx.phase(phase) if phase is not None else nullcontext():
        yield


# -- HTTP/1.1 ----------------------------------------------------------------------


def new_h11_connection(max_head_bytes: int = MAX_HEAD_BYTES) -> Any:
    """A client h11 connection that refuses a response head over ``max_head_bytes``."""
    import h11

    return h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_bytes)


async def exchange_h11(
    stream: ByteStream,
    request: HttpRequest,
    ctx: anyprobe.CheckContext,
    *,
    max_body_bytes: int,
    keep_body: bool = True,
    protocol: Any = None,
    reused: bool = False,
    max_head_bytes: int = MAX_HEAD_BYTES,
    phases: tuple[str, str] | None = PHASES,
) -> Response:
    """Send ``request`` over HTTP/1.1 on ``stream`` and read the response.

    Sending and reading the head are timed as ``phases[0]``, reading the body
    (at most ``max_body_bytes``, kept only when ``keep_body``) as
    ``phases[1]``; with ``phases`` None the caller times the whole exchange.
    ``protocol`` is the h11 connection of a kept connection (else a new one
    is made, refusing a head over ``max_head_bytes``); on a ``reused`` one, a
    connection the server closed before sending a byte raises
    :class:`StaleConnection`.
    """
    connection = protocol or new_h11_connection(max_head_bytes)
    data = _request_bytes(connection, request)
    events = _H11Events(connection, stream, reused=reused)
    head_phase, body_phase = phases or (None, None)
    with _timed(ctx, head_phase):
        await _send(stream, data, reused=reused)
        response = await events.head()
    with _timed(ctx, body_phase):
        await events.body(response, max_body_bytes, keep_body)
    return response


def _request_bytes(connection: Any, request: HttpRequest) -> bytes:
    """The request as h11 writes it; a request h11 refuses to send is unknown."""
    import h11

    try:
        data: bytes = connection.send(
            h11.Request(
                method=request.method,
                target=request.target,
                headers=encode_headers(request.headers),
            )
        )
        if request.body:
            data += connection.send(h11.Data(data=request.body))
        data += connection.send(h11.EndOfMessage())
    except h11.LocalProtocolError as exc:
        raise anyprobe.CheckFailed(
            f"cannot send the request: {exc}", status=anyprobe.Status.UNKNOWN
        ) from None
    return data


async def _send(stream: ByteStream, data: bytes, *, reused: bool) -> None:
    try:
        await stream.send(data)
    except (OSError, anyio.BrokenResourceError) as exc:
        if reused:
            raise StaleConnection(describe_os_error(exc)) from None
        raise


class _H11Events:
    """The events of one response, read from ``stream`` as h11 needs bytes."""

    def __init__(self, connection: Any, stream: ByteStream, *, reused: bool) -> None:
        self.connection = connection
        self.stream = stream
        self.reused = reused
        self.closed = False  # the server closed its side
        self.received = False  # a byte came back

    async def next(self) -> Any:
        import h11

        while True:
            event = self._parse()
            if event is not h11.NEED_DATA:
                return event
            self.connection.receive_data(await self._receive())

    def _parse(self) -> Any:
        import h11

        connection = self.connection
        try:
            return connection.next_event()
        except h11.RemoteProtocolError as exc:
            if self.closed and connection.their_state is h11.SEND_BODY:
                summary = "the server closed the connection before the end of the body"
            elif self.closed:
                summary = "the server closed the connection without a response"
            else:
                summary = f"invalid HTTP response: {exc}"
            raise anyprobe.CheckFailed(summary, error=exc) from None

    async def _receive(self) -> bytes:
        try:
            chunk = await self.stream.receive(READ_SIZE)
        except anyio.EndOfStream:
            if self.reused and not self.received:
                raise StaleConnection("closed") from None
            chunk = b""
            self.closed = True
        except (OSError, anyio.BrokenResourceError) as exc:
            if self.reused and not self.received:
                raise StaleConnection(describe_os_error(exc)) from None
            raise
        self.received = True
        return chunk

    async def head(self) -> Response:
        """The response head (informational 1xx heads are skipped)."""
        import h11

        while True:
            event = await self.next()
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise anyprobe.CheckFailed("the server closed the connection without a response")
        return Response(
            status=event.status_code,
            reason=event.reason.decode("latin-1", errors="replace"),
            http_version=event.http_version.decode("ascii", errors="replace"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
            body=bytearray(),
            body_bytes=0,
        )

    async def body(self, response: Response, limit: int, keep: bool) -> None:
        """Read the body into ``response``, up to ``limit`` bytes."""
        import h11

        while True:
            event = await self.next()
            if isinstance(event, h11.Data):
                if not response.add_body(event.data, limit, keep):
                    return
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return


def proxy_auth(proxy: SplitResult) -> str | None:
    """The Proxy-Authorization value for the proxy URL's userinfo, or None."""
    if proxy.username is None:
        return None
    raw = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
    return "Basic " + base64.b64encode(raw.encode()).decode("ascii")


async def open_tunnel(
    stream: ByteStream, authority: str, proxy: SplitResult, ctx: anyprobe.CheckContext
) -> None:
    """Open a CONNECT tunnel to ``authority`` (host:port) through the proxy on ``stream``."""
    import h11

    headers = [("Host", authority)]
    credentials = proxy_auth(proxy)
    if credentials:
        headers.append(("Proxy-Authorization", credentials))
    connection = h11.Connection(h11.CLIENT)
    with ctx.phase("connect"):
        await stream.send(
            connection.send(h11.Request(method="CONNECT", target=authority, headers=headers))
        )
        if ctx.explain:
            ctx.trace(f"> CONNECT {authority} (proxy)")
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                try:
                    connection.receive_data(await stream.receive(READ_SIZE))
                except anyio.EndOfStream:
                    connection.receive_data(b"")
                continue
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise anyprobe.CheckFailed("the proxy closed the connection on CONNECT")
    if not 200 <= event.status_code < 300:
        raise anyprobe.CheckFailed(
            f"the proxy refused CONNECT {authority}: HTTP {event.status_code}",
            metrics={"http_status": event.status_code},
        )
    if ctx.explain:
        ctx.trace(f"< proxy tunnel open ({event.status_code})")


# -- HTTP/2 ------------------------------------------------------------------------


async def exchange_h2(
    stream: ByteStream,
    request: HttpRequest,
    origin: tuple[str, str, int],
    ctx: anyprobe.CheckContext,
    *,
    max_body_bytes: int,
    keep_body: bool = True,
) -> Response:
    """Send ``request`` over HTTP/2 to ``origin`` (scheme, host, port), through
    httpcore's connection on ``stream``; phases ``first_byte`` and ``transfer``."""
    import httpcore

    scheme, host, port = origin
    connection = httpcore.AsyncHTTP2Connection(
        origin=httpcore.Origin(scheme.encode(), host.encode(), port),
        stream=_h2_socket(stream),
    )
    headers = [(k, v) for k, v in request.headers if k.lower() not in ("connection", "keep-alive")]
    outgoing = httpcore.Request(
        request.method,
        httpcore.URL(
            scheme=scheme.encode(), host=host.encode(), port=port, target=request.target.encode()
        ),
        headers=encode_headers(headers),
        content=request.body or b"",
    )
    response = Response(0, "", "2", [], bytearray(), 0)
    try:
        with ctx.phase("first_byte"):
            reply = await connection.handle_async_request(outgoing)
        response.status = reply.status
        response.reason = reply.extensions.get("reason_phrase", b"").decode("latin-1")
        response.headers = [
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in reply.headers
        ]
        with ctx.phase("transfer"):
            try:
                async for chunk in reply.aiter_stream():
                    if not response.add_body(chunk, max_body_bytes, keep_body):
                        break
            finally:
                await reply.aclose()
    except httpcore.ProtocolError as exc:
        raise anyprobe.CheckFailed(f"HTTP/2 error: {exc}", error=exc) from None
    except (httpcore.ReadError, httpcore.WriteError) as exc:
        raise io_failure(exc, host) from None
    finally:
        with anyio.CancelScope(shield=True):
            await connection.aclose()
    return response


def _h2_socket(stream: ByteStream) -> Any:
    """``stream`` as the network stream httpcore's HTTP/2 connection talks over."""
    import httpcore
    from anyio.streams.tls import TLSAttribute

    class SocketAdapter(httpcore.AsyncNetworkStream):
        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
            try:
                return await stream.receive(max_bytes)
            except anyio.EndOfStream:
                return b""

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
            if buffer:
                await stream.send(buffer)

        async def aclose(self) -> None:
            await stream.aclose()

        def get_extra_info(self, info: str) -> Any:
            if info == "ssl_object":
                return stream.extra(TLSAttribute.ssl_object, None)
            return None

    return SocketAdapter()
