"""anyprobe's HTTP client: one request over a stream that is already open.

:func:`exchange_http1` speaks HTTP/1.1 (httptools' parser when installed,
else h11's: see :mod:`anyprobe.plugins._http1`), :func:`exchange_h2` HTTP/2
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
from collections.abc import Sequence
from time import perf_counter
from typing import Any
from urllib.parse import SplitResult, unquote

import anyio
from anyio.abc import ByteStream

import anyprobe
from anyprobe.net import describe_os_error, fail_from_os_error
from anyprobe.tls import describe_tls_error, find_ssl_error

from ._http1 import H11Parser, LlhttpParser, new_parser
from ._http1 import HttpRequest as HttpRequest  # where DNS over HTTPS imports them from
from ._http1 import Response as Response

#: The HTTP/1.1 parser of a connection (see :mod:`anyprobe.plugins._http1`).
Http1Parser = H11Parser | LlhttpParser

#: Bytes asked of the stream at a time.
READ_SIZE = 65536
#: The longest response head (status line and headers) read by default.
MAX_HEAD_BYTES = 64 * 1024
#: The phases a request is timed in by default: up to the response head, then the body.
PHASES = ("first_byte", "transfer")


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


# -- HTTP/1.1 ----------------------------------------------------------------------


def new_http1_parser(max_head_bytes: int = MAX_HEAD_BYTES, name: str | None = None) -> Http1Parser:
    """A parser for a new HTTP/1.1 connection, refusing a head over ``max_head_bytes``:
    ``name``'s (``h11`` or ``httptools``), by default httptools' when installed
    (see :func:`anyprobe.plugins._http1.parser_name`), else h11's."""
    return new_parser(max_head_bytes, name)


async def exchange_http1(
    stream: ByteStream,
    request: HttpRequest,
    ctx: anyprobe.CheckContext,
    *,
    max_body_bytes: int,
    keep_body: bool = True,
    protocol: Http1Parser | None = None,
    reused: bool = False,
    max_head_bytes: int = MAX_HEAD_BYTES,
    phases: tuple[str, str] | None = PHASES,
) -> Response:
    """Send ``request`` over HTTP/1.1 on ``stream`` and read the response.

    Sending and reading the head are timed as ``phases[0]``, reading the body
    (at most ``max_body_bytes``, kept only when ``keep_body``) as
    ``phases[1]``; with ``phases`` None the caller times the whole exchange.
    ``protocol`` is the parser of a kept connection (else a new one is made,
    refusing a head over ``max_head_bytes``); on a ``reused`` one, a
    connection the server closed before sending a byte raises
    :class:`StaleConnection`.
    """
    parser = protocol or new_parser(max_head_bytes)
    data = parser.start(request, max_body_bytes, keep_body)
    head_phase, body_phase = phases or (None, None)
    outer = ctx.current_phase
    # ctx.phase(), inlined (two phases a check): a failure leaves current_phase
    # on the phase it happened in.
    if head_phase is not None:
        ctx.current_phase = head_phase
    started = perf_counter()
    # The head's send and reads, inlined here: a coroutine less per read.
    stale_if_closed = reused
    try:
        try:
            await stream.send(data)
        except (OSError, anyio.BrokenResourceError) as exc:
            if reused:
                raise StaleConnection(describe_os_error(exc)) from None
            raise
        response = parser.head()
        while response is None:
            try:
                chunk = await stream.receive(READ_SIZE)
            except anyio.EndOfStream:
                if stale_if_closed:
                    raise StaleConnection("closed") from None
                chunk = b""
            except (OSError, anyio.BrokenResourceError) as exc:
                if stale_if_closed:
                    raise StaleConnection(describe_os_error(exc)) from None
                raise
            stale_if_closed = False
            parser.feed(chunk)
            response = parser.head()
    finally:
        if head_phase is not None:
            _add_phase(ctx, head_phase, started)
    if body_phase is not None:
        ctx.current_phase = body_phase
    started = perf_counter()
    try:
        while not parser.body_done():
            parser.feed(await _receive(stream, False))
    finally:
        if body_phase is not None:
            _add_phase(ctx, body_phase, started)
    ctx.current_phase = outer
    return response


#: The name the DNS probe's DNS over HTTPS imports.
exchange_h11 = exchange_http1


def _add_phase(ctx: anyprobe.CheckContext, name: str, started: float) -> None:
    # ctx.phase(), inlined: two phases per check on the hot path.
    ctx.phases[name] = ctx.phases.get(name, 0.0) + perf_counter() - started


async def _receive(stream: ByteStream, stale_if_closed: bool) -> bytes:
    """The next bytes of the response; ``b""`` when the server closed the
    connection, or :class:`StaleConnection` when ``stale_if_closed``."""
    try:
        return await stream.receive(READ_SIZE)
    except anyio.EndOfStream:
        if stale_if_closed:
            raise StaleConnection("closed") from None
        return b""
    except (OSError, anyio.BrokenResourceError) as exc:
        if stale_if_closed:
            raise StaleConnection(describe_os_error(exc)) from None
        raise


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
