"""A WebSocket server for the websocket probe, on anyio and wsproto.

One server answers by the request's path:

- ``/echo`` (any other path): echoes each message; ``headers`` is answered
  with the upgrade request's headers (not the upgrade's own), one ``name:
  value`` line each; ``huge`` with a 200,000-byte message. The subprotocol
  ``chat`` is chosen when offered.
- ``/forbidden``: refuses the upgrade with HTTP 403.
- ``/silent``: reads the upgrade request and never answers.
- ``/garbage``: answers the upgrade with bytes that are not HTTP.
- ``/closing``: answers a message by closing with 1008 (policy violation).
- ``/drop``: echoes, then answers a close frame by dropping the connection
  without a close frame of its own.

``ws_server`` serves it on ``ws://``, ``wss_server`` over TLS with a trustme
certificate (from ``tls_ca``) for localhost and 127.0.0.1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from .banner import TlsCa, serve_tcp

__all__ = ["ws_server", "wss_server"]

HUGE = 200_000
#: Headers of every upgrade request, left out of the answer to ``headers``.
OWN_HEADERS = {b"host", b"upgrade", b"connection", b"sec-websocket-key", b"sec-websocket-version"}


async def _events(stream: anyio.abc.ByteStream, ws: WSConnection) -> list[Event]:
    try:
        data = await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return []
    ws.receive_data(data)
    return list(ws.events())


async def _read_request(stream: anyio.abc.ByteStream, ws: WSConnection) -> Request | None:
    for _ in range(100):
        events = await _events(stream, ws)
        if not events and ws.state.name == "CONNECTING":
            continue
        for event in events:
            if isinstance(event, Request):
                return event
    return None


def _reply(request: Request, text: str) -> str:
    if text == "headers":
        return "\n".join(
            f"{name.decode()}: {value.decode()}"
            for name, value in request.extra_headers
            if name.lower() not in OWN_HEADERS
        )
    if text == "huge":
        return "x" * HUGE
    return text


async def handle(stream: anyio.abc.ByteStream) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    request = await _read_request(stream, ws)
    if request is None:
        return
    path = request.target
    if path == "/silent":
        await anyio.sleep_forever()
    if path == "/garbage":
        await stream.send(b"\x00\x01garbage, not HTTP\r\n\r\n")
        return
    if path == "/forbidden":
        await stream.send(ws.send(RejectConnection(status_code=403)))
        return
    chosen = "chat" if "chat" in request.subprotocols else None
    await stream.send(ws.send(AcceptConnection(subprotocol=chosen)))
    message = ""
    for _ in range(1000):
        events = await _events(stream, ws)
        if not events:
            return
        for event in events:
            if isinstance(event, Ping):
                await stream.send(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if path != "/drop":
                    await stream.send(ws.send(event.response()))
                return
            elif isinstance(event, TextMessage) and path == "/closing":
                await stream.send(ws.send(CloseConnection(code=1008, reason="no token")))
            elif isinstance(event, TextMessage):
                message += event.data
                if event.message_finished:
                    await stream.send(ws.send(Message(data=_reply(request, message))))
                    message = ""


@pytest.fixture
def ws_server() -> Iterator[int]:
    """The WebSocket server on ws://127.0.0.1:PORT; yields PORT."""
    with serve_tcp(handle) as port:
        yield port


@pytest.fixture
def wss_server(tls_ca: TlsCa) -> Iterator[int]:
    """The WebSocket server over TLS (a certificate from ``tls_ca``); yields PORT."""
    context = tls_ca.server_context()

    async def handle_tls(stream: anyio.abc.SocketStream) -> None:
        tls = await TLSStream.wrap(
            stream, server_side=True, ssl_context=context, standard_compatible=False
        )
        await handle(tls)

    with contextlib.ExitStack() as stack:
        yield stack.enter_context(serve_tcp(handle_tls))
