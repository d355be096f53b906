"""Kept HTTP/1.1 connections, for the HTTP probe's ``reuse_connections``.

A check takes an idle connection of the run's :class:`ConnectionPool` or opens
its own, never waits for one, and gives it back only when its parser says the
connection can carry another request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream

from anyprobe.tls import TlsInfo

#: Seconds an idle connection is kept; an older one is closed instead of reused
#: (servers close idle connections after 5 to 75 s; a stale one costs a retry).
IDLE_SECONDS = 15.0


@dataclass(slots=True, eq=False)
class PooledConnection:
    """An open connection: the TCP stream, what requests go over, and for
    HTTP/1.1 under ``reuse_connections`` the parser (h11's or httptools') that
    read its responses."""

    socket: ByteStream
    transport: ByteStream  # the TLS stream for https, else ``socket``
    address: str
    tls: TlsInfo | None
    protocol: Any = None  # the HTTP/1.1 parser, kept across requests
    requests: int = 0
    idle_since: float = 0.0

    async def aclose(self) -> None:
        """Close the socket at once (no TLS close_notify: nobody waits for it)."""
        await anyio.aclose_forcefully(self.socket)


class ConnectionPool:
    """The idle HTTP/1.1 connections of one run, for ``reuse_connections``.

    Kept through ``ctx.shared`` and closed by core when the run ends. It is
    not a queue: :meth:`take` hands out an idle connection of the key or
    None (the check then opens its own), so a check never waits for another.
    The pool keeps at most as many idle connections, all keys together, as
    the most checks that held a connection at once (so never more than the
    run's concurrency): with those in use, a run holds at most two sockets
    per concurrent check, which is what the scheduler's open-file budget
    allows a check. The oldest idle connection is closed to make room.
    """

    SHARED_KEY = "anyprobe.plugins.http.ConnectionPool"

    def __init__(self) -> None:
        self._idle: dict[Hashable, list[PooledConnection]] = {}
        self._oldest_first: OrderedDict[PooledConnection, Hashable] = OrderedDict()
        self._in_use = 0
        self._peak = 0
        self._closed = False

    @property
    def idle(self) -> int:
        """How many connections wait in the pool."""
        return len(self._oldest_first)

    def take(self, key: Hashable) -> tuple[PooledConnection | None, Sequence[PooledConnection]]:
        """An idle connection for ``key`` (None: open one), and the expired
        ones the caller must close. Pair every call with :meth:`give_back`
        or :meth:`release`."""
        self._in_use += 1
        if self._in_use > self._peak:
            self._peak = self._in_use
        stack = self._idle.get(key)
        if stack is None:
            return None, ()
        expired: list[PooledConnection] | None = None
        found: PooledConnection | None = None
        now = time.monotonic()
        while stack:
            candidate = stack.pop()  # the most recently used: the least likely closed
            del self._oldest_first[candidate]
            if now - candidate.idle_since < IDLE_SECONDS:
                found = candidate
                break
            if expired is None:
                expired = []
            expired.append(candidate)
        if not stack:
            del self._idle[key]
        return found, expired or ()

    def give_back(
        self, key: Hashable, connection: PooledConnection
    ) -> tuple[bool, Sequence[PooledConnection]]:
        """Keep ``connection`` (ready for its next request) for a later check.

        Returns whether it was kept (not when the pool is closed: the caller
        then closes it and calls :meth:`release`) and the oldest idle
        connections it displaced, which the caller must close.
        """
        if self._closed:
            return False, ()
        self._in_use -= 1
        oldest_first = self._oldest_first
        displaced: list[PooledConnection] | None = None
        while oldest_first and len(oldest_first) >= self._peak:
            oldest, oldest_key = oldest_first.popitem(last=False)
            others = self._idle[oldest_key]
            others.remove(oldest)
            if not others:
                del self._idle[oldest_key]
            if displaced is None:
                displaced = []
            displaced.append(oldest)
        connection.idle_since = time.monotonic()
        stack = self._idle.get(key)
        if stack is None:
            self._idle[key] = [connection]
        else:
            stack.append(connection)
        oldest_first[connection] = key
        return True, displaced or ()

    def release(self) -> None:
        """The check of a :meth:`take` ended without giving a connection back."""
        self._in_use -= 1

    async def aclose(self) -> None:
        """Close every idle connection; later ones are not kept."""
        self._closed = True
        idle = list(self._oldest_first)
        self._oldest_first.clear()
        self._idle.clear()
        await close_all(idle)


async def close_all(connections: Sequence[PooledConnection]) -> None:
    """Close ``connections``, all of them even in a cancelled check (each close
    is immediate: no TLS close_notify is awaited)."""
    if connections:
        with anyio.CancelScope(shield=True):
            for connection in connections:
                await connection.aclose()
            # Let the server see the close before this check opens another
            # connection (closing a socket does not yield to the event loop).
            await anyio.lowlevel.checkpoint()


def why_not_reusable(protocol: Any) -> str | None:
    """None when the connection's HTTP/1.1 parser says it can carry another
    request, else why not."""
    if protocol is None:
        return "HTTP/2 connections are not reused"
    reason: str | None = protocol.why_not_reusable()
    return reason
