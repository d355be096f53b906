"""The HTTP servers ``anyprobe serve`` runs its ASGI app on: uvicorn,
anyprobe's built-in server or hypercorn.

uvicorn (with httptools' C HTTP/1.1 parser) serves on asyncio only; the
built-in server (:mod:`anyprobe._serve_lean`) and hypercorn serve on asyncio
and on trio. ``--server auto`` takes uvicorn on asyncio when uvicorn and
httptools are installed (``pip install 'anyprobe[speedups]'``), the built-in
server otherwise and always on trio: it costs a tenth of hypercorn's CPU a
request (docs/benchmarks-serve.md). All serve the same app on the same
pre-bound sockets, with the same TLS context (made and reloaded by
:class:`~anyprobe._serve_security.ListenerSecurity`), no access log, 75 s
keep-alive and ``grace`` seconds for in-flight requests once ``shutdown`` is set.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any

import anyio

from ._errors import UsageError
from ._serve_disconnect import CONNECTION_LOST, ConnectionLost
from ._serve_security import ListenerSecurity, WebConfig, hypercorn_config_class

log = logging.getLogger("anyprobe.serve")

SERVERS = ("auto", "builtin", "hypercorn", "uvicorn")
#: ``--server auto``: the first of these that serves the running loop and is installed.
AUTO_PREFERENCE = ("uvicorn", "builtin", "hypercorn")
#: Longer than Prometheus keeps an idle connection open.
KEEP_ALIVE = 75.0

#: Seconds uvicorn waits, once the grace has ended and the requests under way
#: were aborted, before it cancels what still runs.
ABORT_MARGIN = 5.0
#: The most a request's line and headers may take, as in hypercorn: more is 431.
MAX_REQUEST_HEAD = 16 * 1024

App = Callable[..., Awaitable[None]]


def uvicorn_available() -> bool:
    """Whether uvicorn and httptools (its C HTTP/1.1 parser) can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("uvicorn", "httptools"))


def resolve_server(server: str, *, trio: bool) -> str:
    """The server ``--server`` means on this event loop: ``uvicorn``,
    ``builtin`` or ``hypercorn`` (``auto``: the first of
    :data:`AUTO_PREFERENCE` that serves this loop and is installed).
    UsageError for uvicorn on trio or without uvicorn and httptools."""
    if server not in SERVERS:
        raise UsageError(f"--server {server!r}: expected one of {', '.join(SERVERS)}")
    if server == "auto":
        usable = [
            name
            for name in AUTO_PREFERENCE
            if name != "uvicorn" or (not trio and uvicorn_available())
        ]
        return usable[0] if usable else "builtin"
    if server == "uvicorn":
        if trio:
            raise UsageError(
                "--server uvicorn runs on asyncio only: use builtin or hypercorn with trio"
            )
        if not uvicorn_available():
            raise UsageError(
                "--server uvicorn needs uvicorn and httptools (pip install 'anyprobe[speedups]')"
            )
    return server


def _tls_context(security: ListenerSecurity, web_config: WebConfig | None) -> ssl.SSLContext | None:
    """The listener's TLS context: hypercorn's settings (TLS 1.2 or later, ECDHE
    and AES-GCM ciphers), kept by ``security`` to reload the certificate."""
    config = hypercorn_config_class(security)()
    if web_config is not None and web_config.tls:
        config.certfile = str(web_config.cert_file)
        config.keyfile = str(web_config.key_file)
    context: ssl.SSLContext | None = config.create_ssl_context()
    return context


async def run_hypercorn(
    app: App,
    sockets: Sequence[socket.socket],
    *,
    shutdown: anyio.Event,
    grace: float,
    security: ListenerSecurity,
    web_config: WebConfig | None,
    abort: Callable[[], None],
) -> None:
    """Serve ``app`` with hypercorn on the running loop (asyncio or trio);
    hypercorn cancels the requests still under way when ``grace`` ends."""
    from ._backend import running_on_trio

    config = hypercorn_config_class(security)()
    if web_config is not None and web_config.tls:
        config.certfile = str(web_config.cert_file)
        config.keyfile = str(web_config.key_file)
    config.bind = [f"fd://{sock.detach()}" for sock in sockets]
    config.graceful_timeout = grace
    config.accesslog = None
    config.errorlog = logging.getLogger("anyprobe.serve.http")
    config.include_server_header = False
    config.keep_alive_timeout = KEEP_ALIVE
    if running_on_trio():
        from hypercorn.trio import serve as hypercorn_serve
    else:
        from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]
    await hypercorn_serve(app, config, shutdown_trigger=shutdown.wait, mode="asgi")


@contextlib.contextmanager
def _quiet_uvicorn_logs() -> Iterator[None]:
    """uvicorn's start and stop lines ("Started server process") at DEBUG:
    ``anyprobe serve`` announces its own; warnings and errors still show."""
    logger = logging.getLogger("uvicorn.error")
    level = logger.level
    if level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _bounded_httptools_protocol() -> type[Any]:
    """uvicorn's httptools protocol, answering 431 to a request whose line and
    headers pass :data:`MAX_REQUEST_HEAD` (httptools alone keeps them all in memory),
    and giving each request its connection's :class:`ConnectionLost`."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Protocol(HttpToolsProtocol):
        head_bytes = 0
        in_head = True

        def connection_made(self, transport: Any) -> None:
            self.lost = ConnectionLost()
            super().connection_made(transport)
            # uvicorn writes a response's head and body apart: without
            # TCP_NODELAY, the body waits for the client's delayed ACK (40 ms).
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            if self.in_head:
                room = MAX_REQUEST_HEAD - self.head_bytes
                self.head_bytes += len(data)
                # The head must end within the room left (a body may follow it).
                if self.head_bytes > MAX_REQUEST_HEAD and b"\r\n\r\n" not in data[: room + 4]:
                    self._refuse_head()
                    return
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self.in_head = False
            self.head_bytes = 0
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions[CONNECTION_LOST] = self.lost
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost.set()
            super().connection_lost(exc)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.in_head = True

        def _refuse_head(self) -> None:
            self.in_head = False
            if self.transport.is_closing():
                return
            body = b"Request line and headers too large\n"
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + body
            )
            self.transport.close()

    return Protocol


async def run_uvicorn(
    app: App,
    sockets: Sequence[socket.socket],
    *,
    shutdown: anyio.Event,
    grace: float,
    security: ListenerSecurity,
    web_config: WebConfig | None,
    abort: Callable[[], None],
) -> None:
    """Serve ``app`` with uvicorn and httptools on the running asyncio loop.

    Signals stay anyprobe's (:func:`anyprobe._serve.serve_until_signalled`):
    ``shutdown`` stops uvicorn, which closes the listening sockets, lets the
    idle connections go and waits for the requests under way to be answered.
    When ``grace`` ends, ``abort`` ends the requests still under way (each
    gets its answer: 503 for a probe); uvicorn cancels what still runs
    :data:`ABORT_MARGIN` seconds later.
    """
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # anyprobe handles SIGTERM, SIGINT and SIGHUP itself

    tls = web_config is not None and web_config.tls
    config = uvicorn.Config(
        app,
        http=_bounded_httptools_protocol(),
        lifespan="auto",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # no client address is used: nothing to take from X-Forwarded-For
        timeout_keep_alive=int(KEEP_ALIVE),
    )
    # uvicorn reads it as seconds for asyncio.timeout: a float does.
    config.timeout_graceful_shutdown = grace + ABORT_MARGIN  # type: ignore[assignment]
    config.load()
    if tls:
        context = _tls_context(security, web_config)
        if context is not None:
            context.set_alpn_protocols(["http/1.1"])
        config.ssl = context
    server = Server(config)

    async def stop_on_shutdown() -> None:
        await shutdown.wait()
        server.should_exit = True
        await anyio.sleep(grace)
        abort()

    with _quiet_uvicorn_logs():
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_shutdown)
            try:
                await server.serve(sockets=list(sockets))
            finally:
                tg.cancel_scope.cancel()
    if server.started is False and not shutdown.is_set():
        raise UsageError("anyprobe serve: uvicorn did not start (see the log above)")


def runner(name: str) -> Callable[..., Awaitable[None]]:
    """The function that serves with ``name`` (as :func:`resolve_server` returns it)."""
    if name == "builtin":
        from ._serve_lean import run_builtin

        head_limit, keep_alive = MAX_REQUEST_HEAD, KEEP_ALIVE
        return partial(
            run_builtin, tls_context=_tls_context, head_limit=head_limit, keep_alive=keep_alive
        )
    return run_uvicorn if name == "uvicorn" else run_hypercorn


def describe(name: str) -> str:
    """``uvicorn 0.55.0``, ``hypercorn 0.18.0`` or ``builtin (httptools 0.9.0)``,
    for the start-up line."""
    from importlib.metadata import PackageNotFoundError, version

    if name == "builtin":
        from ._serve_lean import describe as describe_builtin

        return describe_builtin()
    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return name


__all__ = [
    "CONNECTION_LOST",
    "SERVERS",
    "ConnectionLost",
    "describe",
    "resolve_server",
    "run_hypercorn",
    "run_uvicorn",
    "runner",
    "uvicorn_available",
]
