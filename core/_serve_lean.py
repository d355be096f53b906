"""``anyprobe serve --server builtin``: a lean HTTP/1.1 server over anyio.

It serves the ASGI app on the pre-bound listening sockets, on asyncio and on
trio, at a tenth of hypercorn's CPU a request on trio
(docs/benchmarks-serve.md). Each connection is two tasks, whatever the number
of requests it carries: a reader, which parses requests as they come
(:mod:`anyprobe._serve_lean_parse`: httptools when installed, else h11) and
sees the client's EOF at once, and a responder, which calls the app for each
request in order (pipelining) and writes its answer with ``Content-Length``
(or chunked when the app streams without a length). The client's EOF sets the
connection's :class:`~anyprobe._serve_disconnect.ConnectionLost`, which ends a
``/probe`` under way with no task per request.

What it does not do: HTTP/2, upgrades (websocket, h2c: answered as HTTP/1.1,
then closed), the ASGI lifespan (anyprobe's app has no start-up or shut-down
work), trailers. A request it refuses (a head past the limit: 431; a body past
:data:`~anyprobe._serve_lean_parse.MAX_BODY`: 413; anything malformed or
ambiguous: 400) gets one plain-text line, then the connection closes.

On shutdown it stops accepting, closes the idle connections, lets the requests
under way be answered (then closes their connections), and after ``grace``
seconds calls ``abort`` (each request under way answers 503 at once); what
still runs :data:`ABORT_MARGIN` seconds later is cancelled.
"""

from __future__ import annotations

import email.utils
import errno
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from http import HTTPStatus
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream, TaskGroup

from ._serve_disconnect import CONNECTION_LOST, ConnectionLost
from ._serve_lean_parse import BadRequest, Request, parser_class, parser_name
from ._serve_security import ListenerSecurity, WebConfig
from ._socket_stream import RawSocketStream

log = logging.getLogger("anyprobe.serve.http")

#: The name ``--server`` knows this server by.
NAME = "builtin"
#: Requests of one connection read ahead of the one being answered (pipelining).
MAX_PIPELINED = 16
#: Seconds a client has to complete its TLS handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds the server waits, once the grace has ended and the requests under way
#: were aborted, before it cancels what still runs.
ABORT_MARGIN = 5.0
#: After a refusal, the most seconds and bytes read and dropped before closing:
#: closing with unread bytes resets the connection, and the refusal with it.
LINGER = 1.0
LINGER_BYTES = 1024 * 1024
RECEIVE_SIZE = 65536
#: Connections accepted at most each time the listening socket is readable.
ACCEPT_BATCH = 64

App = Callable[..., Awaitable[None]]
TlsContextFactory = Callable[[ListenerSecurity, "WebConfig | None"], "ssl.SSLContext | None"]

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)
_NO_BODY_STATUSES = frozenset({204, 304})
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def describe() -> str:
    """``builtin (httptools 0.9.0)``, for the start-up line and ``--version -v``."""
    from importlib.metadata import PackageNotFoundError, version

    parser = parser_name()
    try:
        return f"{NAME} ({parser} {version(parser)})"
    except PackageNotFoundError:
        return f"{NAME} ({parser})"


async def run_builtin(
    app: App,
    sockets: Sequence[socket.socket],
    *,
    shutdown: anyio.Event,
    grace: float,
    security: ListenerSecurity,
    web_config: WebConfig | None,
    abort: Callable[[], None],
    tls_context: TlsContextFactory,
    head_limit: int,
    keep_alive: float,
) -> None:
    """Serve ``app`` on ``sockets`` until ``shutdown`` is set, on the running
    loop; ``tls_context`` makes the listener's (reloadable) TLS context, the
    other servers' settings. A head longer than ``head_limit`` bytes is 431, a
    connection idle for ``keep_alive`` seconds is closed."""
    context = None
    if web_config is not None and web_config.tls:
        context = tls_context(security, web_config)
        if context is not None:
            context.set_alpn_protocols(["http/1.1"])
    server = LeanServer(app, context=context, head_limit=head_limit, keep_alive=keep_alive)
    try:
        await server.serve(sockets, shutdown=shutdown, grace=grace, abort=abort)
    finally:
        for sock in sockets:
            sock.close()


class LeanServer:
    """The connections of one server, and its shutdown."""

    def __init__(
        self, app: App, *, context: ssl.SSLContext | None, head_limit: int, keep_alive: float
    ) -> None:
        self.app = app
        self.context = context
        self.head_limit = head_limit
        self.keep_alive = keep_alive
        self.parser = parser_class()
        self.connections: set[_Connection] = set()
        self.closing = False
        self._all_closed = anyio.Event()
        self._date = (0, b"")

    def date_line(self) -> bytes:
        """The ``date`` header line, made once a second."""
        now = int(time.time())
        if now != self._date[0]:
            formatted = email.utils.formatdate(now, usegmt=True).encode()
            self._date = (now, b"date: " + formatted + b"\r\n")
        return self._date[1]

    async def serve(
        self,
        sockets: Sequence[socket.socket],
        *,
        shutdown: anyio.Event,
        grace: float,
        abort: Callable[[], None],
    ) -> None:
        async with anyio.create_task_group() as connections:
            async with anyio.create_task_group() as accepting:
                for sock in sockets:
                    sock.setblocking(False)
                    accepting.start_soon(self._accept, sock, connections)
                accepting.start_soon(self._close_idle_past_keep_alive)
                await shutdown.wait()
                accepting.cancel_scope.cancel()
            for sock in sockets:
                sock.close()
            self._close_idle()
            if not await self._wait_closed(grace):
                abort()
                await self._wait_closed(ABORT_MARGIN)
            # Left: the connections still in their TLS handshake, or not started.
            connections.cancel_scope.cancel()

    async def _accept(self, sock: socket.socket, connections: TaskGroup) -> None:
        # Waiting for the socket to be readable, then accepting, can be
        # cancelled at any time; asyncio's sock_accept cannot (on Python 3.11,
        # a connection accepted as it is cancelled logs InvalidStateError).
        while True:
            await anyio.wait_readable(sock)
            for _ in range(ACCEPT_BATCH):
                try:
                    client, _address = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    if exc.errno in _OUT_OF_RESOURCES:  # some will be freed: wait for them
                        log.warning("accepting a connection failed: %s", exc)
                        await anyio.sleep(0.1)
                    else:  # a client that reset before it was accepted
                        log.debug("accepting a connection failed: %s", exc)
                    break
                connections.start_soon(self._connection, client)

    async def _close_idle_past_keep_alive(self) -> None:
        # One timer for every connection, not a deadline reset per request.
        every = min(1.0, max(self.keep_alive / 2, 0.01))
        while True:
            await anyio.sleep(every)
            since = anyio.current_time() - self.keep_alive
            for connection in self.connections:
                if connection.pending == 0 and connection.idle_since <= since:
                    connection.reading.cancel()

    def _close_idle(self) -> None:
        self.closing = True
        for connection in self.connections:
            if connection.pending == 0:
                connection.reading.cancel()
        if not self.connections:
            self._all_closed.set()

    async def _wait_closed(self, seconds: float) -> bool:
        with anyio.move_on_after(seconds):
            await self._all_closed.wait()
        return self._all_closed.is_set()

    async def _connection(self, client: socket.socket) -> None:
        if client.family in (socket.AF_INET, socket.AF_INET6):
            with suppress(OSError):  # the answer must not wait for the client's ACK
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The stream the HTTP clients use too: the system call first, the
        # event loop only when the socket would block (anyprobe._socket_stream).
        try:
            client.setblocking(False)
        except OSError:
            client.close()
            return
        stream: SocketStream = RawSocketStream(client)
        transport: ByteStream | None = stream
        try:
            if self.context is not None:
                transport = await self._handshake(stream)
            if transport is None or self.closing:
                return
            connection = _Connection(self, transport, stream, tls=self.context is not None)
            self.connections.add(connection)
            try:
                await connection.run()
            finally:
                self.connections.discard(connection)
                if self.closing and not self.connections:
                    self._all_closed.set()
        except Exception as exc:  # a client's failure never ends the server
            log.debug("connection ended by %r", exc)
        finally:
            await anyio.aclose_forcefully(transport or stream)

    async def _handshake(self, stream: SocketStream) -> ByteStream | None:
        from anyio.streams.tls import TLSStream

        assert self.context is not None
        with anyio.move_on_after(HANDSHAKE_TIMEOUT):
            try:
                return await TLSStream.wrap(
                    stream, server_side=True, ssl_context=self.context, standard_compatible=False
                )
            except _GONE as exc:  # not TLS, an untrusting client, a reset
                log.debug("TLS handshake failed: %r", exc)
        return None


class _Connection:
    """One client connection: its reader, its responder and their shared state."""

    def __init__(
        self, server: LeanServer, stream: ByteStream, socket_stream: SocketStream, *, tls: bool
    ) -> None:
        self.server = server
        self.stream = stream
        self.parser = server.parser(server.head_limit)
        self.lost = ConnectionLost()
        #: Requests read and not answered yet, and since when there were none.
        self.pending = 0
        self.idle_since = anyio.current_time()
        #: The reader's scope, cancelled to close the connection.
        self.reading = anyio.CancelScope()
        self.reading_ended = False
        # What the reader read and the responder has not taken yet, and their
        # wake-ups: a deque and an event only when one waits for the other
        # costs less than a memory object stream.
        self.queue: deque[Request | BadRequest] = deque()
        self._responder_wakeup: anyio.Event | None = None
        self._reader_wakeup: anyio.Event | None = None
        #: Set when the connection is lost or the current answer is sent (ASGI receive()).
        self.disconnected: anyio.Event | None = None
        self.scheme = "https" if tls else "http"
        self.local = _address(socket_stream, SocketAttribute.local_address)
        self.remote = _address(socket_stream, SocketAttribute.remote_address)

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._respond)
                try:
                    await self._read()
                finally:
                    self.reading_ended = True
                    self._wake_responder()
        finally:
            self.parser.close()

    def lose(self) -> None:
        """The client went away: what its requests run is cancelled."""
        self.lost.set()
        self.answered()

    def answered(self) -> None:
        if self.disconnected is not None:
            self.disconnected.set()
            self.disconnected = None

    async def write(self, data: bytes) -> None:
        if data and not self.lost.is_set:
            try:
                await self.stream.send(data)
            except _GONE:
                self.lose()

    def _push(self, request: Request | BadRequest) -> None:
        self.pending += 1
        self.queue.append(request)
        self._wake_responder()

    def _wake_responder(self) -> None:
        if self._responder_wakeup is not None:
            self._responder_wakeup.set()
            self._responder_wakeup = None

    async def _read(self) -> None:
        stream = self.stream
        parser = self.parser
        with self.reading:
            while True:
                try:
                    data = await stream.receive(RECEIVE_SIZE)
                except _GONE:
                    self.lose()
                    return
                try:
                    done = parser.feed(data)
                except BadRequest as refusal:
                    self._push(refusal)
                    return
                if parser.continue_wanted:
                    parser.continue_wanted = False
                    if self.pending == 0:  # else the responder may be writing
                        await self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                for request in done:
                    self._push(request)
                if len(self.queue) >= MAX_PIPELINED:
                    self._reader_wakeup = wakeup = anyio.Event()
                    await wakeup.wait()

    async def _respond(self) -> None:
        server = self.server
        queue = self.queue
        while True:
            if not queue:
                if self.reading_ended:
                    break
                self._responder_wakeup = wakeup = anyio.Event()
                await wakeup.wait()
                continue
            request = queue.popleft()
            if self._reader_wakeup is not None:
                self._reader_wakeup.set()
                self._reader_wakeup = None
            if isinstance(request, BadRequest):
                await self._refuse(request)
                break
            keep = await self._answer(request)
            self.pending -= 1
            if not keep or server.closing or self.lost.is_set:
                break
            if self.pending == 0:
                self.idle_since = anyio.current_time()
        self.reading.cancel()

    async def _answer(self, request: Request) -> bool:
        """Call the app for ``request``; whether the connection stays open."""
        exchange = _Exchange(self, request)
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": request.http_version,
            "server": self.local,
            "client": self.remote,
            "scheme": self.scheme,
            "method": request.method,
            "root_path": "",
            "path": request.path,
            "raw_path": request.raw_path,
            "query_string": request.query,
            "headers": request.headers,
            "extensions": {CONNECTION_LOST: self.lost},
        }
        try:
            await self.server.app(scope, exchange.receive, exchange.send)
        except Exception:
            # The raw path, quoted: a decoded one could carry control characters.
            log.exception("the app failed answering %s %r", request.method, request.raw_path)
            if not exchange.head_sent:
                await self.write(self.plain(500, "Internal Server Error"))
            return False
        if exchange.finished:
            return exchange.keep_alive
        if not exchange.head_sent and not self.lost.is_set:
            # Cancelled (past the grace), or an app that did not answer.
            status, text = (503, "Shutting down") if self.server.closing else (500, "No answer")
            await self.write(self.plain(status, text))
        return False

    def plain(self, status: int, text: str) -> bytes:
        """A whole answer of one line of text, closing the connection."""
        body = text.encode() + b"\n"
        return b"".join(
            (
                status_line(status),
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: %d\r\nconnection: close\r\n" % len(body),
                self.server.date_line(),
                b"\r\n",
                body,
            )
        )

    async def _refuse(self, refusal: BadRequest) -> None:
        """Answer a request refused unread, then close once the client had time to read it."""
        await self.write(self.plain(refusal.status, refusal.message))
        stream = self.stream
        try:
            await stream.send_eof()
        except (*_GONE, NotImplementedError):
            return
        with anyio.move_on_after(LINGER):
            dropped = 0
            while dropped < LINGER_BYTES:
                try:
                    dropped += len(await stream.receive(RECEIVE_SIZE))
                except _GONE:
                    return


class _Exchange:
    """One request's ASGI ``receive`` and ``send``: the answer's framing."""

    __slots__ = (
        "body_given",
        "chunked",
        "connection",
        "finished",
        "head_sent",
        "headers",
        "keep_alive",
        "request",
        "status",
    )

    def __init__(self, connection: _Connection, request: Request) -> None:
        self.connection = connection
        self.request = request
        self.keep_alive = request.keep_alive and not connection.server.closing
        self.status = 0
        self.headers: Sequence[tuple[bytes, bytes]] = ()
        self.head_sent = False
        self.finished = False
        self.chunked = False
        self.body_given = False

    async def receive(self) -> dict[str, Any]:
        if not self.body_given:
            self.body_given = True
            return {"type": "http.request", "body": self.request.body, "more_body": False}
        # Then nothing more, until the client goes away or the answer is sent.
        connection = self.connection
        if not (self.finished or connection.lost.is_set):
            if connection.disconnected is None:
                connection.disconnected = anyio.Event()
            await connection.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.status:
            self.status = int(message["status"])
            self.headers = message.get("headers") or ()
            return
        if kind != "http.response.body" or not self.status or self.finished:
            raise RuntimeError(f"unexpected ASGI message {kind!r} (status {self.status})")
        body = bytes(message.get("body") or b"")
        more = bool(message.get("more_body"))
        if self.request.method == "HEAD" or self.status in _NO_BODY_STATUSES:
            body = b""
        head = b""
        if not self.head_sent:
            head = self._head(None if more else len(body))
            self.head_sent = True
        if self.chunked and body:
            body = b"%x\r\n%s\r\n" % (len(body), body)
        if not more:
            self.finished = True
            if self.chunked:
                body += b"0\r\n\r\n"
        await self.connection.write(head + body)
        if self.finished:
            self.connection.answered()

    def _head(self, length: int | None) -> bytes:
        """The status line and headers; ``length`` is the whole body's, when known."""
        parts = [status_line(self.status)]
        framed = False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                framed = True
            elif lowered == b"transfer-encoding":
                continue  # the framing is the server's
            elif lowered == b"connection" and b"close" in value.lower():
                self.keep_alive = False
                continue
            parts += (name, b": ", value, b"\r\n")
        head_only = self.request.method == "HEAD" or self.status in _NO_BODY_STATUSES
        if not framed and not head_only and self.status >= 200:
            if length is not None:
                parts.append(b"content-length: %d\r\n" % length)
            elif self.request.http_version == "1.1":
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False  # an HTTP/1.0 body ends with the connection
        if self.connection.server.closing:
            self.keep_alive = False
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        elif self.request.http_version == "1.0":
            parts.append(b"connection: keep-alive\r\n")
        parts += (self.connection.server.date_line(), b"\r\n")
        return b"".join(parts)


_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n``, each made once."""
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


def _address(stream: SocketStream, attribute: Any) -> tuple[str, int] | None:
    address = stream.extra(attribute, None)
    if isinstance(address, tuple):
        return str(address[0]), int(address[1])
    return None


__all__ = ["NAME", "LeanServer", "describe", "run_builtin", "status_line"]
