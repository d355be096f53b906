"""A TCP stream straight over a connected non-blocking socket.

What :func:`anyprobe.net.open_connection` and ``ctx.connect()`` return: an
``anyio.abc.SocketStream`` that tries the system call first and waits for the
socket with ``anyio.wait_readable`` / ``anyio.wait_writable`` only when it
would block, the way anyio's own UNIX socket streams and trio's sockets work.
On asyncio, ``anyio.abc.SocketStream.from_socket`` builds a transport and a
protocol for every connection (a trip through the event loop before the first
byte), then resumes and pauses the transport's reading around every receive
and yields to the loop after every send: for a check that sends one request
and reads one answer, that was about a tenth of the loop's work.

A send or receive that completes at once does not yield to the event loop
(the next receive of an exchange waits anyway), except every
:data:`YIELD_EVERY` in a row: a peer that always has bytes ready cannot keep
the other tasks, or a deadline, waiting. Errors are anyio's: ``BrokenResourceError`` (from the
``OSError``), ``EndOfStream``, ``ClosedResourceError``, ``BusyResourceError``.
"""

from __future__ import annotations

import socket
from contextlib import suppress

import anyio
import anyio.abc
from anyio.lowlevel import checkpoint

#: Sends and receives completing at once, in a row, before one yields to the loop.
YIELD_EVERY = 32


class RawSocketStream(anyio.abc.SocketStream):
    """``sock`` (connected, non-blocking; the stream owns it) as an anyio stream."""

    __slots__ = ("_closed", "_receiving", "_sending", "_socket", "_unyielded")

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._closed = False
        self._receiving = False
        self._sending = False
        self._unyielded = 0

    @property
    def _raw_socket(self) -> socket.socket:
        return self._socket

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        if self._receiving:
            raise anyio.BusyResourceError("reading from")
        self._receiving = True
        try:
            waited = False
            while True:
                if self._closed:
                    raise anyio.ClosedResourceError
                try:
                    data = self._socket.recv(max_bytes)
                except BlockingIOError:
                    await anyio.wait_readable(self._socket)
                    waited = True
                    continue
                except OSError as exc:
                    if self._closed:
                        raise anyio.ClosedResourceError from None
                    raise anyio.BrokenResourceError from exc
                break
            if waited:
                self._unyielded = 0
            else:
                # (Inlined: a coroutine less per call.)
                self._unyielded += 1
                if self._unyielded >= YIELD_EVERY:
                    self._unyielded = 0
                    await checkpoint()
        finally:
            self._receiving = False
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        if self._sending:
            raise anyio.BusyResourceError("writing to")
        self._sending = True
        try:
            waited = False
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                # Most requests fit the socket's buffer: one call, no view.
                sent = self._socket.send(item)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                if self._closed:
                    raise anyio.ClosedResourceError from None
                raise anyio.BrokenResourceError from exc
            view = memoryview(item)[sent:] if sent < len(item) else b""
            while view:
                if self._closed:
                    raise anyio.ClosedResourceError
                try:
                    sent = self._socket.send(view)
                except BlockingIOError:
                    await anyio.wait_writable(self._socket)
                    waited = True
                    continue
                except OSError as exc:
                    if self._closed:
                        raise anyio.ClosedResourceError from None
                    raise anyio.BrokenResourceError from exc
                view = view[sent:]
            if waited:
                self._unyielded = 0
            else:
                # (Inlined: a coroutine less per call.)
                self._unyielded += 1
                if self._unyielded >= YIELD_EVERY:
                    self._unyielded = 0
                    await checkpoint()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        # As anyio's streams: a connection already gone has no more to send.
        with suppress(OSError):
            self._socket.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if (self._receiving or self._sending) and self._socket.fileno() >= 0:
            # A task waits on the socket: wake it (ClosedResourceError) and
            # drop the event loop's registration before the descriptor goes.
            # (No task waits otherwise: each wait ends with its registration.)
            anyio.notify_closing(self._socket)
        self._socket.close()
