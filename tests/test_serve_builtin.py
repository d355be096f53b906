"""The built-in HTTP/1.1 server of ``anyprobe serve`` (``--server builtin``) at
its edges: raw bytes from a real loopback socket, with httptools' parser and
with h11's, on asyncio and on trio.

The behaviours every server shares (probes, TLS, basic auth, signals, grace)
are tested on it with the others, in the serve test files; here are the
framing, the refusals and the shutdown, seen on the wire.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyprobe import _serve_lean_parse
from anyprobe._serve import bind
from anyprobe._serve_asgi import MAX_REQUEST_HEAD, _tls_context
from anyprobe._serve_disconnect import CONNECTION_LOST
from anyprobe._serve_lean import run_builtin
from anyprobe._serve_lean_parse import BadRequest, H11Parser, HttptoolsParser
from anyprobe._serve_security import ListenerSecurity

pytestmark = pytest.mark.anyio

#: Longest any exchange of these tests may take (a bound, not an assertion on time).
LIMIT = 30.0

PARSERS = [
    pytest.param(
        "httptools",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("httptools") is None, reason="httptools is not installed"
        ),
    ),
    "h11",
]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    monkeypatch.setattr(_serve_lean_parse, "PARSER_PREFERENCE", (name,))
    return name


class App:
    """An ASGI app that says what it got; ``/stream`` answers in two parts
    without a length, ``/fail`` raises, ``/hold`` waits until released or aborted,
    ``/wait`` until its client goes away."""

    def __init__(self) -> None:
        self.held: list[anyio.CancelScope] = []
        self.release = anyio.Event()
        self.holding = anyio.Event()
        self.lost = anyio.Event()

    def abort(self) -> None:
        for scope in self.held:
            scope.cancel()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/fail":
            raise RuntimeError("a bug in the app")
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"one,", "more_body": True})
            await send({"type": "http.response.body", "body": b"two"})
            return
        if path == "/wait":
            with scope["extensions"][CONNECTION_LOST].cancelling():
                self.holding.set()
                await anyio.sleep_forever()
            self.lost.set()
            return
        status = 200
        if path == "/hold":
            with anyio.CancelScope() as held:
                self.held.append(held)
                self.holding.set()
                await self.release.wait()
            status = 503 if held.cancelled_caught else 200
        text = f"{scope['method']} {path} {scope['query_string'].decode()} {len(body)} {body!r}"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"x-seen", b"yes")],
            }
        )
        await send({"type": "http.response.body", "body": text.encode()})


@asynccontextmanager
async def lean_server(
    app: App, *, grace: float = 5.0, keep_alive: float = 75.0
) -> AsyncIterator[tuple[int, anyio.Event]]:
    """run_builtin on 127.0.0.1 (an ephemeral port); yields the port and the
    shutdown event, and waits for the server to end."""
    sock = bind("127.0.0.1:0")
    port = sock.getsockname()[1]
    shutdown = anyio.Event()
    run = partial(
        run_builtin,
        app,
        [sock],
        shutdown=shutdown,
        grace=grace,
        security=ListenerSecurity(None),
        web_config=None,
        abort=app.abort,
        tls_context=_tls_context,
        head_limit=MAX_REQUEST_HEAD,
        keep_alive=keep_alive,
    )
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            try:
                yield port, shutdown
            finally:
                shutdown.set()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=LIMIT)


def read_to_end(client: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(port: int, data: bytes) -> bytes:
    with connect(port) as client:
        client.sendall(data)
        return read_to_end(client)


def responses(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """The responses in ``data``: status, headers (lower-case names), body
    (by Content-Length, chunked, or to the end)."""
    found = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        pairs = (line.split(b": ", 1) for line in lines)
        headers = {name.lower(): value for name, value in pairs}
        if b"content-length" in headers:
            length = int(headers[b"content-length"])
            body, data = data[:length], data[length:]
        elif headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size_line, _, data = data.partition(b"\r\n")
                size = int(size_line, 16)
                body += data[:size]
                data = data[size + 2 :]
                if size == 0:
                    break
        else:
            body, data = data, b""
        found.append((int(status_line.split()[1]), headers, body))
    return found


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await anyio.to_thread.run_sync(partial(function, *args))


# -- framing -------------------------------------------------------------------------


async def test_pipelined_requests_are_answered_in_order(parser: str) -> None:
    async with lean_server(App()) as (port, _):
        data = await in_thread(
            exchange,
            port,
            b"GET /first?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"POST /third HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    answers = responses(data)
    assert [body for _, _, body in answers] == [
        b"GET /first a=1 0 b''",
        b"POST /second  5 b'hello'",
        b"POST /third  5 b'abcde'",
        b"GET /last  0 b''",
    ]
    assert all(headers[b"x-seen"] == b"yes" and b"date" in headers for _, headers, _ in answers)
    assert answers[-1][1][b"connection"] == b"close"


async def test_a_streamed_answer_without_a_length_is_chunked_on_http_1_1(parser: str) -> None:
    async with lean_server(App()) as (port, _):
        data = await in_thread(
            exchange, port, b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    [(status, headers, body)] = responses(data)
    assert (status, headers[b"transfer-encoding"], body) == (200, b"chunked", b"one,two")


def test_a_closed_parser_is_freed_without_the_collector(parser: str) -> None:
    """httptools' parser holds its handler's methods: a connection closes its
    parser as it ends (_Connection.run), so that a server under load never
    waits for the cyclic collector to free one per connection."""
    import gc
    import weakref

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        reader = _serve_lean_parse.parser_class()(MAX_REQUEST_HEAD)
        [request] = reader.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert request.path == "/a"
        reader.close()
        freed = weakref.ref(reader)
        del reader, request
        assert freed() is None
    finally:
        if was_enabled:
            gc.enable()


async def test_http_1_0_is_answered_then_closed(parser: str) -> None:
    async with lean_server(App()) as (port, _):
        plain = await in_thread(exchange, port, b"GET /old HTTP/1.0\r\n\r\n")
        streamed = await in_thread(exchange, port, b"GET /stream HTTP/1.0\r\n\r\n")
    [(status, headers, body)] = responses(plain)
    assert (status, headers[b"connection"], body) == (200, b"close", b"GET /old  0 b''")
    # Without a length, an HTTP/1.0 answer ends with the connection.
    [(status, headers, body)] = responses(streamed)
    assert b"transfer-encoding" not in headers and body == b"one,two"


async def test_http_1_0_keep_alive_keeps_the_connection(parser: str) -> None:
    def two_requests(port: int) -> tuple[bytes, bytes]:
        with connect(port) as client:
            client.sendall(b"GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            first = client.recv(65536)
            client.sendall(b"GET /two HTTP/1.0\r\n\r\n")
            return first, read_to_end(client)

    async with lean_server(App()) as (port, _):
        first, second = await in_thread(two_requests, port)
    assert responses(first)[0][1][b"connection"] == b"keep-alive"
    assert responses(second)[0][2] == b"GET /two  0 b''"


async def test_head_answers_carry_no_body(parser: str) -> None:
    async with lean_server(App()) as (port, _):
        data = await in_thread(
            exchange,
            port,
            b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and rest.startswith(b"HTTP/1.1 200 ")


async def test_expect_100_continue_gets_continue_before_the_body(parser: str) -> None:
    def post(port: int) -> tuple[bytes, bytes]:
        with connect(port) as client:
            client.sendall(
                b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
            )
            interim = client.recv(65536)
            client.sendall(b"abc")
            return interim, read_to_end(client)

    async with lean_server(App()) as (port, _):
        interim, final = await in_thread(post, port)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert responses(final)[0][2] == b"POST /up  3 b'abc'"


async def test_an_app_that_fails_is_500_and_the_connection_closes(
    parser: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with lean_server(App()) as (port, _):
        data = await in_thread(exchange, port, b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
    [(status, headers, _)] = responses(data)
    assert (status, headers[b"connection"]) == (500, b"close")
    assert "a bug in the app" in caplog.text


# -- refusals ---------------------------------------------------------------------------

REFUSED = {
    "transfer-encoding with content-length": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two content-lengths": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "a transfer-encoding other than chunked": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: gzip\r\n\r\n",
    "obsolete line folding": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "a control character in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "a bare LF": b"GET / HTTP/1.1\nHost: x\n\n",
    "a bare CR": b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
    "a space in a header name": b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
    "no HTTP version": b"GET /\r\nHost: x\r\n\r\n",
    "not HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "a space in the target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "a target that is not a path": b"GET a HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", list(REFUSED.values()), ids=list(REFUSED))
async def test_malformed_and_ambiguous_requests_are_400_then_closed(
    parser: str, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with lean_server(App()) as (port, _):
        # A valid request after the bad one is never answered: the connection closes.
        data = await in_thread(exchange, port, request_bytes + b"GET /next HTTP/1.1\r\n\r\n")
    [(status, headers, body)] = responses(data)
    assert (status, headers[b"connection"]) == (400, b"close"), data
    assert body.startswith(b"bad request") or body.startswith(b"invalid request"), body
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\nX-A: b",
        b"GET / HTTP/1.1\r\nHost: x\r\rX-A: b",
    ],
    ids=["LF CR LF", "bare LF, head unfinished", "CR CR, head unfinished"],
)
async def test_a_bare_cr_or_lf_is_400_before_the_head_could_end(parser: str, head: bytes) -> None:
    # No CRLF CRLF ever comes: the refusal must not wait for one.
    async with lean_server(App()) as (port, _):
        data = await in_thread(exchange, port, head)
    [(status, headers, _)] = responses(data)
    assert (status, headers[b"connection"]) == (400, b"close"), data


async def test_a_head_past_the_limit_is_431_then_closed(parser: str) -> None:
    async with lean_server(App()) as (port, _):
        long_line = await in_thread(
            exchange, port, b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        many_headers = await in_thread(
            exchange, port, b"GET / HTTP/1.1\r\n" + b"X-A: bbbbbbbbbbbbbbbb\r\n" * 2000 + b"\r\n"
        )
        just_under = await in_thread(
            exchange,
            port,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-A: "
            + b"b" * (MAX_REQUEST_HEAD - 100)
            + b"\r\n\r\n",
        )
    assert responses(long_line)[0][0] == 431
    assert responses(many_headers)[0][0] == 431
    assert responses(just_under)[0][0] == 200


async def test_a_body_past_the_limit_is_413(parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_serve_lean_parse, "MAX_BODY", 1000)
    async with lean_server(App()) as (port, _):
        sized = await in_thread(
            exchange,
            port,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n" + b"a" * 1001,
        )
        chunked = await in_thread(
            exchange,
            port,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"100\r\n" + b"a" * 256 + b"\r\n") * 5,
        )
    assert responses(sized)[0][0] == 413
    assert responses(chunked)[0][0] == 413


# -- connections: idle, lost, shutdown ----------------------------------------------------


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(parser: str) -> None:
    def idle_then_read(port: int) -> tuple[bytes, bytes]:
        with connect(port) as silent, connect(port) as served:
            served.sendall(b"GET /once HTTP/1.1\r\nHost: x\r\n\r\n")
            # Both reads end with the server closing, well before LIMIT.
            return read_to_end(silent), read_to_end(served)

    async with lean_server(App(), keep_alive=0.2) as (port, _):
        silent, served = await in_thread(idle_then_read, port)
    assert silent == b""
    assert responses(served)[0][2] == b"GET /once  0 b''"


async def test_a_client_that_goes_away_cancels_its_request(parser: str) -> None:
    app = App()
    async with lean_server(app) as (port, _):
        client = await in_thread(connect, port)
        try:
            await in_thread(client.sendall, b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
            await app.holding.wait()
        finally:
            client.close()
        await app.lost.wait()  # bounded by lean_server's LIMIT


async def test_shutdown_closes_idle_connections_and_lets_requests_finish(parser: str) -> None:
    app = App()
    async with lean_server(app, grace=LIMIT) as (port, shutdown):
        idle = await in_thread(connect, port)
        busy = await in_thread(connect, port)
        try:
            await in_thread(busy.sendall, b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            await app.holding.wait()
            shutdown.set()
            assert await in_thread(read_to_end, idle) == b""  # closed at once
            with pytest.raises(OSError):  # no longer accepting
                await in_thread(connect, port)
            app.release.set()
            [(status, headers, body)] = responses(await in_thread(read_to_end, busy))
        finally:
            idle.close()
            busy.close()
    assert (status, headers[b"connection"], body) == (200, b"close", b"GET /hold  0 b''")


async def test_requests_still_running_past_the_grace_are_aborted(parser: str) -> None:
    app = App()
    async with lean_server(app, grace=0.1) as (port, shutdown):
        busy = await in_thread(connect, port)
        try:
            await in_thread(busy.sendall, b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            await app.holding.wait()
            shutdown.set()
            [(status, _, _)] = responses(await in_thread(read_to_end, busy))
        finally:
            busy.close()
    assert status == 503  # the app's answer once ``abort`` cancelled it


# -- the parsers ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), split=st.integers(min_value=0, max_value=300))
def test_any_bytes_give_requests_or_a_refusal(data: bytes, split: int) -> None:
    for parser_type in (HttptoolsParser, H11Parser):
        if parser_type is HttptoolsParser and importlib.util.find_spec("httptools") is None:
            continue
        parser = parser_type(1024)
        try:
            parser.feed(data[:split])
            parser.feed(data[split:])
        except BadRequest as refusal:
            assert refusal.status in (400, 413, 431)


@settings(max_examples=100, deadline=None)
@given(
    paths=st.lists(st.from_regex(rb"\A/[a-z0-9/]{0,20}\Z"), min_size=1, max_size=5),
    cut=st.integers(min_value=1, max_value=400),
)
def test_both_parsers_read_the_same_requests_whatever_the_chunks(
    paths: list[bytes], cut: int
) -> None:
    stream = b"".join(
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok" for path in paths
    )
    parsed = {}
    for parser_type in (HttptoolsParser, H11Parser):
        if parser_type is HttptoolsParser and importlib.util.find_spec("httptools") is None:
            continue
        parser = parser_type(1024)
        requests = []
        for start in range(0, len(stream), cut):
            requests += parser.feed(stream[start : start + cut])
        parsed[parser_type.__name__] = [(r.method, r.raw_path, r.body) for r in requests]
        assert not parser.partial
    for requests in parsed.values():
        assert requests == [("POST", path, b"ok") for path in paths]
